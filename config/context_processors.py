"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def app(request: HttpRequest) -> dict[str, object]:
    return {"APP_VERSION": settings.APP_VERSION}
