"""Export the caption data set in the released relsim formats, written atomically: a
folder (or .zip) with seed_group.json, anonymous_captions_{train,test}.jsonl,
interest_labels.jsonl, images/<md5>.png and manifest.json."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Prefetch
from django.utils import timezone

from captions.models import Caption
from core.splits import Split
from curation.models import Group, GroupMember, Image, InterestLabel
from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress

MIN_GROUP_SIZE = 2
INTEREST_LABELS_FILE = "interest_labels.jsonl"


class ExportError(Exception):
    """The export cannot be written; nothing was left at the destination."""


@dataclass(frozen=True)
class ExportOptions:
    include_drafts: bool = False
    splits: tuple[str, ...] = (Split.TRAIN, Split.TEST)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: dict[str, Any]


def _statuses(options: ExportOptions) -> list[str]:
    if options.include_drafts:
        return [Caption.Status.APPROVED, Caption.Status.DRAFT]
    return [Caption.Status.APPROVED]


def _best_caption(captions: Iterable[Caption]) -> Caption | None:
    """An approved caption wins; otherwise the newest draft (when drafts are included)."""
    ranked = sorted(
        captions, key=lambda c: (c.status != Caption.Status.APPROVED, -c.updated_at.timestamp())
    )
    return ranked[0] if ranked else None


def _image_url(image: Image) -> str:
    return image.source_url if image.source_url.startswith(("http://", "https://")) else ""


def collect(options: ExportOptions) -> dict[str, Any]:
    """Gather what the export holds, in a deterministic order."""
    statuses = _statuses(options)
    groups = (
        Group.objects.filter(split__in=options.splits, captions__status__in=statuses)
        .distinct()
        .order_by("id")
        .prefetch_related(
            Prefetch(
                "captions", queryset=Caption.objects.filter(status__in=statuses), to_attr="picked"
            ),
            Prefetch(
                "members",
                queryset=GroupMember.objects.select_related("image").order_by("position", "id"),
            ),
        )
    )
    seed_groups: list[dict[str, Any]] = []
    lines: dict[str, list[dict[str, str]]] = {split: [] for split in options.splits}
    images: dict[str, Image] = {}
    skipped: list[str] = []
    for group in groups:
        caption = _best_caption(group.picked)
        members = [m.image for m in group.members.all()]
        if caption is None or len(members) < MIN_GROUP_SIZE:
            skipped.append(f"group {group.pk}: fewer than {MIN_GROUP_SIZE} images")
            continue
        seed_groups.append(
            {
                "index_group": len(seed_groups),
                "anonymous_caption": caption.text,
                "image_urls": [f"images/{image.md5}.png" for image in members],
            }
        )
        for image in members:
            images[image.md5] = image
            lines[group.split].append(
                {"image_hash": image.md5, "url_link": _image_url(image), "caption": caption.text}
            )
    single = (
        Caption.objects.filter(image__isnull=False, status__in=statuses, split__in=options.splits)
        .select_related("image")
        .order_by("image_id", "id")
    )
    by_image: dict[int, list[Caption]] = {}
    for caption in single:
        by_image.setdefault(caption.image_id, []).append(caption)  # type: ignore[arg-type]
    for captions in by_image.values():
        best = _best_caption(captions)
        assert best is not None and best.image is not None
        images[best.image.md5] = best.image
        lines[best.split].append(
            {"image_hash": best.image.md5, "url_link": _image_url(best.image), "caption": best.text}
        )
    labels = _interest_labels(images)
    return {
        "seed_groups": seed_groups,
        "lines": lines,
        "images": images,
        "skipped": skipped,
        "interest_labels": labels,
    }


def _interest_labels(images: dict[str, Image]) -> list[dict[str, Any]]:
    """Every interest label, one row each; a labelled image joins images/ so its row links."""
    rows: list[dict[str, Any]] = []
    for label in InterestLabel.objects.select_related("image", "annotator"):
        images.setdefault(label.image.md5, label.image)
        rows.append(
            {
                "image_hash": label.image.md5,
                "annotator": label.annotator.get_username(),
                "interesting": label.interesting,
                "labelled_at": label.updated_at.isoformat(),
            }
        )
    # Sorted by content, not by ids, so an export of an import writes the same bytes.
    rows.sort(key=lambda row: (row["image_hash"], row["annotator"]))
    return rows


def _dump_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_export(
    *,
    out: Path,
    options: ExportOptions = ExportOptions(),
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ExportResult:
    """Write the data set to `out` (a new folder, or a .zip file). All or nothing."""
    out = out.resolve()
    as_zip = out.suffix.lower() == ".zip"
    if out.exists() and (as_zip or any(out.iterdir())):
        raise ExportError(f"{out} already exists; choose a new path")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not an existing folder")
    unknown = set(options.splits) - set(Split.values)
    if unknown:
        raise ExportError(f"unknown split(s): {', '.join(sorted(unknown))}")

    content = collect(options)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        _write(staging, content, options, progress, should_stop)
        manifest = json.loads((staging / "manifest.json").read_text())
        if as_zip:
            _zip_folder(staging, out)
        else:
            if out.exists():
                out.rmdir()
            staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return ExportResult(path=out, manifest=manifest)


def _write(
    folder: Path,
    content: dict[str, Any],
    options: ExportOptions,
    progress: ProgressFn,
    should_stop: StopFn,
) -> None:
    images: dict[str, Image] = content["images"]
    (folder / "images").mkdir()
    for done, (md5, image) in enumerate(sorted(images.items()), start=1):
        if should_stop():
            raise ExportError("the export was cancelled")
        with image.file.open("rb") as source:
            (folder / "images" / f"{md5}.png").write_bytes(source.read())
        if done % 50 == 0 or done == len(images):
            progress(done, len(images), f"{done} images written")
    (folder / "seed_group.json").write_text(
        json.dumps(content["seed_groups"], indent=2, ensure_ascii=False) + "\n"
    )
    for split, rows in content["lines"].items():
        (folder / f"anonymous_captions_{split}.jsonl").write_text(_dump_jsonl(rows))
    (folder / INTEREST_LABELS_FILE).write_text(_dump_jsonl(content["interest_labels"]))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    manifest = {
        "format": "relsim",
        "app_version": settings.APP_VERSION,
        "created_at": timezone.now().isoformat(),
        "options": {"include_drafts": options.include_drafts, "splits": list(options.splits)},
        "counts": {
            "groups": len(content["seed_groups"]),
            "images": len(images),
            **{f"{split}_lines": len(rows) for split, rows in content["lines"].items()},
            "interest_labels": len(content["interest_labels"]),
        },
        "skipped": content["skipped"],
        "files": {p.relative_to(folder).as_posix(): _sha256(p) for p in files},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _zip_folder(folder: Path, out: Path) -> None:
    partial = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(folder).as_posix())
        partial.rename(out)
    finally:
        partial.unlink(missing_ok=True)
