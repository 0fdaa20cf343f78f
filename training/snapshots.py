"""Data-set snapshots for training: an export zip (written once, never changed) unpacked
into a read-only folder beside it, which is what ml's trainers read."""

from __future__ import annotations

import shutil
import uuid
import zipfile
from pathlib import Path

from django.conf import settings

from core.errors import JobInputError
from training.models import Job


def exports_dir() -> Path:
    return settings.DATA_DIR / "exports"


def snapshot_zip(export_job: Job) -> Path:
    """The zip a succeeded export job wrote, checked to be under the exports folder."""
    if export_job.kind != Job.Kind.EXPORT_DATASET or export_job.status != Job.Status.SUCCEEDED:
        raise JobInputError(f"job #{export_job.pk} is not a succeeded export")
    path = Path(str(export_job.artifacts.get("path", ""))).resolve()
    if not path.is_relative_to(exports_dir().resolve()) or not path.is_file():
        raise JobInputError(f"the export of job #{export_job.pk} is no longer on disk")
    return path


def unpacked(zip_path: Path) -> Path:
    """The snapshot's folder, unpacked the first time it is asked for (beside its final
    place, then renamed, so a half-unpacked folder is never found)."""
    target = settings.DATA_DIR / "snapshots" / zip_path.stem
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".{target.name}-{uuid.uuid4().hex}"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.namelist():
                # Our own exports, but a path that climbs out is refused all the same.
                if member.startswith("/") or ".." in Path(member).parts:
                    raise JobInputError(f"{zip_path.name} holds an unsafe path {member!r}")
            archive.extractall(scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    except zipfile.BadZipFile as exc:
        raise JobInputError(f"{zip_path.name} is not a readable export: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def train_records(folder: Path) -> int:
    """How many captioned training images a snapshot holds."""
    train = folder / "anonymous_captions_train.jsonl"
    if not train.is_file():
        return 0
    return sum(1 for line in train.read_text(encoding="utf-8").splitlines() if line.strip())
