"""normalise_image: what is refused (and when), and how awkward images are normalised."""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from curation import intake
from curation.intake import ImageRejected, IntakeLimits, normalise_image
from tests.curation import awkward_files as aw


def _reason(data: bytes, **limits: int) -> str:
    with pytest.raises(ImageRejected) as caught:
        normalise_image(data, limits=IntakeLimits(**limits))
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def _decoded(png: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG"
    im.load()
    return im


def _raw_png(width: int, height: int, bit_depth: int, colour: int, pixels: bytes) -> bytes:
    """A PNG written by hand, for layouts Pillow cannot save (16-bit RGB)."""
    row = len(pixels) // height
    raw = b"".join(b"\x00" + pixels[y * row : (y + 1) * row] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + aw._chunk(b"IHDR", header)
        + aw._chunk(b"IDAT", zlib.compress(raw))
        + aw._chunk(b"IEND", b"")
    )


# --- refused before decoding ------------------------------------------------------------


def test_it_rejects_an_empty_file():
    assert _reason(b"") == "file is empty"


def test_it_rejects_a_file_over_the_byte_cap_without_opening_it(monkeypatch):
    data = aw.rgb_png()

    def must_not_open(*args, **kwargs):
        raise AssertionError("Pillow was asked to open an oversized file")

    monkeypatch.setattr(intake.Image, "open", must_not_open)
    reason = _reason(data, max_bytes=len(data) - 1)
    assert "over the" in reason
    assert str(len(data)) in reason


def test_it_words_the_byte_cap_in_megabytes():
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * (3 * 2**20)
    assert _reason(data, max_bytes=2 * 2**20) == "file is 3 MB, over the 2 MB cap"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (aw.HTML, "not an image (looks like HTML)"),
        (b"  \n<html><body><img src=x></body></html>", "not an image (looks like HTML)"),
        (aw.SVG, "SVG is not accepted (vector images may carry scripts)"),
        (b"<svg onload='alert(1)'></svg>", "SVG is not accepted (vector images may carry scripts)"),
        (aw.TEXT, "not an image (looks like text)"),
        (b'<?xml version="1.0"?><rss></rss>', "not an image (looks like XML)"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "not an image (looks like PDF)"),
        (b"PK\x03\x04" + b"\x00" * 40, "not an image (looks like a ZIP archive)"),
    ],
)
def test_it_names_what_a_non_image_looks_like(data, expected):
    assert _reason(data) == expected


def test_it_rejects_unrecognised_binary_whatever_it_is_called():
    assert _reason(aw.image_cases()["bad/random_bytes.png"][0]) == (
        "not an image (unrecognised format)"
    )


def test_it_refuses_formats_outside_its_list_even_when_pillow_reads_them():
    ico = aw.encode(aw.scene(32, 32), "ICO")
    assert _reason(ico).startswith("not an image")


def test_it_rejects_a_decompression_bomb_from_the_header_alone():
    # The body is not even valid deflate data: had it been decoded, the reason would be
    # "corrupt", so the pixel cap must have been applied first.
    bomb = aw.crafted_png(30_000, 30_000, idat=b"garbage")
    assert _reason(bomb) == "decompression bomb: 900000000 pixels over the 64000000 cap"


def test_its_pixel_cap_applies_below_pillows_own_threshold():
    reason = _reason(aw.rgb_png(), max_pixels=1000)
    assert reason == "decompression bomb: 6144 pixels over the 1000 cap"


@pytest.mark.parametrize(
    "data",
    [
        # JPEG: start-of-frame 0 declaring 60000x60000.
        b"\xff\xd8\xff\xc0\x00\x11\x08"
        + struct.pack(">HH", 60000, 60000)
        + b"\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00\xff\xd9",
        # WebP extended header declaring a 16384x16384 canvas.
        b"RIFF\x00\x01\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00"
        + (16383).to_bytes(3, "little") * 2,
        # BMP info header declaring 30000x30000.
        b"BM" + b"\x00" * 12 + struct.pack("<Iii", 40, 30000, 30000) + b"\x00" * 30,
        # GIF logical screen of 65535x65535.
        b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 20,
    ],
    ids=["jpeg", "webp", "bmp", "gif"],
)
def test_it_reads_bomb_dimensions_from_every_parsed_header(data):
    assert _reason(data).startswith("decompression bomb: ")


def test_it_refuses_what_pillow_refuses_even_with_a_higher_cap():
    # 300M pixels is over Pillow's hard limit; a caller's generous cap does not lift it,
    # and Pillow's global setting is left alone.
    before = Image.MAX_IMAGE_PIXELS
    reason = _reason(aw.crafted_png(20_000, 15_000), max_pixels=10**9)
    assert reason.startswith("decompression bomb")
    assert before == Image.MAX_IMAGE_PIXELS


def test_pillows_bomb_warning_does_not_escape_when_the_cap_is_raised():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reason = _reason(aw.crafted_png(10_000, 10_000), max_pixels=150_000_000)
    assert reason == "truncated or corrupt image data"
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((100_000, 8), "image is 100000x8 px, over the 20000 px side cap"),
        ((8, 25_000), "image is 8x25000 px, over the 20000 px side cap"),
        ((0, 50), "image declares 0x50 px, an empty canvas"),
        ((2, 2), "image is 2x2 px, under the 8 px minimum"),
    ],
)
def test_it_rejects_absurd_header_dimensions(size, expected):
    assert _reason(aw.crafted_png(*size)) == expected


def test_it_rejects_a_real_image_under_the_minimum_side():
    assert _reason(aw.image_cases()["bad/tiny.png"][0]) == "image is 2x2 px, under the 8 px minimum"


# --- refused while decoding -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_it_rejects_a_truncated_image(fmt):
    whole = aw.encode(aw.scene(seed=11), fmt)
    assert _reason(aw.truncated(whole)) == "truncated or corrupt image data"


def test_it_rejects_a_png_whose_pixel_data_is_garbage():
    assert _reason(aw.corrupt_png_body()) == "truncated or corrupt image data"


def test_it_rejects_a_header_only_png():
    signature_and_header = aw.crafted_png(32, 32)[:33]
    assert _reason(signature_and_header) == "truncated or corrupt image data"


# --- accepted and normalised ------------------------------------------------------------


def test_an_rgb_png_keeps_its_original_bytes_and_md5():
    data = aw.rgb_png()
    result = normalise_image(data)
    assert result.png == data
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert (result.width, result.height, result.original_format) == (96, 64, "PNG")
    assert result.notes == ()


def test_a_jpeg_is_stored_as_an_rgb_png_with_matching_hashes():
    data = aw.encode(aw.scene(seed=5), "JPEG", quality=90)
    result = normalise_image(data)
    stored = _decoded(result.png)
    assert stored.mode == "RGB"
    assert stored.size == (96, 64) == (result.width, result.height)
    assert result.original_format == "JPEG"
    assert result.md5 == hashlib.md5(result.png).hexdigest()
    assert result.sha256 == hashlib.sha256(result.png).hexdigest()


def test_exif_orientation_6_is_applied():
    result = normalise_image(aw.exif_rotated_jpeg())
    assert (result.width, result.height) == (20, 40)
    assert "EXIF orientation applied" in result.notes
    stored = np.asarray(_decoded(result.png), dtype=int)
    # Stored with red on the left; turned a quarter clockwise, red is on top.
    assert np.abs(stored[5, 10] - (255, 0, 0)).max() < 40
    assert np.abs(stored[35, 10] - (0, 0, 255)).max() < 40


def test_an_rgb_png_with_an_orientation_tag_is_turned_and_re_encoded():
    im = aw.scene(seed=12)
    exif = Image.Exif()
    exif[0x0112] = 8
    data = aw.encode(im, "PNG", exif=exif.tobytes())
    result = normalise_image(data)
    assert result.png != data
    assert (result.width, result.height) == (64, 96)
    assert result.notes == ("EXIF orientation applied",)


def test_a_cmyk_jpeg_is_converted_to_rgb_with_its_colours():
    result = normalise_image(aw.cmyk_jpeg())
    assert "CMYK converted to RGB" in result.notes
    stored = np.asarray(_decoded(result.png), dtype=float)
    original = np.asarray(aw.scene(seed=2), dtype=float)
    assert np.abs(stored - original).mean() < 12


def test_a_palette_png_with_transparency_is_flattened_on_white():
    result = normalise_image(aw.palette_png_with_transparency())
    assert result.notes == ("palette converted", "alpha flattened on white")
    stored = _decoded(result.png)
    assert stored.mode == "RGB"
    assert stored.getpixel((2, 2)) == (255, 255, 255)
    assert stored.getpixel((30, 2)) == (0, 255, 0)


def test_an_rgba_png_is_flattened_on_white():
    result = normalise_image(aw.rgba_png())
    assert result.notes == ("alpha flattened on white",)
    stored = _decoded(result.png)
    assert stored.getpixel((2, 2)) == (255, 255, 255)
    assert stored.getpixel((30, 2)) == (255, 0, 0)


def test_half_transparent_pixels_are_blended_with_white():
    im = Image.new("RGBA", (16, 16), (0, 0, 0, 128))
    stored = _decoded(normalise_image(aw.encode(im, "PNG")).png)
    assert all(abs(c - 127) <= 1 for c in stored.getpixel((3, 3)))


def test_an_rgb_png_with_a_transparent_colour_is_flattened():
    im = aw.scene(seed=13)
    im.paste((1, 2, 3), (0, 0, 10, 10))
    result = normalise_image(aw.encode(im, "PNG", transparency=(1, 2, 3)))
    assert "alpha flattened on white" in result.notes
    assert _decoded(result.png).getpixel((5, 5)) == (255, 255, 255)


def test_a_16_bit_grayscale_png_is_scaled_not_clipped():
    result = normalise_image(aw.gray16_png())
    assert "16-bit reduced to 8-bit" in result.notes
    stored = np.asarray(_decoded(result.png))
    assert tuple(stored[0, 0]) == (0, 0, 0)
    assert tuple(stored[0, -1]) == (255, 255, 255)
    middle = stored[0, 32, 0]
    assert 120 <= middle <= 136


def test_a_16_bit_rgb_png_is_reduced_and_re_encoded():
    values = np.zeros((8, 8, 3), dtype=">u2")
    values[..., 0] = 65535
    values[..., 2] = 32896
    data = _raw_png(8, 8, 16, 2, values.tobytes())
    result = normalise_image(data)
    assert result.png != data
    assert result.notes == ("16-bit reduced to 8-bit",)
    assert _decoded(result.png).getpixel((1, 1)) == (255, 0, 128)


def test_an_animated_gif_keeps_its_first_frame():
    result = normalise_image(aw.animated_gif())
    assert "animated: first frame kept" in result.notes
    stored = np.asarray(_decoded(result.png))
    assert (stored == (255, 0, 0)).all()


def test_an_la_png_is_flattened_to_grey_rgb():
    result = normalise_image(aw.la_png())
    assert result.notes == ("grayscale converted to RGB", "alpha flattened on white")
    stored = _decoded(result.png)
    assert stored.getpixel((2, 2)) == (255, 255, 255)
    assert stored.getpixel((30, 2)) == (128, 128, 128)


def test_a_grayscale_jpeg_becomes_grey_rgb():
    result = normalise_image(aw.grayscale_jpeg())
    assert result.notes == ("grayscale converted to RGB",)
    r, g, b = _decoded(result.png).split()
    assert r.tobytes() == g.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (aw.webp(), "WEBP"),
        (aw.encode(aw.scene(), "BMP"), "BMP"),
        (aw.encode(aw.scene(), "TIFF"), "TIFF"),
    ],
)
def test_other_raster_formats_are_accepted(data, fmt):
    result = normalise_image(data)
    assert result.original_format == fmt
    assert _decoded(result.png).size == (96, 64)


def test_a_png_missing_its_end_chunk_is_accepted_but_stored_repaired():
    data = aw.rgb_png()[:-12]
    result = normalise_image(data)
    assert result.png != data
    assert result.png.endswith(b"IEND\xaeB`\x82")
    assert _decoded(result.png).tobytes() == _decoded(aw.rgb_png()).tobytes()


def test_the_stored_png_carries_no_metadata():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "SomeCamera"
    data = aw.encode(aw.scene(seed=14), "JPEG", icc_profile=srgb, exif=exif.tobytes())
    png = normalise_image(data).png
    for chunk in (b"iCCP", b"eXIf", b"tEXt", b"zTXt", b"iTXt"):
        assert chunk not in png


@pytest.mark.parametrize(
    "name", sorted(n for n, (_, o) in aw.image_cases().items() if o == "accept")
)
def test_normalising_is_deterministic_and_always_gives_rgb_png(name):
    data = aw.image_cases()[name][0]
    first, second = normalise_image(data), normalise_image(data)
    assert first == second
    stored = _decoded(first.png)
    assert stored.mode == "RGB"
    assert stored.size == (first.width, first.height)


def test_it_leaves_pillows_global_settings_alone():
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    for data, _ in aw.image_cases().values():
        with contextlib.suppress(ImageRejected):
            normalise_image(data, limits=IntakeLimits(max_pixels=150_000_000))
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
