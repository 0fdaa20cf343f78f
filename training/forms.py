"""Forms that start jobs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from training.models import Job
from training.runners import import_roots

_UPLOAD_SUFFIXES = {
    Job.Kind.IMPORT_IMAGES: (".zip", ".tar", ".tar.gz", ".tgz", ".png", ".jpg", ".jpeg", ".webp"),
    Job.Kind.IMPORT_SEED_GROUPS: (".json",),
    Job.Kind.IMPORT_CAPTIONS: (".jsonl",),
}


class ImportJobForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[(k, Job.Kind(k).label) for k in _UPLOAD_SUFFIXES], initial=Job.Kind.IMPORT_IMAGES
    )
    upload = forms.FileField(
        required=False, help_text="An archive (.zip, .tar, .tar.gz) of images, or the import file."
    )
    path = forms.CharField(
        required=False, max_length=1000, help_text="Or a path on the server, under an import root."
    )
    images_root = forms.CharField(
        required=False,
        max_length=1000,
        help_text="For seed groups and captions: the folder holding the images (server path).",
    )
    split = forms.ChoiceField(
        choices=[("", "from the file name"), ("train", "train"), ("test", "test")], required=False
    )
    fetch = forms.BooleanField(required=False, help_text="Allow fetching http(s) image URLs.")

    def __init__(self, *args: Any, upload_refused: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set when the upload was stopped at the size limit while it streamed in: the file
        # and the fields after it never arrived, so that is the one thing worth saying.
        self.upload_refused = upload_refused

    def clean_upload(self) -> UploadedFile[bytes] | None:
        upload: UploadedFile[bytes] | None = self.cleaned_data.get("upload")
        if upload is None:
            return None
        limit = settings.RELSIM_MAX_UPLOAD_MB * 2**20
        if upload.size and upload.size > limit:
            raise forms.ValidationError(
                f"The file is {upload.size // 2**20} MB; "
                f"the limit is {settings.RELSIM_MAX_UPLOAD_MB} MB."
            )
        return upload

    def _server_path(self, value: str, field: str) -> str:
        path = Path(value).expanduser().resolve()
        if not any(path.is_relative_to(root) for root in import_roots()):
            roots = ", ".join(str(r) for r in import_roots())
            self.add_error(field, f"The path must be under an import root: {roots}.")
        elif not path.exists():
            self.add_error(field, f"{path} does not exist.")
        return str(path)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.upload_refused:
            self.add_error("upload", self.upload_refused)
            return data
        kind = data.get("kind")
        upload, path = data.get("upload"), (data.get("path") or "").strip()
        if bool(upload) == bool(path):
            raise forms.ValidationError("Give either a file to upload or a server path, not both.")
        if upload and kind in _UPLOAD_SUFFIXES:
            name = upload.name.lower()
            if not name.endswith(_UPLOAD_SUFFIXES[kind]):
                allowed = ", ".join(_UPLOAD_SUFFIXES[kind])
                self.add_error("upload", f"For this import the file must end with {allowed}.")
        if path:
            data["path"] = self._server_path(path, "path")
        root = (data.get("images_root") or "").strip()
        if root:
            data["images_root"] = self._server_path(root, "images_root")
        elif kind != Job.Kind.IMPORT_IMAGES and upload:
            self.add_error("images_root", "An uploaded JSON file needs the folder of its images.")
        return data

    def job_params(self) -> dict[str, Any]:
        """Store an upload under the uploads root, then describe the job."""
        data = self.cleaned_data
        path = data.get("path") or self._save_upload(data["upload"])
        params: dict[str, Any] = {"path": path}
        if data["kind"] != Job.Kind.IMPORT_IMAGES:
            if data.get("images_root"):
                key = "images_root" if data["kind"] == Job.Kind.IMPORT_SEED_GROUPS else "images"
                params[key] = data["images_root"]
            if data.get("split"):
                params["split"] = data["split"]
            params["fetch"] = bool(data.get("fetch"))
        return params

    def _save_upload(self, upload: UploadedFile[bytes]) -> str:
        folder = import_roots()[0] / uuid.uuid4().hex
        folder.mkdir(parents=True)
        target = folder / Path(upload.name or "upload").name
        with target.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        return str(target)
