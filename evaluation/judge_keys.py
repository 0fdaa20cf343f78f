"""The judge endpoint's API key on its way from a form to a job, and nowhere else.

A key typed into a form is never stored in the database, the job's params or its log: it
goes to a file under DATA_DIR/secrets/ named by the job id, readable by this user only
(0600, in a 0700 folder), which the job reads and deletes when it ends (succeeded, failed
or cancelled). Files of jobs that ended without reaching that point (cancelled while
pending, never queued, or whose worker died) are swept away whenever a judge run or job
starts. Without a file the job falls back to RELSIM_JUDGE_API_KEY from the environment."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from django.conf import settings

from training.models import Job

_NAME = re.compile(r"^judge-job-(\d+)\.key$")


def _folder() -> Path:
    return Path(settings.DATA_DIR) / "secrets"


def key_path(job_id: int) -> Path:
    return _folder() / f"judge-job-{job_id}.key"


def key_write(*, job_id: int, key: str) -> Path:
    """Write the key for one job, readable by the owner only."""
    folder = _folder()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = key_path(job_id)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    # O_EXCL with mode 0600: the file never exists with wider rights, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key)
    return path


def key_read(job_id: int) -> str | None:
    """The key written for this job, or None when there is none."""
    try:
        return key_path(job_id).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def key_remove(job_id: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        key_path(job_id).unlink()


def keys_sweep() -> int:
    """Delete the key files of jobs that have ended or are gone; returns how many."""
    folder = _folder()
    if not folder.is_dir():
        return 0
    files = {int(m.group(1)): p for p in folder.iterdir() if (m := _NAME.match(p.name))}
    live = set(
        Job.objects.filter(
            pk__in=list(files), status__in=[Job.Status.PENDING, Job.Status.RUNNING]
        ).values_list("pk", flat=True)
    )
    removed = 0
    for job_id, path in files.items():
        if job_id not in live:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed
