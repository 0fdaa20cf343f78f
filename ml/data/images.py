"""The one image preprocessing step shared by relsim training and inference: RGB, centre crop
to a square, LANCZOS resize to N x N pixels (448 for the real model)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

# The real model's input size; Qwen2.5-VL turns 448 px into 32 x 32 patches -> 256 LLM tokens.
REAL_IMAGE_SIZE = 448
# Qwen2.5-VL cuts 14 px patches and merges 2 x 2 of them, so a side must be a multiple of 28.
SIDE_MULTIPLE = 28


def check_image_size(size: int) -> int:
    """Return `size` if Qwen2.5-VL can tile it exactly, else raise ValueError."""
    if size < SIDE_MULTIPLE * 2 or size % SIDE_MULTIPLE:
        raise ValueError(
            f"image size must be a multiple of {SIDE_MULTIPLE} and at least {SIDE_MULTIPLE * 2}, "
            f"got {size}"
        )
    return size


def preprocess_image(image: Image.Image, size: int = REAL_IMAGE_SIZE) -> Image.Image:
    """RGB, centre-cropped to a square, LANCZOS-resized to `size` x `size`."""
    check_image_size(size)
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    if (width, height) != (side, side):
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def load_image(path: str | Path, size: int = REAL_IMAGE_SIZE) -> Image.Image:
    """Open an image file and preprocess it; the file is fully read so truncation fails here."""
    with Image.open(path) as opened:
        opened.load()
        return preprocess_image(opened, size)
