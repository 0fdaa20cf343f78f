"""Identify a file's real type from its first bytes, and read image dimensions from headers
without decoding pixels, so that bad input is refused before a decoder ever sees it."""

from __future__ import annotations

import struct

from curation.intake_types import ImageRejected

# Raster formats we hand to Pillow. Anything else is refused even if Pillow could open it:
# each extra plugin is extra attack surface (EPS, for one, runs Ghostscript).
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sniff_format(data: bytes) -> str:
    """The accepted format `data` really is (one of ACCEPTED_FORMATS), or ImageRejected."""
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    raise ImageRejected(_why_not_an_image(data))


def _why_not_an_image(data: bytes) -> str:
    if data.startswith(b"%PDF-"):
        return "not an image (looks like PDF)"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "not an image (looks like a ZIP archive)"
    if data.startswith(b"\x1f\x8b"):
        return "not an image (looks like gzip data)"
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace").strip()
        return f"unsupported image container ({brand or 'ISO media'}); convert to PNG or JPEG"
    text = _as_text(data[:4096])
    if text is not None:
        head = text.lstrip("\ufeff \t\r\n").lower()
        if "<svg" in head:
            return "SVG is not accepted (vector images may carry scripts)"
        if head.startswith(("<!doctype html", "<html")) or any(
            tag in head for tag in ("<html", "<head", "<body", "<script")
        ):
            return "not an image (looks like HTML)"
        if head.startswith("<?xml") or head.startswith("<"):
            return "not an image (looks like XML)"
        return "not an image (looks like text)"
    return "not an image (unrecognised format)"


def _as_text(head: bytes) -> str | None:
    """`head` decoded when it reads as text; None for binary data."""
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            return head[2:].decode(codec, "ignore")
    if b"\x00" in head:
        return None
    # A cut can split a multi-byte character at the end of the window; tolerate that only.
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")
    control = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\r\n\f")
    return text if control <= len(text) // 100 else None


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) as the header declares them, or None where we do not parse it."""
    try:
        if fmt == "PNG":
            if data[12:16] != b"IHDR":
                return None
            w, h = struct.unpack(">II", data[16:24])
            return w, h
        if fmt == "GIF":
            w, h = struct.unpack("<HH", data[6:10])
            return w, h
        if fmt == "BMP":
            return _bmp_size(data)
        if fmt == "WEBP":
            return _webp_size(data)
        if fmt == "JPEG":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def png_bit_depth_and_colour(data: bytes) -> tuple[int, int] | None:
    """The IHDR bit depth and colour type of a PNG (e.g. (8, 2) for 8-bit RGB)."""
    if not data.startswith(_PNG_MAGIC) or data[12:16] != b"IHDR" or len(data) < 26:
        return None
    return data[24], data[25]


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    (header_len,) = struct.unpack("<I", data[14:18])
    if header_len == 12:
        w, h = struct.unpack("<HH", data[18:22])
        return w, h
    w, h = struct.unpack("<ii", data[18:26])
    # A negative height only means the rows are stored top-down.
    return abs(w), abs(h)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    end = len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan: no frame header seen
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
            # Height 0 means "defined later" (DNL); leave that to the decoder.
            return (w, h) if h else None
        pos += 2 + length
    return None
