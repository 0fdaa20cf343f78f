"""Image intake: decide whether bytes are an acceptable image and turn them into the stored
form (an 8-bit RGB PNG), plus thumbnails. Pure Python and Pillow; no Django."""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageCms, ImageOps, features

from curation.intake_hashes import hamming_distance, perceptual_hash
from curation.intake_sniff import header_size, png_bit_depth_and_colour, sniff_format
from curation.intake_sources import iter_source
from curation.intake_types import (
    DEFAULT_LIMITS,
    ImageRejected,
    IntakeLimits,
    NormalisedImage,
    SkippedEntry,
    SourceError,
    SourceFile,
    oversize_reason,
)

__all__ = [
    "DEFAULT_LIMITS",
    "THUMBNAIL_CONTENT_TYPE",
    "THUMBNAIL_EXTENSION",
    "ImageRejected",
    "IntakeLimits",
    "NormalisedImage",
    "SkippedEntry",
    "SourceError",
    "SourceFile",
    "hamming_distance",
    "iter_source",
    "make_thumbnail",
    "normalise_image",
    "perceptual_hash",
]

_WEBP = features.check("webp")
THUMBNAIL_CONTENT_TYPE = "image/webp" if _WEBP else "image/jpeg"
THUMBNAIL_EXTENSION = ".webp" if _WEBP else ".jpg"

_EXIF_ORIENTATION = 0x0112
_PNG_COLOUR_RGB = 2
_WHITE = (255, 255, 255)
_FRAME_NOTES = {
    "TIFF": "multi-page: first page kept",
    "MPO": "multi-picture: first image kept",
}


def normalise_image(data: bytes, *, limits: IntakeLimits = DEFAULT_LIMITS) -> NormalisedImage:
    """Validate `data` and return its stored form; raise ImageRejected with a reason if not.

    Order matters: byte caps, then the real type from magic bytes, then the declared
    dimensions, and only then are pixels decoded, in full, so truncation shows up here.
    """
    _check_byte_size(len(data), limits)
    fmt = sniff_format(data)
    declared = header_size(data, fmt)
    if declared is not None:
        _check_dimensions(*declared, limits)

    with _pillow_bomb_warning_silenced(limits):
        im = _open(data, fmt, limits)
        _check_dimensions(*im.size, limits)
        notes: list[str] = []
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            # Only the first frame is decoded, which keeps a long animation cheap.
            notes.append(_FRAME_NOTES.get(im.format or fmt, "animated: first frame kept"))
        try:
            im.load()
        except Exception as exc:
            raise ImageRejected("truncated or corrupt image data") from exc

    frame: Image.Image = im
    orientation = _orientation(im)
    if orientation not in (None, 1):
        frame = ImageOps.exif_transpose(im)
        notes.append("EXIF orientation applied")

    bits = png_bit_depth_and_colour(data)
    if bits is not None and bits[0] == 16:
        notes.append("16-bit reduced to 8-bit")
    rgb = _to_rgb(frame, notes)

    png = data if _keeps_original_bytes(data, im, bits, notes) else _encode_png(rgb)
    return NormalisedImage(
        png=png,
        width=rgb.width,
        height=rgb.height,
        original_format=fmt,
        sha256=hashlib.sha256(png).hexdigest(),
        md5=hashlib.md5(png).hexdigest(),
        phash=perceptual_hash(rgb),
        notes=tuple(notes),
    )


def make_thumbnail(png: bytes, *, size: int = 256) -> bytes:
    """A deterministic thumbnail of a stored PNG whose longest side is `size` pixels."""
    if size < 1:
        raise ValueError(f"thumbnail size must be positive, got {size}")
    with Image.open(io.BytesIO(png), formats=["PNG"]) as im:
        rgb = im.convert("RGB")
    scale = size / max(rgb.size)
    target = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    # reducing_gap first shrinks by whole factors (cheap), then resamples the rest properly.
    thumb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    if _WEBP:
        thumb.save(buffer, "WEBP", quality=80, method=4)
    else:
        thumb.save(buffer, "JPEG", quality=85, optimize=False, progressive=False)
    return buffer.getvalue()


def _check_byte_size(n: int, limits: IntakeLimits) -> None:
    if n == 0:
        raise ImageRejected("file is empty")
    if n > limits.max_bytes:
        raise ImageRejected(oversize_reason("file", n, limits.max_bytes))


def _check_dimensions(width: int, height: int, limits: IntakeLimits) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected(f"image declares {width}x{height} px, an empty canvas")
    pixels = width * height
    if pixels > limits.max_pixels:
        raise ImageRejected(f"decompression bomb: {pixels} pixels over the {limits.max_pixels} cap")
    if max(width, height) > limits.max_side:
        raise ImageRejected(f"image is {width}x{height} px, over the {limits.max_side} px side cap")
    if min(width, height) < limits.min_side:
        raise ImageRejected(f"image is {width}x{height} px, under the {limits.min_side} px minimum")


@contextmanager
def _pillow_bomb_warning_silenced(limits: IntakeLimits) -> Iterator[None]:
    """Our own cap has already been applied; Pillow's warning would only repeat it.

    Below Pillow's threshold nothing is touched; above it the warning filter is changed for
    the duration of the block only (the warnings module offers nothing narrower).
    """
    threshold = Image.MAX_IMAGE_PIXELS
    if threshold is None or limits.max_pixels <= threshold:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _open(data: bytes, fmt: str, limits: IntakeLimits) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        # Only reachable when the caller's cap is above Pillow's own hard limit, or for
        # formats whose header we do not parse; Pillow's limit then wins.
        threshold = Image.MAX_IMAGE_PIXELS or 0
        raise ImageRejected(
            f"decompression bomb: over the {min(limits.max_pixels, 2 * threshold)} pixel cap"
        ) from exc
    except Exception as exc:
        # Hostile headers make decoders raise all sorts of things; all mean "not usable".
        raise ImageRejected("truncated or corrupt image data") from exc


def _orientation(im: Image.Image) -> int | None:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        # Broken EXIF is common in camera files; the pixels are still fine.
        return None
    return value if isinstance(value, int) else None


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB, recording what changed in `notes`."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        return _cmyk_to_rgb(im)
    if mode in ("P", "PA"):
        notes.append("palette converted")
        if mode == "PA" or "transparency" in im.info:
            return _flatten(im.convert("RGBA"), notes)
        return im.convert("RGB")
    if mode in ("1", "L"):
        notes.append("grayscale converted to RGB")
        return im.convert("RGB")
    if mode in ("LA", "La"):
        notes.append("grayscale converted to RGB")
        return _flatten(im.convert("RGBA"), notes)
    if mode in ("RGBA", "RGBa") or (mode == "RGB" and "transparency" in im.info):
        return _flatten(im.convert("RGBA"), notes)
    if mode.startswith("I;16") or mode in ("I", "F"):
        if "16-bit reduced to 8-bit" not in notes:
            notes.append("16-bit reduced to 8-bit" if mode != "F" else "float reduced to 8-bit")
        notes.append("grayscale converted to RGB")
        return _high_depth_to_rgb(im)
    notes.append(f"{mode} converted to RGB")
    return im.convert("RGB")


def _flatten(rgba: Image.Image, notes: list[str]) -> Image.Image:
    notes.append("alpha flattened on white")
    canvas = Image.new("RGB", rgba.size, _WHITE)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    profile = im.info.get("icc_profile")
    if profile:
        # Print profiles differ a lot; with one at hand the colours come out right.
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(
                im, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return im.convert("RGB")


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    values = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (
        im.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535
    ):
        scaled = values / 257.0  # 65535 maps to 255 exactly
    elif im.mode == "F" and values.size and values.min() >= 0 and values.max() <= 1:
        scaled = values * 255.0
    else:
        # Unknown range (signed or float data): stretch what is there.
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _keeps_original_bytes(
    data: bytes, im: Image.Image, bits: tuple[int, int] | None, notes: list[str]
) -> bool:
    """An 8-bit RGB PNG needing no change is stored as given, so its md5 is kept."""
    return (
        bits == (8, _PNG_COLOUR_RGB)
        and not notes
        and im.mode == "RGB"
        and "transparency" not in im.info
        # A PNG cut just before its end chunk still decodes; store a repaired copy instead.
        and data[-8:-4] == b"IEND"
    )


def _encode_png(rgb: Image.Image) -> bytes:
    clean = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
    clean = clean.copy()
    # No metadata at all: a stale ICC profile or text chunk would change the bytes and,
    # for profiles, lie about the colours.
    clean.info = {}
    buffer = io.BytesIO()
    clean.save(buffer, "PNG", compress_level=6, optimize=False)
    return buffer.getvalue()
