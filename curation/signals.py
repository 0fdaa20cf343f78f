"""Signals other apps listen to, so that curation never imports them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that changed a group's members, with `group`, `added` and
# `removed` (image ids) and `actor` (the user, or None).
group_members_changed = Signal()
