"""The byte and pixel caps of image intake at their edges: a file exactly at a cap is taken,
one byte or one pixel more is refused with a reason that names both numbers.

The caps come from the settings (RELSIM_MAX_IMAGE_MB, RELSIM_MAX_IMAGE_PIXELS) through
`curation.services.intake_limits`, as every importer gets them."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from curation.intake import ImageRejected, normalise_image
from curation.models import Image
from curation.services import images_import, intake_limits
from tests.curation import awkward_files as aw

pytestmark = pytest.mark.both_databases

MIB = 2**20
# 64 x 64 is exactly the pixel cap below; 17 x 241 is 4097 pixels, one more.
PIXEL_CAP = 4096
AT_PIXEL_CAP = (64, 64)
OVER_PIXEL_CAP = (17, 241)
OVER_PIXELS_REASON = "decompression bomb: 4097 pixels over the 4096 cap"
OVER_BYTES_REASON = f"file is {MIB + 1} bytes, over the {MIB} byte cap"
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


@pytest.fixture
def caps(settings: Any) -> None:
    settings.RELSIM_MAX_IMAGE_MB = 1
    settings.RELSIM_MAX_IMAGE_PIXELS = PIXEL_CAP


def _png_of_exactly(size: int, *, seed: int = 0) -> bytes:
    """A valid 64 x 64 RGB PNG padded to `size` bytes with a private ancillary chunk, which
    decoders skip, placed before the image data so the file still ends with IEND."""
    png = aw.encode(aw.scene(64, 64, seed=seed), "PNG")
    signature_and_header = 8 + 25
    padding = size - len(png) - 12  # a chunk costs length, type and CRC: 12 bytes
    assert padding >= 0
    padded = (
        png[:signature_and_header]
        + aw._chunk(b"rsPd", b"\x00" * padding)
        + png[signature_and_header:]
    )
    assert len(padded) == size
    return padded


def _image(fmt: str, size: tuple[int, int], *, seed: int = 0) -> bytes:
    return aw.encode(aw.scene(*size, seed=seed), fmt)


def _reason(data: bytes) -> str:
    with pytest.raises(ImageRejected) as caught:
        normalise_image(data, limits=intake_limits())
    return caught.value.reason


def test_the_settings_reach_the_intake_limits_unchanged(caps: None) -> None:
    limits = intake_limits()
    assert (limits.max_bytes, limits.max_pixels) == (MIB, PIXEL_CAP)


# --- bytes ----------------------------------------------------------------------------------


def test_a_file_of_exactly_the_byte_cap_is_accepted(caps: None) -> None:
    data = _png_of_exactly(MIB)
    normalised = normalise_image(data, limits=intake_limits())
    # Stored as given: nothing was cut off to make it fit.
    assert normalised.png == data


def test_a_file_one_byte_over_the_byte_cap_is_refused_with_both_sizes(caps: None) -> None:
    assert _reason(_png_of_exactly(MIB + 1)) == OVER_BYTES_REASON


# --- pixels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_image_of_exactly_the_pixel_cap_is_accepted(caps: None, fmt: str) -> None:
    normalised = normalise_image(_image(fmt, AT_PIXEL_CAP), limits=intake_limits())
    assert (normalised.width, normalised.height) == AT_PIXEL_CAP


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_image_one_pixel_over_the_pixel_cap_is_refused_with_both_counts(
    caps: None, fmt: str
) -> None:
    assert _reason(_image(fmt, OVER_PIXEL_CAP)) == OVER_PIXELS_REASON


@pytest.mark.parametrize(
    "data",
    [
        # Signature and IHDR, then nothing.
        aw.crafted_png(*OVER_PIXEL_CAP)[:33],
        # A start-of-frame that claims nine components but describes three.
        b"\xff\xd8\xff\xc0\x00\x11\x08"
        + struct.pack(">HH", OVER_PIXEL_CAP[1], OVER_PIXEL_CAP[0])
        + b"\x09\x01\x11\x00\x02\x11\x00\x03\x11\x00\xff\xd9",
        b"RIFF\x00\x01\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00"
        + (OVER_PIXEL_CAP[0] - 1).to_bytes(3, "little")
        + (OVER_PIXEL_CAP[1] - 1).to_bytes(3, "little"),
        b"BM" + b"\x00" * 12 + struct.pack("<Iii", 40, *OVER_PIXEL_CAP) + b"\x00" * 30,
        b"GIF89a" + struct.pack("<HH", *OVER_PIXEL_CAP) + b"\x00" * 20,
    ],
    ids=["png", "jpeg", "webp", "bmp", "gif"],
)
def test_a_header_declaring_one_pixel_over_the_cap_is_refused_for_that_reason(
    caps: None, data: bytes
) -> None:
    # Pillow cannot open any of these files, so the reason can only come from reading the
    # header ourselves, before a decoder sees the file; a misread size or a cap applied only
    # after decoding would give "truncated or corrupt" instead.
    assert _reason(data) == OVER_PIXELS_REASON


# --- through an import ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_import_takes_files_at_the_caps_and_refuses_those_just_over(
    caps: None, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "bytes_at_cap.png").write_bytes(_png_of_exactly(MIB, seed=1))
    (folder / "bytes_over_cap.png").write_bytes(_png_of_exactly(MIB + 1, seed=2))
    (folder / "pixels_at_cap.png").write_bytes(_image("PNG", AT_PIXEL_CAP, seed=3))
    (folder / "pixels_over_cap.png").write_bytes(_image("PNG", OVER_PIXEL_CAP, seed=4))

    report = images_import(source=folder)

    assert sorted(report.rejected, key=lambda row: row["name"]) == [
        {"name": "bytes_over_cap.png", "reason": OVER_BYTES_REASON},
        {"name": "pixels_over_cap.png", "reason": OVER_PIXELS_REASON},
    ]
    assert report.accepted == 2
    assert sorted(Image.objects.values_list("source_name", flat=True)) == [
        "bytes_at_cap.png",
        "pixels_at_cap.png",
    ]
