"""Importers for the released relsim formats: seed_group.json, anonymous_captions_*.jsonl,
and a whole exported data set folder. Each row imports whole or not at all."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import transaction

from captions.export import INTEREST_LABELS_FILE
from captions.models import Caption
from captions.services import caption_create
from captions.text import CaptionTextError, clean_caption_text
from core.errors import JobCancelled
from core.reports import ImportReport
from core.splits import Split
from curation.image_refs import ImageRefError, RefResolver
from curation.intake import ImageRejected, NormalisedImage, normalise_image
from curation.models import Group, GroupMember, Image, ImportBatch, InterestLabel
from curation.services import StoredImage, group_create, image_store, intake_limits
from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress

_ACCEPTED, _DUPLICATE, _GROUP_LINE = "accepted", "duplicate", "group line"
_UNCAPTIONED = "uncaptioned"
_MD5 = re.compile(r"^[0-9a-f]{32}$")
MAX_IMPORT_FILE_BYTES = 512 * 2**20
# Exit status of an import command that imported the good rows and rejected others, so a
# script tells it from a clean run (0) and from a file refused whole (1, nothing imported).
ROWS_REJECTED_EXIT = 3


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


def url_file_names(url: str) -> tuple[str, str]:
    """The two names the release's downloader gives the image of `url`: the md5 of the URL
    (its --use_hash mode) or the URL's last part with its extension replaced by .png."""
    hashed = hashlib.md5(url.encode("utf-8", "surrogatepass")).hexdigest() + ".png"
    # The last part of the whole string, query included, as the downloader takes it.
    base = posixpath.basename(url)
    if not base.lower().endswith(".png"):
        base = posixpath.splitext(base)[0] + ".png"
    return hashed, base


class ReleaseImages:
    """Finds the image of a URL under an images root, in the layouts the release's
    downloader writes: `group_<i>/<name>` (i = the row's 0-based position in the file) or
    a flat folder of `<name>`, where name is md5(url).png or the URL's file name as .png."""

    def __init__(self, root: Path, rows: list[object], max_bytes: int) -> None:
        self.root = root.resolve()
        self.max_bytes = max_bytes
        # A file name that stands for several URLs holds only one of their images (the
        # downloader skips names it already wrote), so such a name proves nothing.
        self._row_owners: list[dict[str, set[str]]] = []
        self._flat_owners: dict[str, set[str]] = {}
        for row in rows:
            owners: dict[str, set[str]] = {}
            for url in _row_urls(row):
                base = url_file_names(url)[1]
                owners.setdefault(base, set()).add(url)
                self._flat_owners.setdefault(base, set()).add(url)
            self._row_owners.append(owners)

    def candidates(self, url: str, position: int) -> tuple[list[str], list[str]]:
        """The relative paths to try, in order, and notes on names left out as ambiguous."""
        hashed, base = url_file_names(url)
        group = f"group_{position}"
        row_owners = self._row_owners[position] if position < len(self._row_owners) else {}
        paths, notes = [f"{group}/{hashed}"], []
        if len(row_owners.get(base, ())) > 1:
            notes.append(f"{group}/{base} is the name of several URLs of this row")
        else:
            paths.append(f"{group}/{base}")
        paths.append(hashed)
        if len(self._flat_owners.get(base, ())) > 1:
            notes.append(f"{base} is the name of several URLs of the file")
        else:
            paths.append(base)
        return paths, notes

    def read(self, url: str, position: int) -> tuple[bytes, str]:
        """Return (bytes, the relative path found) or raise ImageNotFound."""
        paths, notes = self.candidates(url, position)
        for relative in paths:
            path = self.root / relative
            if not _is_file(path):
                continue
            if not path.resolve().is_relative_to(self.root):
                notes.append(f"{relative} leads outside the images root")
                continue
            size = path.stat().st_size
            if size > self.max_bytes:
                raise _RowError(f"{relative} is {size} bytes, over the {self.max_bytes} byte cap")
            return path.read_bytes(), relative
        raise ImageNotFound(paths, notes)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a URL whose last part makes a name too long for the disk
        return False


class ImageNotFound(ImageRefError):
    """No file for a URL under the images root (and no fetch, or a failed one)."""

    def __init__(self, looked_for: list[str], notes: list[str], fetch_error: str = "") -> None:
        self.looked_for, self.notes, self.fetch_error = looked_for, notes, fetch_error
        text = f"not found under the images root (looked for {', '.join(looked_for)})"
        text += "".join(f"; {note}" for note in notes)
        super().__init__(text + (f"; {fetch_error}" if fetch_error else ""))


def _row_urls(row: object) -> list[str]:
    if not isinstance(row, dict) or not isinstance(row.get("image_urls"), list):
        return []
    return [ref for ref in row["image_urls"] if isinstance(ref, str) and _is_http(ref)]


def _is_http(ref: str) -> bool:
    return ref.strip().lower().startswith(("http://", "https://"))


def seed_groups_import(
    *,
    file: Path,
    images_root: Path | None,
    fetch: bool = False,
    split: str = Split.TRAIN,
    user: User | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> SeedGroupResult:
    """Import the released seed_group.json: each row a group with its approved caption.

    Paths and file:// URLs are read under `images_root`; an http(s) URL is first looked for
    there as the release's downloader saved it (see ReleaseImages), then fetched if `fetch`.
    """
    rows = _read_json_file(file)
    if not isinstance(rows, list):
        raise ImportFileError(f"{file} must hold a JSON list of groups, not {type(rows).__name__}")
    max_bytes = settings.RELSIM_MAX_IMAGE_MB * 2**20
    resolver = RefResolver(
        root=images_root,
        fetch=fetch,
        timeout_s=settings.RELSIM_FETCH_TIMEOUT_S,
        max_bytes=max_bytes,
    )
    local = None if images_root is None else ReleaseImages(images_root, rows, max_bytes)
    batch = ImportBatch.objects.create(
        kind=ImportBatch.Kind.SEED_GROUPS, source=str(file), created_by=user
    )
    result = SeedGroupResult(ImportReport(batch_id=batch.pk))
    report = result.report
    for number, row in enumerate(rows, start=1):
        if should_stop():
            raise JobCancelled(report.summary())
        name = f"row {number}"
        if isinstance(row, dict) and isinstance(row.get("index_group"), int):
            name += f" (index_group {row['index_group']})"
        source = _SeedSource(resolver, local, position=number - 1)
        try:
            group = _import_seed_row(row, source, split, batch, user)
        except _RowError as exc:
            report.reject(name, str(exc))
            report.images_not_found.extend({"name": name, **miss} for miss in source.missing)
        else:
            if group is None:
                report.duplicate(name, source.duplicate_image_id)
            else:
                report.accepted += 1
                result.groups.append(group)
                report.normalised.extend(source.normalised)
        progress(number, len(rows), name)
    batch.report = report.as_dict()
    batch.save(update_fields=["report"])
    return result


@dataclass
class _SeedSource:
    """Reads the images of one row; remembers which URLs it could not find."""

    resolver: RefResolver
    local: ReleaseImages | None
    position: int
    missing: list[dict[str, Any]] = field(default_factory=list)
    normalised: list[dict[str, Any]] = field(default_factory=list)
    # Set when the row's group is already here: one of its images, for the report to link.
    duplicate_image_id: int | None = None

    def read(self, ref: object) -> tuple[bytes, str, str]:
        """Return (bytes, source name, source URL or '')."""
        if not isinstance(ref, str) or not _is_http(ref):
            data, url = self.resolver.read(ref)
            return data, str(ref), url
        url = ref.strip()
        if self.local is None:
            data, _ = self.resolver.read(url)
            return data, url, url
        try:
            data, found = self.local.read(ref, self.position)
        except ImageNotFound as missing:
            # On disk first: a URL is fetched only when its file is not there.
            try:
                data, _ = self.resolver.read(url)
            except ImageRefError as exc:
                raise ImageNotFound(missing.looked_for, missing.notes, str(exc)) from None
            return data, url, url
        return data, found, url


def _import_seed_row(
    row: object,
    source: _SeedSource,
    split: str,
    batch: ImportBatch,
    user: User | None,
) -> Group | None:
    if not isinstance(row, dict):
        raise _RowError(f"a group must be a JSON object, not {type(row).__name__}")
    _check_encodable(row)
    try:
        caption = clean_caption_text(row.get("anonymous_caption"))
    except CaptionTextError as exc:
        raise _RowError(f"anonymous_caption: {exc}") from None
    refs = row.get("image_urls")
    if not isinstance(refs, list):
        raise _RowError("image_urls must be a list")
    images: list[tuple[NormalisedImage, str, str]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for position, ref in enumerate(refs, start=1):
        try:
            data, name, url = source.read(ref)
            normalised = _normalise(data)
        except (ImageRefError, _RowError) as exc:
            # Every image is tried, so one report names all that is missing from the row.
            problems.append(f"image {position} ({str(ref)[:200]}): {exc}")
            if isinstance(exc, ImageNotFound):
                source.missing.append(
                    {
                        "image": position,
                        "url": str(ref).strip()[:2000],
                        "looked_for": exc.looked_for,
                        "reason": str(exc),
                    }
                )
            continue
        if normalised.sha256 not in seen:
            seen.add(normalised.sha256)
            images.append((normalised, name, url))
    if problems:
        raise _RowError(f"{len(problems)} of {len(refs)} images unusable: " + " | ".join(problems))
    if len(images) < 2:
        raise _RowError(
            f"a group needs at least 2 distinct usable images, this row has {len(images)}"
        )
    key = group_import_key(caption, [n.sha256 for n, _, _ in images])
    existing = Group.objects.filter(import_key=key).first()
    if existing is not None:
        member = existing.members.first()
        source.duplicate_image_id = member.image_id if member is not None else None
        return None
    with transaction.atomic():
        stored = []
        for normalised, name, url in images:
            saved = image_store(
                normalised=normalised, source_name=name, source_url=url, batch=batch, user=user
            )
            _keep_source_url(saved.image, url)
            if saved.created and normalised.notes:
                source.normalised.append({"name": name, "notes": list(normalised.notes)})
            stored.append(saved.image)
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


def _keep_source_url(image: Image, url: str) -> None:
    """An image first imported without its URL gets it from a later import."""
    if url and not image.source_url:
        Image.objects.filter(pk=image.pk, source_url="").update(source_url=url[:2000])
        image.source_url = url[:2000]


def _check_encodable(row: dict[str, Any]) -> None:
    # JSON may escape a lone surrogate (\ud800), which no database can store as text.
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _RowError("holds an unpaired surrogate escape (\\ud800-\\udfff), not text") from None


def _title(caption: str) -> str:
    return caption if len(caption) <= 80 else caption[:77].rstrip() + "..."


# --- anonymous_captions_*.jsonl and random_images_*.jsonl -----------------------------------


def split_from_file_name(path: Path) -> str:
    return Split.TEST if "test" in path.stem.lower() else Split.TRAIN


_BOM = b"\xef\xbb\xbf"


def _count_jsonl_lines(path: Path) -> int:
    """Refuse a file that is missing or not text at all; return its number of lines."""
    if not path.is_file():
        raise ImportFileError(f"{path} does not exist or is not a file")
    try:
        with path.open("rb") as handle:
            # JSON text never holds a raw NUL byte; a file that does is binary or UTF-16.
            if b"\0" in handle.read(8192):
                raise ImportFileError(f"{path} holds NUL bytes: it is not UTF-8 JSON lines")
            handle.seek(0)
            return sum(1 for _ in handle)
    except OSError as exc:
        raise ImportFileError(f"{path} cannot be read: {exc}") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, object]]:
    """Each non-blank line with its number, decoded on its own so that a bad line costs only
    itself. Lines are split on b"\\n" alone: U+2028 inside a JSON string is not a break."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    number,
                    _RowError(f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"),
                )
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, _RowError(f"not valid JSON: {exc.msg} (column {exc.colno})")


def captions_import(
    *,
    file: Path,
    images_dir: Path,
    split: str | None = None,
    user: User | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    group_member_groups: dict[str, list[Group]] | None = None,
) -> ImportReport:
    """Import the released anonymous_captions_*.jsonl with its <image_hash>.png images.

    A line without a "caption" key (random_images_*.jsonl: the benchmark's distractors)
    adds its image to the pool with no caption. Every image's md5 must be its image_hash.

    `group_member_groups` (used by the data set importer) maps md5 -> groups just imported:
    a line that repeats such a group's caption for its member sets the group's split
    instead of creating a single-image caption."""
    split = split or split_from_file_name(file)
    if split not in Split.values:
        raise ImportFileError(f"unknown split {split!r}")
    total = _count_jsonl_lines(file)
    batch = ImportBatch.objects.create(
        kind=ImportBatch.Kind.CAPTIONS, source=str(file), created_by=user
    )
    report = ImportReport(batch_id=batch.pk)
    for number, row in _jsonl_rows(file):
        if should_stop():
            raise JobCancelled(report.summary())
        name = f"{file.name} line {number}"
        try:
            outcome = _import_caption_row(
                row, images_dir, split, batch, user, group_member_groups or {}
            )
        except _RowError as exc:
            report.reject(name, str(exc))
        else:
            if outcome.kind in (_ACCEPTED, _UNCAPTIONED):
                report.accepted += 1
                report.uncaptioned += outcome.kind == _UNCAPTIONED
                if outcome.notes:
                    report.normalised.append({"name": name, "notes": outcome.notes})
            elif outcome.kind == _GROUP_LINE:
                report.group_lines += 1
            else:
                report.duplicate(name, outcome.image_id)
        progress(number, total, name)
    batch.report = report.as_dict()
    batch.save(update_fields=["report"])
    return report


@dataclass(frozen=True)
class _Outcome:
    kind: str
    notes: list[str] = field(default_factory=list)
    # For a duplicate: the image already here.
    image_id: int | None = None


def _import_caption_row(
    row: object,
    images_dir: Path,
    split: str,
    batch: ImportBatch,
    user: User | None,
    group_member_groups: dict[str, list[Group]],
) -> _Outcome:
    if isinstance(row, _RowError):
        raise row
    if not isinstance(row, dict):
        raise _RowError(f"a line must be a JSON object, not {type(row).__name__}")
    _check_encodable(row)
    image_hash = row.get("image_hash")
    if not isinstance(image_hash, str) or not _MD5.match(image_hash.lower()):
        raise _RowError("image_hash must be 32 hexadecimal digits (the md5 of the image)")
    image_hash = image_hash.lower()
    url = row.get("url_link", "")
    url = url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""
    if "caption" not in row:
        return _import_uncaptioned(images_dir, image_hash, url, batch, user)
    try:
        caption = clean_caption_text(row.get("caption"))
    except CaptionTextError as exc:
        raise _RowError(f"caption: {exc}") from None

    for group in group_member_groups.get(image_hash, []):
        if group.captions.filter(status=Caption.Status.APPROVED, text=caption).exists():
            Group.objects.filter(pk=group.pk).update(split=split)
            Image.objects.filter(md5=image_hash, source_url="").update(source_url=url)
            return _Outcome(_GROUP_LINE)
    if GroupMember.objects.filter(
        image__md5=image_hash,
        group__captions__status=Caption.Status.APPROVED,
        group__captions__text=caption,
    ).exists():
        return _Outcome(_GROUP_LINE)  # The line restates a group's caption for one of its members.

    normalised = _normalise(_read_hashed_image(images_dir, image_hash))
    with transaction.atomic():
        stored = _store_hashed(normalised, image_hash, url, batch, user)
        approved = Caption.objects.filter(
            image=stored.image, status=Caption.Status.APPROVED
        ).first()
        if approved is not None:
            if approved.text == caption:
                return _Outcome(_DUPLICATE, image_id=stored.image.pk)
            raise _RowError("the image already has a different approved caption")
        caption_create(
            text=caption,
            image=stored.image,
            split=split,
            status=Caption.Status.APPROVED,
            source=Caption.Source.IMPORT,
            author=user,
        )
    return _Outcome(_ACCEPTED, _intake_notes(stored.created, normalised))


def _store_hashed(
    normalised: NormalisedImage, image_hash: str, url: str, batch: ImportBatch, user: User | None
) -> StoredImage:
    """A released `<image_hash>.png`, stored once, with its URL kept."""
    stored = image_store(
        normalised=normalised,
        source_name=f"{image_hash}.png",
        source_url=url,
        batch=batch,
        user=user,
    )
    _keep_source_url(stored.image, url)
    return stored


def _import_uncaptioned(
    images_dir: Path,
    image_hash: str,
    url: str,
    batch: ImportBatch,
    user: User | None,
) -> _Outcome:
    """A distractor: its image joins the pool, with no caption and no split."""
    normalised = _normalise(_read_hashed_image(images_dir, image_hash))
    with transaction.atomic():
        stored = _store_hashed(normalised, image_hash, url, batch, user)
    if not stored.created:
        return _Outcome(_DUPLICATE, image_id=stored.image.pk)
    return _Outcome(_UNCAPTIONED, _intake_notes(True, normalised))


def _intake_notes(created: bool, normalised: NormalisedImage) -> list[str]:
    if not created or not normalised.notes:
        return []
    # The stored PNG is a new file, so the export will name it by a new md5.
    return [*normalised.notes, f"stored with md5 {normalised.md5}"]


def _read_hashed_image(images_dir: Path, image_hash: str) -> bytes:
    """The bytes of <image_hash>.png, checked against the hash: the released hash is the md5
    of the file as downloaded, before any normalisation."""
    root = images_dir.resolve()
    for candidate in (root / f"{image_hash}.png", root / "images" / f"{image_hash}.png"):
        if candidate.is_file() and candidate.resolve().is_relative_to(root):
            if candidate.stat().st_size > settings.RELSIM_MAX_IMAGE_MB * 2**20:
                raise _RowError(f"{candidate.name} is over the image size cap")
            data = candidate.read_bytes()
            actual = hashlib.md5(data).hexdigest()
            if actual != image_hash:
                raise _RowError(
                    f"{candidate.relative_to(root)} has md5 {actual}, not its image_hash"
                    f" {image_hash}: the file is not the released image"
                )
            return data
    raise _RowError(f"{image_hash}.png not found in {images_dir}")


# --- a whole exported data set ----------------------------------------------------------------


def dataset_import(
    *,
    folder: Path,
    user: User | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ImportReport:
    """Import a folder written by export_dataset (or the released files laid out alike)."""
    if not folder.is_dir():
        raise ImportFileError(f"{folder} is not a folder")
    seed_file = folder / "seed_group.json"
    jsonl_files = sorted(folder.glob("anonymous_captions_*.jsonl"))
    labels_file = folder / INTEREST_LABELS_FILE
    if not seed_file.is_file() and not jsonl_files and not labels_file.is_file():
        raise ImportFileError(
            f"{folder} holds neither seed_group.json nor anonymous_captions_*.jsonl"
            f" nor {INTEREST_LABELS_FILE}"
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
    if labels_file.is_file():
        report = interest_labels_import(
            file=labels_file, images_dir=folder, user=user, should_stop=should_stop
        )
        _merge(total, report, labels_file.name)
    return total


def interest_labels_import(
    *,
    file: Path,
    images_dir: Path,
    user: User | None = None,
    should_stop: StopFn = never_stop,
) -> ImportReport:
    """Import interest_labels.jsonl: one annotator's yes/no on one image per line.

    An image not yet here is read from images/<image_hash>.png. An annotator with no account
    here gets an inactive one with no usable password, so the label keeps its author but
    nobody can sign in as them until an admin activates the account and sets a password.
    The report names each account so made (users_created)."""
    batch = ImportBatch.objects.create(
        kind=ImportBatch.Kind.DATASET, source=str(file), created_by=user
    )
    report = ImportReport(batch_id=batch.pk)
    for number, row in _jsonl_rows(file):
        if should_stop():
            raise JobCancelled(report.summary())
        name = f"{file.name} line {number}"
        try:
            kind, new_account = _import_label_row(row, images_dir, batch, user)
        except _RowError as exc:
            report.reject(name, str(exc))
        else:
            report.accepted += kind == _ACCEPTED
            report.duplicates += kind == _DUPLICATE
            if new_account:
                report.users_created.append(new_account)
    batch.report = report.as_dict()
    batch.save(update_fields=["report"])
    return report


def _import_label_row(
    row: object, images_dir: Path, batch: ImportBatch, user: User | None
) -> tuple[str, str]:
    """What became of the line (_ACCEPTED or _DUPLICATE), and the user name of the account
    it created for its annotator ("" when the annotator had one)."""
    if not isinstance(row, dict):
        raise _RowError("not a JSON object")
    image_hash, username = row.get("image_hash"), row.get("annotator")
    interesting, labelled_at = row.get("interesting"), row.get("labelled_at")
    if not isinstance(image_hash, str) or not _MD5.match(image_hash):
        raise _RowError("image_hash is not an md5 hex digest")
    if not isinstance(username, str) or not username:
        raise _RowError("annotator is not a user name")
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise _RowError(f"{username!r} is not a valid user name") from None
    if len(username) > User._meta.get_field("username").max_length:  # type: ignore[operator]
        raise _RowError("annotator is longer than a user name may be")
    if not isinstance(interesting, bool):
        raise _RowError("interesting is not true or false")
    try:
        when = datetime.fromisoformat(labelled_at) if isinstance(labelled_at, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise _RowError("labelled_at is not an ISO time with a time zone")
    image = Image.objects.filter(md5=image_hash).order_by("id").first()
    with transaction.atomic():
        if image is None:
            normalised = _normalise(_read_hashed_image(images_dir, image_hash))
            image = image_store(
                normalised=normalised,
                source_name=f"{image_hash}.png",
                batch=batch,
                user=user,
            ).image
        annotator = User.objects.filter(username=username).first()
        new_account = ""
        if annotator is None:
            annotator = User(username=username, is_active=False)
            annotator.set_unusable_password()
            annotator.save()
            new_account = username
        label, created = InterestLabel.objects.get_or_create(
            image=image, annotator=annotator, defaults={"interesting": interesting}
        )
        if not created and label.updated_at >= when:
            return _DUPLICATE, new_account  # The label here is as new or newer: it stays.
        # update() keeps the exported time, which save() would overwrite with now.
        InterestLabel.objects.filter(pk=label.pk).update(
            interesting=interesting,
            updated_at=when,
            **({"created_at": when} if created else {}),
        )
    return _ACCEPTED, new_account


def _merge(total: ImportReport, part: ImportReport, label: str) -> None:
    total.accepted += part.accepted
    total.duplicates += part.duplicates
    total.group_lines += part.group_lines
    total.uncaptioned += part.uncaptioned
    total.images_not_found.extend(
        {**miss, "name": f"{label}: {miss['name']}"} for miss in part.images_not_found
    )
    total.rejected.extend(
        {"name": f"{label}: {r['name']}", "reason": r["reason"]} for r in part.rejected
    )
    total.normalised.extend(part.normalised)
    total.users_created.extend(part.users_created)
