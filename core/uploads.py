"""Upload handling: count an upload's bytes while it streams in and stop it past the limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

_REFUSED = "relsim_upload_refused"


class SizeLimitUploadHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: passes chunks on to the handlers that store them until
    the request's files pass RELSIM_MAX_UPLOAD_MB, then stops the upload. The file being
    received is then dropped (its temporary file deleted) and the rest of the body is read
    and discarded, so the client gets a page saying why instead of a reset connection."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = settings.RELSIM_MAX_UPLOAD_MB * 2**20
        self.received = 0

    def handle_raw_input(self, *args: Any, **kwargs: Any) -> None:
        # The folder for uploads that spill to disk is created on demand, so that a fresh
        # or cleaned data directory works.
        if settings.FILE_UPLOAD_TEMP_DIR:
            Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            if self.request is not None:
                setattr(
                    self.request,
                    _REFUSED,
                    f"The upload is larger than the {settings.RELSIM_MAX_UPLOAD_MB} MB limit; "
                    "it was stopped and nothing was saved.",
                )
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # The storing handlers after this one make the file.


def upload_refusal(request: HttpRequest) -> str:
    """Why an upload of this request was stopped, or '' if none was."""
    return str(getattr(request, _REFUSED, ""))
