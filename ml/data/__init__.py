"""The released data formats and image handling every trainer shares: caption files of an export
and the one image preprocessing step."""

from __future__ import annotations

from ml.data.captions import (
    CaptionedImages,
    CaptionRecord,
    DataFormatError,
    read_caption_file,
    read_split,
    split_file,
)
from ml.data.images import REAL_IMAGE_SIZE, check_image_size, load_image, preprocess_image

__all__ = [
    "REAL_IMAGE_SIZE",
    "CaptionRecord",
    "CaptionedImages",
    "DataFormatError",
    "check_image_size",
    "load_image",
    "preprocess_image",
    "read_caption_file",
    "read_split",
    "split_file",
]
