"""The runner registry: each job kind's runner registers itself here with `@runner(kind)`,
and the executor looks it up by kind. Also the checks runners share for their inputs.

A runner reads its job's params, calls a service and returns the job's artifacts. It raises
core.errors.JobInputError for a user error (bad params, unreadable input; the job fails with
that message) and core.errors.JobCancelled when it stops because it was asked to. A runner
that needs models takes their folders from training.model_paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from core.errors import JobInputError
from training.models import Job
from training.reporting import JobReporter

Runner = Callable[[Job, JobReporter], dict[str, Any]]
RUNNERS: dict[str, Runner] = {}


def runner(kind: str) -> Callable[[Runner], Runner]:
    def register(func: Runner) -> Runner:
        if RUNNERS.get(kind, func) is not func:
            raise ValueError(f"job kind {kind!r} already has a runner")
        RUNNERS[kind] = func
        return func

    return register


def runner_for(kind: str) -> Runner | None:
    return RUNNERS.get(kind)


def import_roots() -> list[Path]:
    return [Path(p).resolve() for p in settings.RELSIM_IMPORT_ROOTS]


def checked_input_path(params: dict[str, Any], key: str) -> Path:
    """A path param, which must lie under one of the configured import roots."""
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise JobInputError(f"the job needs a '{key}' path")
    path = Path(value).resolve()
    if not any(path.is_relative_to(root) for root in import_roots()):
        roots = ", ".join(str(r) for r in import_roots())
        raise JobInputError(f"{path} is not under an import root ({roots})")
    if not path.exists():
        raise JobInputError(f"{path} does not exist")
    return path
