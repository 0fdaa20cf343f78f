"""Signals other apps listen to, so that captions never imports them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that recorded an audit's decision, with `audit`, `note` and
# `comment` (what each decided draft's history gets), `user` and `enqueue` (False: make the
# job that carries it out without sending it to the broker). The receiver that carries
# decisions out (training) sets `audit.apply_job`.
audit_decided = Signal()
