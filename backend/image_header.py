"""An image file's width and height from its header, read before anything decodes it (a small PNG can
hold a picture of 12000 x 12000 pixels). Pure Python: no bpy, no PIL. PNG, JPEG, WebP, BMP, TIFF and
OpenEXR; None for anything else or a header that makes no sense (the caller's decoder decides then).
`depth` adds the bits a channel and what the decoded picture takes in Blender (a 16-bit PNG decodes into
floats: four times the bytes of an 8-bit one).
"""
from __future__ import annotations

import struct
from typing import NamedTuple

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
    found = _tiff_tags(f, head, (256, 257))
    return (found[256], found[257]) if 256 in found and 257 in found else None


def _tiff_tags(f, head: bytes, wanted: tuple) -> dict[int, int]:
    """tag -> the first value of each wanted SHORT or LONG tag of the first directory."""
    order = "<" if head[:2] == b"II" else ">"
    f.seek(struct.unpack(order + "I", head[4:8])[0])
    count = struct.unpack(order + "H", f.read(2))[0]
    found = {}
    for _ in range(min(count, 512)):
        tag, kind, n, value = struct.unpack(order + "HHI4s", f.read(12))
        if tag in wanted and kind in _TIFF_TYPES:
            code, width = _TIFF_TYPES[kind]
            if n * width > 4:  # the values are elsewhere (BitsPerSample of several samples): the first
                here = f.tell()
                f.seek(struct.unpack(order + "I", value)[0])
                value = f.read(width)
                f.seek(here)
            found[tag] = struct.unpack(order + code, value[:width])[0]
    return found


def _exr(f, head: bytes):
    """The dataWindow attribute of the header (box2i: xMin, yMin, xMax, yMax)."""
    value = _exr_attributes(f).get((b"dataWindow", b"box2i"))
    if value is None:
        return None
    x0, y0, x1, y1 = struct.unpack("<iiii", value[:16])
    return x1 - x0 + 1, y1 - y0 + 1


def _exr_attributes(f) -> dict[tuple[bytes, bytes], bytes]:
    """(name, type) -> value of the header's attributes (within its first HEAD bytes)."""
    f.seek(8)
    data = f.read(HEAD)
    pos, found = 0, {}
    while pos < len(data) and data[pos] != 0:
        name_end = data.index(b"\0", pos)
        type_end = data.index(b"\0", name_end + 1)
        attr_size = struct.unpack("<i", data[type_end + 1:type_end + 5])[0]
        found[data[pos:name_end], data[name_end + 1:type_end]] = data[type_end + 5:type_end + 5 + attr_size]
        pos = type_end + 5 + max(0, attr_size)
    return found


_READERS = (
    (PNG, _png),
    (b"\xff\xd8", _jpeg),
    (b"RIFF", _webp),
    (b"BM", _bmp),
    (b"II*\0", _tiff),
    (b"MM\0*", _tiff),
    (b"\x76\x2f\x31\x01", _exr),
)


# --- how a picture decodes -----------------------------------------------------------------------------
class Depth(NamedTuple):
    width: int
    height: int
    bits: int  # a channel's bits in the file (8 for JPEG, WebP, BMP and 8-bit PNG or TIFF)
    is_float: bool  # Blender decodes it into a float buffer: OpenEXR, and PNG or TIFF deeper than 8 bits

    @property
    def decoded_bytes(self) -> int:
        """What Blender's decoded picture takes: 4 bytes a pixel (RGBA bytes), or 16 (RGBA floats)."""
        return self.width * self.height * (16 if self.is_float else 4)


def depth(path: str) -> Depth | None:
    """size() with the bits a channel and whether Blender decodes it into floats; None where size() is."""
    try:
        with open(path, "rb") as f:
            found = size_of(f)
            if found is None:
                return None
            f.seek(0)
            head = f.read(32)
            reader = next(r for magic, r in _READERS if head.startswith(magic))
            bits, is_float = _DEPTHS.get(reader, lambda f, head: (8, False))(f, head)
    except (OSError, struct.error, ValueError, IndexError, StopIteration):
        return None
    return Depth(found[0], found[1], bits, is_float)


def _png_depth(f, head: bytes):
    return head[24], head[24] > 8


def _tiff_depth(f, head: bytes):
    found = _tiff_tags(f, head, (258, 339))  # BitsPerSample, SampleFormat (3: floating point)
    bits = found.get(258, 1)
    return bits, bits > 8 or found.get(339) == 3


def _exr_depth(f, head: bytes):
    """32 bits unless every channel is HALF (the chlist attribute: name, pixel type 0 UINT, 1 HALF, 2 FLOAT...)."""
    channels = _exr_attributes(f).get((b"channels", b"chlist"), b"")
    pos, kinds = 0, set()
    while pos < len(channels) and channels[pos] != 0:
        name_end = channels.index(b"\0", pos)
        kinds.add(struct.unpack("<i", channels[name_end + 1:name_end + 5])[0])
        pos = name_end + 17  # pixel type, pLinear and 3 reserved bytes, x and y sampling
    return (16 if kinds == {1} else 32), True


_DEPTHS = {_png: _png_depth, _tiff: _tiff_depth, _exr: _exr_depth}
