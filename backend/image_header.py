"""An image file's width and height from its header, read before anything decodes it (a small PNG can
hold a picture of 12000 x 12000 pixels). Pure Python: no bpy, no PIL. PNG, JPEG, WebP, BMP, TIFF and
OpenEXR; None for anything else or a header that makes no sense (the caller's decoder decides then).
"""
from __future__ import annotations

import struct

HEAD = 64 * 1024  # JPEG markers before the frame header (EXIF, ICC profiles) are skipped by seeking
PNG = b"\x89PNG\r\n\x1a\n"


def size(path: str) -> tuple[int, int] | None:
    """(width, height) from the file's header, or None (unknown format, unreadable header)."""
    try:
        with open(path, "rb") as f:
            return size_of(f)
    except OSError:
        return None


def size_of(f) -> tuple[int, int] | None:
    """size() of an image starting at position 0 of a readable, seekable binary file object (io.BytesIO of
    an image's first bytes: a GLB's texture)."""
    try:
        head = f.read(32)
        for magic, reader in _READERS:
            if head.startswith(magic):
                found = reader(f, head)
                return found if found and found[0] > 0 and found[1] > 0 else None
    except (OSError, struct.error, ValueError, IndexError):
        return None
    return None


def png_size_of(f) -> tuple[int, int] | None:
    """size_of() of a PNG only: None for any other format."""
    if f.read(len(PNG)) != PNG:
        return None
    f.seek(0)
    return size_of(f)


def _png(f, head: bytes):
    if head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _jpeg(f, head: bytes):
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte == b"\xff":  # fill bytes
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        length = struct.unpack(">H", f.read(2))[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            height, width = struct.unpack(">xHH", f.read(5))
            return width, height
        if marker == 0xDA or length < 2:  # image data before any frame header
            return None
        f.seek(length - 2, 1)


def _webp(f, head: bytes):
    if head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    data = head[20:30]
    if chunk == b"VP8 ":  # lossy: the key frame's 14-bit sizes after its start code
        if data[3:6] != b"\x9d\x01\x2a":
            return None
        w, h = struct.unpack("<HH", data[6:10])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14 bits each, minus one
        if data[0] != 0x2F:
            return None
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes, minus one
        return int.from_bytes(data[4:7], "little") + 1, int.from_bytes(data[7:10], "little") + 1
    return None


def _bmp(f, head: bytes):
    header_size = struct.unpack("<I", head[14:18])[0]
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", head[18:22])
    w, h = struct.unpack("<ii", head[18:26])
    return abs(w), abs(h)  # a negative height is a top-down bitmap


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4)}  # SHORT, LONG


def _tiff(f, head: bytes):
    order = "<" if head[:2] == b"II" else ">"
    f.seek(struct.unpack(order + "I", head[4:8])[0])
    count = struct.unpack(order + "H", f.read(2))[0]
    found = {}
    for _ in range(min(count, 512)):
        tag, kind, _n, value = struct.unpack(order + "HHI4s", f.read(12))
        if tag in (256, 257) and kind in _TIFF_TYPES:
            code, width = _TIFF_TYPES[kind]
            found[tag] = struct.unpack(order + code, value[:width])[0]
    return (found[256], found[257]) if 256 in found and 257 in found else None


def _exr(f, head: bytes):
    """The dataWindow attribute of the header (box2i: xMin, yMin, xMax, yMax)."""
    f.seek(8)
    data = f.read(HEAD)
    pos = 0
    while pos < len(data) and data[pos] != 0:
        name_end = data.index(b"\0", pos)
        type_end = data.index(b"\0", name_end + 1)
        attr_size = struct.unpack("<i", data[type_end + 1:type_end + 5])[0]
        value = data[type_end + 5:type_end + 5 + attr_size]
        if data[pos:name_end] == b"dataWindow" and data[name_end + 1:type_end] == b"box2i":
            x0, y0, x1, y1 = struct.unpack("<iiii", value[:16])
            return x1 - x0 + 1, y1 - y0 + 1
        pos = type_end + 5 + max(0, attr_size)
    return None


_READERS = (
    (PNG, _png),
    (b"\xff\xd8", _jpeg),
    (b"RIFF", _webp),
    (b"BM", _bmp),
    (b"II*\0", _tiff),
    (b"MM\0*", _tiff),
    (b"\x76\x2f\x31\x01", _exr),
)
