"""Read relsim training data in the export format (anonymous_captions_{train,test}.jsonl with
`<image_hash>.png` beside the files or in images/), from our app's exports or the release."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from ml.data.images import load_image

SPLIT_FILES = {
    "train": "anonymous_captions_train.jsonl",
    "test": "anonymous_captions_test.jsonl",
}
IMAGE_SUBDIR = "images"
REQUIRED_KEYS = ("image_hash", "caption")


class DataFormatError(ValueError):
    """A caption file or its images do not follow the export format."""


@dataclass(frozen=True)
class CaptionRecord:
    image_hash: str
    caption: str
    url_link: str
    image_path: Path


def split_file(data_dir: str | Path, split: str) -> Path:
    """Path of a split's jsonl in an export folder (it must exist)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    path = Path(data_dir) / SPLIT_FILES[split]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path


def _image_path(folder: Path, image_hash: str) -> Path | None:
    for candidate in (folder / f"{image_hash}.png", folder / IMAGE_SUBDIR / f"{image_hash}.png"):
        if candidate.is_file():
            return candidate
    return None


def read_caption_file(
    jsonl_path: str | Path, *, image_dir: str | Path | None = None
) -> list[CaptionRecord]:
    """Parse one jsonl caption file; images are looked up in `image_dir` (default: beside the
    file, then its images/ subfolder). Every problem is reported with its line number."""
    path = Path(jsonl_path)
    folder = Path(image_dir) if image_dir is not None else path.parent
    records: list[CaptionRecord] = []
    missing: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{number}: expected a JSON object")
            absent = [key for key in REQUIRED_KEYS if not isinstance(row.get(key), str)]
            if absent:
                raise DataFormatError(f"{path}:{number}: missing or non-string {absent}")
            image_hash = row["image_hash"].strip()
            caption = row["caption"].strip()
            if not image_hash or not caption:
                raise DataFormatError(f"{path}:{number}: empty image_hash or caption")
            image_path = _image_path(folder, image_hash)
            if image_path is None:
                missing.append(f"line {number}: {image_hash}.png")
                continue
            url = row.get("url_link")
            records.append(
                CaptionRecord(image_hash, caption, url if isinstance(url, str) else "", image_path)
            )
    if missing:
        shown = "; ".join(missing[:5])
        raise DataFormatError(
            f"{len(missing)} image(s) of {path} not found in {folder} or {folder / IMAGE_SUBDIR}: "
            f"{shown}{' ...' if len(missing) > 5 else ''}"
        )
    return records


def read_split(data_dir: str | Path, split: str = "train") -> list[CaptionRecord]:
    """Records of a split in an export folder."""
    return read_caption_file(split_file(data_dir, split))


class CaptionedImages(Dataset[tuple[Image.Image, str, int]]):
    """(preprocessed image, caption, index) for each record; images are read lazily."""

    def __init__(self, records: Sequence[CaptionRecord], image_size: int) -> None:
        if not records:
            raise DataFormatError("no caption records to train on")
        self.records = list(records)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Image.Image, str, int]:
        record = self.records[index]
        try:
            image = load_image(record.image_path, self.image_size)
        except OSError as error:
            # A broken file is a data error to fix, not something to train around silently.
            raise DataFormatError(f"cannot read image {record.image_path}: {error}") from error
        return image, record.caption, index
