"""A GLB's JSON document, checked before anything reads it as glTF (validate_glb in glb.py calls these):
parse_json bounds the parse (size, objects, nesting); check_references refuses any buffer or image that is
not in the file itself, since an importer follows a `uri` naming `../x`, `/etc/x` or any other file and reads
it into the scene (only the GLB's own binary chunk, no uri, and base64 `data:` URIs are accepted), and any
index or byte range outside the file; check_textures reads the pictures' pixel counts from their headers and
caps them before anything decodes them (a small PNG can hold a picture of 60000 x 60000)."""
from __future__ import annotations

import base64
import binascii
import io
import json
import re

import numpy as np

from . import image_header

MAX_TEXTURE_SIDE = 8192  # twice the largest texture TRELLIS.2 bakes (4096²)
MAX_TEXTURE_PIXELS = 4 * MAX_TEXTURE_SIDE ** 2  # all of a file's textures together: 1 GiB of RGBA bytes
MAX_IMAGES = 64  # a GLB's or a snapshot's images at most (TRELLIS.2 writes two; a finished result's bakes add four)
TEXTURE_HEAD = 1 << 20  # bytes of a texture read for its header (a JPEG's metadata comes before its size)

# The JSON chunk. A result's is a few kB (TRELLIS.2's export, write_glb: one mesh, two images); the caps bound
# json.loads. 8 MiB of empty lists would be about 2.8 million objects, so the containers ({} and []) are counted
# first and capped too, so that what is left to parse is short strings (bench/README.md: its peak memory). The
# nesting is counted before parsing too: a JSON of 100 000 nested lists is a
# RecursionError in json.loads. A result's JSON nests about 10 levels.
MAX_JSON_BYTES = 8 << 20
MAX_JSON_CONTAINERS = 100_000
MAX_JSON_DEPTH = 64


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)')  # to the closing quote, or the end
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, base: str):
    """The JSON chunk's document: ValueError unless it is UTF-8 JSON of at most MAX_JSON_CONTAINERS objects and
    lists nested at most MAX_JSON_DEPTH deep (counted on its brackets outside strings before json.loads: a
    string pattern that always matches from a quote, so the scan is linear whatever the bytes)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{base}: its JSON chunk is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    opened = brackets.count(b"[") + brackets.count(b"{")
    if opened > MAX_JSON_CONTAINERS:
        raise ValueError(f"{base}: its JSON holds {opened} objects and lists; at most {MAX_JSON_CONTAINERS} are "
                         "accepted")
    steps = np.frombuffer(brackets, np.uint8)
    depth = int(np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1)).max(initial=0))
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{base}: its JSON nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"{base}: its JSON nests too deep") from None
    except ValueError as exc:
        raise ValueError(f"{base}: unreadable JSON chunk ({exc})") from None


BASE64_MARK = ";base64,"  # Blender's importer decodes what follows the first one; a data: URI without it
# is read as a file name beside the GLB (io_scene_gltf2 load_uri), so _uri refuses it


def _data_uri(uri: str, end: int) -> bytes:
    """The first `end` bytes of a base64 data: URI's payload (what follows its first BASE64_MARK, as the importer
    reads it)."""
    payload = uri.partition(BASE64_MARK)[2]
    chars = -(-end // 3) * 4
    try:
        return base64.b64decode(payload[:chars] + "=" * (-len(payload[:chars]) % 4))[:end]
    except (binascii.Error, ValueError):
        return b""


def _texture_head(path: str, doc: dict, image: dict, bin_start: int | None) -> bytes:
    """The first TEXTURE_HEAD bytes of an image check_references accepted: in the binary chunk or a data: URI."""
    if image.get("uri") is not None:
        return _data_uri(image["uri"], TEXTURE_HEAD)
    view = doc["bufferViews"][image["bufferView"]]
    offset, length = view.get("byteOffset", 0), min(view["byteLength"], TEXTURE_HEAD)
    buffer = doc["buffers"][view["buffer"]]
    if buffer.get("uri") is not None:
        return _data_uri(buffer["uri"], offset + length)[offset:]
    with open(path, "rb") as f:
        f.seek(bin_start + offset)
        return f.read(length)


def sizes_problem(pictures) -> str:
    """Why these pictures may not be decoded, "" where they may: pictures yields (a name for the message,
    (width, height) or None where the header gave none), and is read only up to the first that is too many,
    unreadable, over MAX_TEXTURE_SIDE on a side, or over MAX_TEXTURE_PIXELS with those before it (an
    importer, and a viewport's first draw, decode them all)."""
    total = 0
    for count, (name, found) in enumerate(pictures, 1):
        if count > MAX_IMAGES:
            return f"over {MAX_IMAGES} images"
        if found is None:
            return f"{name} is not a PNG, JPEG or WebP picture whose size can be read"
        width, height = found
        if max(width, height) > MAX_TEXTURE_SIDE:
            return f"{name} is {width} x {height} pixels; at most {MAX_TEXTURE_SIDE} on a side is accepted"
        total += width * height
        if total > MAX_TEXTURE_PIXELS:
            return f"its images hold over {MAX_TEXTURE_PIXELS // 1000000} million pixels together"
    return ""


def check_textures(path: str, doc: dict, bin_start: int | None, base: str) -> None:
    """ValueError unless every image's header gives its size and sizes_problem finds nothing."""
    problem = sizes_problem((f"image {n}", image_header.size_of(io.BytesIO(_texture_head(path, doc, image, bin_start))))
                            for n, image in enumerate(doc.get("images", [])))
    if problem:
        raise ValueError(f"{base}: {problem}")


def _items(doc: dict, name: str, base: str) -> list:
    items = doc.get(name, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{base}: '{name}' is not a list of objects")
    return items


def _shown(value) -> str:
    """A value of the file in a message: as JSON would spell it in Python, cut short."""
    return repr(value)[:60]


def _index(item: dict, key: str, count: int, where: str, base: str, required: bool = False) -> None:
    value = item.get(key)
    if value is None and not required:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
        raise ValueError(f"{base}: {where} names {key} {_shown(value)}, which the file does not have ({count} "
                         "there)")


def _uri(item: dict, where: str, base: str) -> None:
    uri = item.get("uri")
    if uri is not None and not (isinstance(uri, str) and uri.startswith("data:") and BASE64_MARK in uri):
        raise ValueError(f"{base}: {where} refers to another file ({str(uri)[:80]!r}); only data embedded in the "
                         "GLB is accepted (its binary chunk, or a base64 data: URI)")


def _whole(item: dict, key: str, where: str, base: str, default: int | None = None) -> int:
    """item[key] (default where absent and not None): a whole number of at least 0; ValueError for anything else
    (a bool, a float such as 3.0, a string, a negative number)."""
    value = item.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{base}: {where} has {key} {_shown(value)}, not a whole number of at least 0")
    return value


def _objects(value, what: str, base: str, kind=list) -> None:
    """ValueError unless value is a list of objects (kind=list) or an object (kind=dict)."""
    if kind is dict and not isinstance(value, dict) or kind is list and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)):
        raise ValueError(f"{base}: {what} is not {'an object' if kind is dict else 'a list of objects'}")


def check_references(doc, bin_len: int | None, base: str) -> None:
    """ValueError unless every buffer and image is embedded (no uri: the binary chunk; or a data: URI) and
    every index (bufferView -> buffer, accessor -> bufferView, image -> bufferView) and byte range is inside
    the file. bin_len: the binary chunk's length (None: the file has none)."""
    if not isinstance(doc, dict):
        raise ValueError(f"{base}: the JSON chunk is not an object")
    buffers, views = _items(doc, "buffers", base), _items(doc, "bufferViews", base)
    sizes = []
    for n, buffer in enumerate(buffers):
        _uri(buffer, f"buffer {n}", base)
        length = buffer.get("byteLength")
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise ValueError(f"{base}: buffer {n} has no valid byteLength")
        if buffer.get("uri") is None and (n != 0 or bin_len is None or length > bin_len):
            raise ValueError(f"{base}: buffer {n} refers to a binary chunk the file does not hold")
        sizes.append(length)
        if buffer.get("uri") is not None:
            try:  # decoded as the importer decodes it; the JSON chunk's cap bounds it
                held = len(base64.b64decode(buffer["uri"].partition(BASE64_MARK)[2]))
            except (binascii.Error, ValueError):
                held = -1
            if held < length:
                raise ValueError(f"{base}: buffer {n}'s data: URI does not hold its byteLength of {length} bytes in "
                                 "base64")
    for n, view in enumerate(views):
        _index(view, "buffer", len(buffers), f"bufferView {n}", base, required=True)
        offset, length = view.get("byteOffset", 0), view.get("byteLength")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, length)) \
                or offset + length > sizes[view["buffer"]]:
            raise ValueError(f"{base}: bufferView {n} lies outside its buffer")
        stride = view.get("byteStride")
        if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or not 4 <= stride <= 252
                                   or stride % 4):
            raise ValueError(f"{base}: bufferView {n} has byteStride {_shown(stride)} (glTF: 4 to 252, a "
                             "multiple of 4)")
    for n, accessor in enumerate(_items(doc, "accessors", base)):
        _index(accessor, "bufferView", len(views), f"accessor {n}", base)
    for n, image in enumerate(_items(doc, "images", base)):
        _uri(image, f"image {n}", base)
        _index(image, "bufferView", len(views), f"image {n}", base, required=image.get("uri") is None)
