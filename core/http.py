"""The request the views see: past login_required (a real user) and django-htmx's middleware
(`request.htmx`). A type only; Django builds the request as usual."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class AuthedRequest(HttpRequest):
    user: User
    htmx: HtmxDetails
