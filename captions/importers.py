"""Importers for the released relsim formats: seed_group.json, anonymous_captions_*.jsonl,
and a whole exported data set folder. Each row imports whole or not at all."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from captions.models import Caption
from captions.services import caption_create
from captions.text import CaptionTextError, clean_caption_text
from curation.image_refs import ImageRefError, RefResolver
from curation.intake import ImageRejected, NormalisedImage, normalise_image
from curation.models import Group, GroupMember, Image, ImportBatch, Split
from curation.reports import ImportReport
from curation.services import ImportCancelled, group_create, image_store, intake_limits
from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress

_ACCEPTED, _DUPLICATE, _GROUP_LINE = "accepted", "duplicate", "group line"
_MD5 = re.compile(r"^[0-9a-f]{32}$")
MAX_IMPORT_FILE_BYTES = 512 * 2**20


class ImportFileError(Exception):
    """The import file as a whole is unusable (missing, not JSON, wrong shape)."""


class _RowError(Exception):
    pass


def _read_json_file(path: Path) -> Any:
    if not path.is_file():
        raise ImportFileError(f"{path} does not exist or is not a file")
    if path.stat().st_size > MAX_IMPORT_FILE_BYTES:
        raise ImportFileError(f"{path} is larger than {MAX_IMPORT_FILE_BYTES} bytes")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ImportFileError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"{path} is not valid JSON: {exc}") from None


def _normalise(data: bytes) -> NormalisedImage:
    try:
        return normalise_image(data, limits=intake_limits())
    except ImageRejected as exc:
        raise _RowError(exc.reason) from None


def group_import_key(caption: str, sha256s: list[str]) -> str:
    """Identity of an imported group: its caption and its set of images."""
    material = caption + "\n" + "\n".join(sorted(sha256s))
    return hashlib.sha256(material.encode()).hexdigest()


# --- seed_group.json ------------------------------------------------------------------------


@dataclass
class SeedGroupResult:
    report: ImportReport
    groups: list[Group] = field(default_factory=list)


def seed_groups_import(
    *,
    file: Path,
    images_root: Path | None,
    fetch: bool = False,
    split: str = Split.TRAIN,
    user: AbstractBaseUser | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> SeedGroupResult:
    """Import the released seed_group.json: each row a group with its approved caption."""
    rows = _read_json_file(file)
    if not isinstance(rows, list):
        raise ImportFileError(f"{file} must hold a JSON list of groups, not {type(rows).__name__}")
    resolver = RefResolver(
        root=images_root,
        fetch=fetch,
        timeout_s=settings.RELSIM_FETCH_TIMEOUT_S,
        max_bytes=settings.RELSIM_MAX_IMAGE_MB * 2**20,
    )
    batch = ImportBatch.objects.create(
        kind=ImportBatch.Kind.SEED_GROUPS, source=str(file), created_by=user
    )
    result = SeedGroupResult(ImportReport(batch_id=batch.pk))
    for number, row in enumerate(rows, start=1):
        if should_stop():
            raise ImportCancelled(result.report.summary())
        name = f"row {number}"
        if isinstance(row, dict) and isinstance(row.get("index_group"), int):
            name += f" (index_group {row['index_group']})"
        try:
            group = _import_seed_row(row, resolver, split, batch, user)
        except _RowError as exc:
            result.report.reject(name, str(exc))
        else:
            if group is None:
                result.report.duplicates += 1
            else:
                result.report.accepted += 1
                result.groups.append(group)
        progress(number, len(rows), name)
    batch.report = result.report.as_dict()
    batch.save(update_fields=["report"])
    return result


def _import_seed_row(
    row: object,
    resolver: RefResolver,
    split: str,
    batch: ImportBatch,
    user: AbstractBaseUser | None,
) -> Group | None:
    if not isinstance(row, dict):
        raise _RowError(f"a group must be a JSON object, not {type(row).__name__}")
    try:
        caption = clean_caption_text(row.get("anonymous_caption"))
    except CaptionTextError as exc:
        raise _RowError(f"anonymous_caption: {exc}") from None
    refs = row.get("image_urls")
    if not isinstance(refs, list):
        raise _RowError("image_urls must be a list")
    images: list[tuple[NormalisedImage, str, str]] = []
    seen: set[str] = set()
    for position, ref in enumerate(refs, start=1):
        try:
            data, url = resolver.read(ref)
            normalised = _normalise(data)
        except (ImageRefError, _RowError) as exc:
            raise _RowError(f"image {position} ({str(ref)[:200]}): {exc}") from None
        if normalised.sha256 not in seen:
            seen.add(normalised.sha256)
            images.append((normalised, str(ref), url))
    if len(images) < 2:
        raise _RowError(
            f"a group needs at least 2 distinct usable images, this row has {len(images)}"
        )
    key = group_import_key(caption, [n.sha256 for n, _, _ in images])
    if Group.objects.filter(import_key=key).exists():
        return None
    with transaction.atomic():
        stored = [
            image_store(normalised=n, source_name=ref, source_url=url, batch=batch, user=user).image
            for n, ref, url in images
        ]
        group = group_create(
            title=_title(caption), images=stored, split=split, user=user, import_key=key
        )
        caption_create(
            text=caption,
            group=group,
            status=Caption.Status.APPROVED,
            source=Caption.Source.IMPORT,
            author=user,
        )
    return group


def _title(caption: str) -> str:
    return caption if len(caption) <= 80 else caption[:77].rstrip() + "..."


# --- anonymous_captions_*.jsonl -------------------------------------------------------------


def split_from_file_name(path: Path) -> str:
    return Split.TEST if "test" in path.stem.lower() else Split.TRAIN


def _jsonl_rows(path: Path) -> Iterator[tuple[int, object]]:
    if not path.is_file():
        raise ImportFileError(f"{path} does not exist or is not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ImportFileError(f"{path} is not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _RowError(f"not valid JSON: {exc.msg}")


def captions_import(
    *,
    file: Path,
    images_dir: Path,
    split: str | None = None,
    user: AbstractBaseUser | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    group_member_groups: dict[str, list[Group]] | None = None,
) -> ImportReport:
    """Import the released anonymous_captions_*.jsonl with its <image_hash>.png images.

    `group_member_groups` (used by the data set importer) maps md5 -> groups just imported:
    a line that repeats such a group's caption for its member sets the group's split
    instead of creating a single-image caption."""
    split = split or split_from_file_name(file)
    if split not in Split.values:
        raise ImportFileError(f"unknown split {split!r}")
    rows = list(_jsonl_rows(file))
    batch = ImportBatch.objects.create(
        kind=ImportBatch.Kind.CAPTIONS, source=str(file), created_by=user
    )
    report = ImportReport(batch_id=batch.pk)
    for done, (number, row) in enumerate(rows, start=1):
        if should_stop():
            raise ImportCancelled(report.summary())
        name = f"{file.name} line {number}"
        try:
            outcome = _import_caption_row(
                row, images_dir, split, batch, user, group_member_groups or {}
            )
        except _RowError as exc:
            report.reject(name, str(exc))
        else:
            if outcome == _ACCEPTED:
                report.accepted += 1
            elif outcome == _GROUP_LINE:
                report.group_lines += 1
            else:
                report.duplicates += 1
        progress(done, len(rows), name)
    batch.report = report.as_dict()
    batch.save(update_fields=["report"])
    return report


def _import_caption_row(
    row: object,
    images_dir: Path,
    split: str,
    batch: ImportBatch,
    user: AbstractBaseUser | None,
    group_member_groups: dict[str, list[Group]],
) -> str:
    if isinstance(row, _RowError):
        raise row
    if not isinstance(row, dict):
        raise _RowError(f"a line must be a JSON object, not {type(row).__name__}")
    image_hash = row.get("image_hash")
    if not isinstance(image_hash, str) or not _MD5.match(image_hash.lower()):
        raise _RowError("image_hash must be 32 hexadecimal digits (the md5 of the image)")
    image_hash = image_hash.lower()
    try:
        caption = clean_caption_text(row.get("caption"))
    except CaptionTextError as exc:
        raise _RowError(f"caption: {exc}") from None
    url = row.get("url_link", "")
    url = url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""

    for group in group_member_groups.get(image_hash, []):
        if group.captions.filter(status=Caption.Status.APPROVED, text=caption).exists():
            Group.objects.filter(pk=group.pk).update(split=split)
            Image.objects.filter(md5=image_hash, source_url="").update(source_url=url)
            return _GROUP_LINE
    if GroupMember.objects.filter(
        image__md5=image_hash,
        group__captions__status=Caption.Status.APPROVED,
        group__captions__text=caption,
    ).exists():
        return _GROUP_LINE  # The line restates a group's caption for one of its members.

    data = _find_image(images_dir, image_hash)
    normalised = _normalise(data)
    with transaction.atomic():
        image = image_store(
            normalised=normalised,
            source_name=f"{image_hash}.png",
            source_url=url,
            batch=batch,
            user=user,
        ).image
        approved = Caption.objects.filter(image=image, status=Caption.Status.APPROVED).first()
        if approved is not None:
            if approved.text == caption:
                return _DUPLICATE
            raise _RowError("the image already has a different approved caption")
        caption_create(
            text=caption,
            image=image,
            split=split,
            status=Caption.Status.APPROVED,
            source=Caption.Source.IMPORT,
            author=user,
        )
    return _ACCEPTED


def _find_image(images_dir: Path, image_hash: str) -> bytes:
    root = images_dir.resolve()
    for candidate in (root / f"{image_hash}.png", root / "images" / f"{image_hash}.png"):
        if candidate.is_file() and candidate.resolve().is_relative_to(root):
            if candidate.stat().st_size > settings.RELSIM_MAX_IMAGE_MB * 2**20:
                raise _RowError(f"{candidate.name} is over the image size cap")
            return candidate.read_bytes()
    raise _RowError(f"{image_hash}.png not found in {images_dir}")


# --- a whole exported data set ----------------------------------------------------------------


def dataset_import(
    *,
    folder: Path,
    user: AbstractBaseUser | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ImportReport:
    """Import a folder written by export_dataset (or the released files laid out alike)."""
    if not folder.is_dir():
        raise ImportFileError(f"{folder} is not a folder")
    seed_file = folder / "seed_group.json"
    jsonl_files = sorted(folder.glob("anonymous_captions_*.jsonl"))
    if not seed_file.is_file() and not jsonl_files:
        raise ImportFileError(
            f"{folder} holds neither seed_group.json nor anonymous_captions_*.jsonl"
        )
    total = ImportReport()
    members: dict[str, list[Group]] = {}
    if seed_file.is_file():
        seeds = seed_groups_import(
            file=seed_file,
            images_root=folder,
            user=user,
            progress=progress,
            should_stop=should_stop,
        )
        _merge(total, seeds.report, "seed_group.json")
        for group in seeds.groups:
            for md5 in group.images.values_list("md5", flat=True):
                members.setdefault(md5, []).append(group)
    for jsonl in jsonl_files:
        report = captions_import(
            file=jsonl,
            images_dir=folder,
            user=user,
            progress=progress,
            should_stop=should_stop,
            group_member_groups=members,
        )
        _merge(total, report, jsonl.name)
    return total


def _merge(total: ImportReport, part: ImportReport, label: str) -> None:
    total.accepted += part.accepted
    total.duplicates += part.duplicates
    total.group_lines += part.group_lines
    total.rejected.extend(
        {"name": f"{label}: {r['name']}", "reason": r["reason"]} for r in part.rejected
    )
    total.normalised.extend(part.normalised)
