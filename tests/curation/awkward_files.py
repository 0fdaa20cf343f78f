"""Awkward files for import tests: valid-but-odd images that must be accepted and hostile or
broken ones that must be refused, written as a folder, a zip or a tar.

Each writer returns {entry name as iter_source reports it: "accept" or a keyword that the
rejection or skip reason contains}. Everything is drawn in memory, deterministically.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ACCEPT = "accept"


def scene(width: int = 96, height: int = 64, *, seed: int = 0) -> Image.Image:
    """A deterministic RGB picture with structure (gradient, shapes), so hashes mean something."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    tint = rng.integers(0, 256, size=3)[None, None, :]
    pixels = (x * 0.6 + y * 0.3 + tint * 0.1).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).copy(), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
        x1, y1 = x0 + int(rng.integers(6, width // 2)), y0 + int(rng.integers(6, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    return im


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted_png(width: int, height: int, *, idat: bytes | None = None) -> bytes:
    """A PNG whose header claims width x height but whose body is tiny (never allocated)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64) if idat is None else idat
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def rgb_png() -> bytes:
    return encode(scene(seed=1), "PNG")


def exif_rotated_jpeg() -> bytes:
    """40x20 stored, left half red, right half blue, EXIF orientation 6 (turn 90 degrees
    clockwise to display): displayed it is 20x40, red on top."""
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(im, "JPEG", quality=95, exif=exif.tobytes())


def cmyk_jpeg() -> bytes:
    return encode(scene(seed=2).convert("CMYK"), "JPEG", quality=90)


def palette_png_with_transparency() -> bytes:
    """Palette PNG, left half fully transparent (index 0), right half opaque green."""
    im = Image.new("P", (32, 32), 0)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    im.paste(1, (16, 0, 32, 32))
    return encode(im, "PNG", transparency=0)


def rgba_png() -> bytes:
    """Left half fully transparent black, right half opaque red."""
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (16, 0, 32, 32))
    return encode(im, "PNG")


def gray16_png() -> bytes:
    """16-bit grayscale: left column 0, right column 65535, a ramp between."""
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    return encode(Image.fromarray(np.tile(ramp, (16, 1))), "PNG")


def animated_gif() -> bytes:
    """Three frames: red, green, blue; only the red one must survive."""
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def la_png() -> bytes:
    """Grayscale + alpha: left half transparent, right half opaque mid-grey."""
    im = Image.new("LA", (32, 32), (0, 0))
    im.paste((128, 255), (16, 0, 32, 32))
    return encode(im, "PNG")


def grayscale_jpeg() -> bytes:
    return encode(scene(seed=3).convert("L"), "JPEG", quality=90)


def webp() -> bytes:
    return encode(scene(seed=4), "WEBP", quality=90)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupt_png_body() -> bytes:
    """A valid PNG header followed by a body that is not zlib data."""
    return crafted_png(32, 32, idat=b"this is not deflate data" * 4)


HTML = b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>\n"
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.cookie)</script><rect width='10' height='10'/></svg>\n"
)
TEXT = b"Shopping list:\n- eggs\n- flour\n- a picture frame\n"


def image_cases() -> dict[str, tuple[bytes, str]]:
    """Single files: name -> (bytes, "accept" or a keyword of the rejection reason)."""
    return {
        "ok/rgb.png": (rgb_png(), ACCEPT),
        "ok/photo.jpg": (encode(scene(seed=5), "JPEG", quality=90), ACCEPT),
        "ok/exif_rotated.jpg": (exif_rotated_jpeg(), ACCEPT),
        "ok/cmyk.jpg": (cmyk_jpeg(), ACCEPT),
        "ok/palette_transparent.png": (palette_png_with_transparency(), ACCEPT),
        "ok/rgba.png": (rgba_png(), ACCEPT),
        "ok/gray16.png": (gray16_png(), ACCEPT),
        "ok/animated.gif": (animated_gif(), ACCEPT),
        "ok/la.png": (la_png(), ACCEPT),
        "ok/gray.jpg": (grayscale_jpeg(), ACCEPT),
        "ok/photo.webp": (webp(), ACCEPT),
        "ok/scan.bmp": (encode(scene(seed=6), "BMP"), ACCEPT),
        "ok/scan.tiff": (encode(scene(seed=7), "TIFF"), ACCEPT),
        "bad/empty.png": (b"", "empty"),
        "bad/truncated.png": (truncated(encode(scene(seed=8), "PNG")), "truncated"),
        "bad/truncated.jpg": (truncated(encode(scene(seed=9), "JPEG")), "truncated"),
        "bad/corrupt_body.png": (corrupt_png_body(), "corrupt"),
        "bad/random_bytes.png": (
            np.random.default_rng(10).integers(0, 256, 512, dtype=np.uint8).tobytes(),
            "not an image",
        ),
        "bad/page.jpg": (HTML, "HTML"),
        "bad/script.png": (SVG, "SVG"),
        "bad/script.svg": (SVG, "SVG"),
        "bad/notes.gif": (TEXT, "text"),
        "bad/bomb.png": (crafted_png(30_000, 30_000), "decompression bomb"),
        "bad/absurd.png": (crafted_png(100_000, 8), "side cap"),
        "bad/tiny.png": (encode(Image.new("RGB", (2, 2), (9, 9, 9)), "PNG"), "minimum"),
    }


def write_awkward_folder(dest: Path) -> dict[str, str]:
    """Write every case under `dest` (plus OS junk) and return the expected outcomes."""
    expected: dict[str, str] = {}
    for name, (data, outcome) in image_cases().items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[name] = outcome
    junk = {
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "ok/Thumbs.db": b"\xd0\xcf\x11\xe0",
        "ok/._rgb.png": b"\x00\x05\x16\x07AppleDouble",
        "__MACOSX/ok/._rgb.png": b"\x00\x05\x16\x07AppleDouble",
    }
    for name, data in junk.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    expected.update({".DS_Store": "OS junk", "ok/Thumbs.db": "OS junk", "ok/._rgb.png": "OS junk"})
    # A junk folder is reported once, by its name with a trailing slash.
    expected["__MACOSX/"] = "OS junk"
    return expected


def _archive_only_cases() -> dict[str, tuple[bytes, str]]:
    rgb = rgb_png()
    return {
        "../x.png": (rgb, "unsafe path"),
        "/abs.png": (rgb, "unsafe path"),
        "C:/drive.png": (rgb, "unsafe path"),
        "__MACOSX/ok/._rgb.png": (b"\x00\x05\x16\x07AppleDouble", "OS junk"),
        ".DS_Store": (b"\x00\x00\x00\x01Bud1", "OS junk"),
        "ok/Thumbs.db": (b"\xd0\xcf\x11\xe0", "OS junk"),
    }


def write_awkward_zip(dest: Path) -> dict[str, str]:
    """Write a zip at `dest` with every case plus hostile member names; expected outcomes."""
    cases = {**image_cases(), **_archive_only_cases()}
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (data, _) in sorted(cases.items()):
            # writestr keeps hostile names as given (ZipFile.write would sanitise them).
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return {name: outcome for name, (_, outcome) in cases.items()}


def write_awkward_tar(dest: Path) -> dict[str, str]:
    """Write a tar (gzip when `dest` ends in .gz/.tgz) with every case plus link and device
    members; expected outcomes."""
    cases = {**image_cases(), **_archive_only_cases()}
    mode = "w:gz" if dest.name.endswith((".gz", ".tgz")) else "w"
    with tarfile.open(dest, mode) as archive:
        for name, (data, _) in sorted(cases.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
        for name, kind, target in (
            ("links/passwd.png", tarfile.SYMTYPE, "/etc/passwd"),
            ("links/hard.png", tarfile.LNKTYPE, "ok/rgb.png"),
            ("links/device.png", tarfile.CHRTYPE, ""),
        ):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            info.mtime = 1_700_000_000
            archive.addfile(info)
    expected = {name: outcome for name, (_, outcome) in cases.items()}
    expected.update(
        {
            "links/passwd.png": "symlink",
            "links/hard.png": "hard link",
            "links/device.png": "not a regular file",
        }
    )
    return expected
