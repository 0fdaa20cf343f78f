"""Runners of the data set jobs: importing images, seed groups and captions, and exporting."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from captions.export import ExportError, ExportOptions, dataset_export
from captions.importers import ImportFileError, captions_import, seed_groups_import
from core.errors import JobInputError
from curation.intake import SourceError
from curation.services import images_import
from training.models import Job
from training.reporting import JobReporter
from training.runners import checked_input_path, runner


def _user(job: Job) -> Any:
    return job.created_by


@runner(Job.Kind.IMPORT_IMAGES)
def run_import_images(job: Job, reporter: JobReporter) -> dict[str, Any]:
    source = checked_input_path(job.params, "path")
    try:
        report = images_import(
            source=source,
            user=_user(job),
            progress=reporter.progress,
            should_stop=reporter.should_stop,
        )
    except SourceError as exc:
        raise JobInputError(str(exc)) from None
    reporter.log(report.summary())
    return {"report": report.as_dict()}


@runner(Job.Kind.IMPORT_SEED_GROUPS)
def run_import_seed_groups(job: Job, reporter: JobReporter) -> dict[str, Any]:
    file = checked_input_path(job.params, "path")
    root = job.params.get("images_root")
    try:
        result = seed_groups_import(
            file=file,
            images_root=checked_input_path(job.params, "images_root") if root else file.parent,
            fetch=bool(job.params.get("fetch", False)),
            split=job.params.get("split", "train"),
            user=_user(job),
            progress=reporter.progress,
            should_stop=reporter.should_stop,
        )
    except ImportFileError as exc:
        raise JobInputError(str(exc)) from None
    reporter.log(result.report.summary())
    return {"report": result.report.as_dict()}


@runner(Job.Kind.IMPORT_CAPTIONS)
def run_import_captions(job: Job, reporter: JobReporter) -> dict[str, Any]:
    file = checked_input_path(job.params, "path")
    images = job.params.get("images")
    try:
        report = captions_import(
            file=file,
            images_dir=checked_input_path(job.params, "images") if images else file.parent,
            split=job.params.get("split"),
            user=_user(job),
            progress=reporter.progress,
            should_stop=reporter.should_stop,
        )
    except ImportFileError as exc:
        raise JobInputError(str(exc)) from None
    reporter.log(report.summary())
    return {"report": report.as_dict()}


@runner(Job.Kind.EXPORT_DATASET)
def run_export_dataset(job: Job, reporter: JobReporter) -> dict[str, Any]:
    exports = settings.DATA_DIR / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    name = job.params.get("name") or f"relsim-export-{job.pk}-{timezone.now():%Y%m%d-%H%M%S}.zip"
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise JobInputError("the export name must be a plain file name")
    splits = job.params.get("splits") or ["train", "test"]
    try:
        result = dataset_export(
            out=exports / name,
            options=ExportOptions(
                include_drafts=bool(job.params.get("include_drafts", False)),
                splits=tuple(splits),
            ),
            progress=reporter.progress,
            should_stop=reporter.should_stop,
        )
    except ExportError as exc:
        raise JobInputError(str(exc)) from None
    return {"path": str(result.path), "manifest": result.manifest}
