"""Media files (images, thumbnails) from MEDIA_ROOT, for signed-in users only."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponseNotModified
from django.http.response import HttpResponseBase
from django.utils.http import http_date
from django.views.decorators.http import require_safe
from django.views.static import was_modified_since


@require_safe
@login_required
def media_file(request: HttpRequest, path: str) -> HttpResponseBase:
    root = Path(settings.MEDIA_ROOT).resolve()
    try:
        # Resolved, so that neither "../" nor a symlink leads outside the root.
        full = (root / path).resolve()
    except (OSError, ValueError):  # e.g. a NUL byte in the name
        raise Http404("No such file") from None
    if not full.is_relative_to(root) or not full.is_file():
        raise Http404("No such file")
    mtime = full.stat().st_mtime
    if not was_modified_since(request.META.get("HTTP_IF_MODIFIED_SINCE"), int(mtime)):
        return HttpResponseNotModified()
    response = FileResponse(full.open("rb"))
    response["Last-Modified"] = http_date(mtime)
    # Images are private to the team: browsers may keep them, shared caches may not.
    response["Cache-Control"] = "private, max-age=86400"
    return response
