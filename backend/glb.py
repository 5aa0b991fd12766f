"""Minimal glTF 2.0 binary (GLB) writer for one textured PBR mesh, and a structural check of GLB files.

A result GLB is untrusted (a provider made it): validate_glb refuses any buffer or image that is not in
the file itself, since an importer follows a `uri` naming `../x`, `/etc/x` or any other file and reads
it into the scene. Only the GLB's own binary chunk (no uri) and `data:` URIs are accepted, and every
bufferView, accessor and image index must point inside the file. Its textures' pixel counts are read from
their headers and capped before anything decodes them (a small PNG can hold a picture of 60000 x 60000)."""
from __future__ import annotations

import base64
import binascii
import io
import json
import os
import struct

import numpy as np

from . import image_header

GLB_MAGIC = b"glTF"
JSON_CHUNK, BIN_CHUNK = 0x4E4F534A, 0x004E4942
FLOAT, UNSIGNED_INT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
MAX_TEXTURE_SIDE = 8192  # twice the largest texture TRELLIS.2 bakes (4096²)
MAX_TEXTURE_PIXELS = 4 * MAX_TEXTURE_SIDE ** 2  # all of a file's textures together: 1 GiB of RGBA bytes
MAX_IMAGES = 64  # a GLB's or a snapshot's images at most (TRELLIS.2 writes two; a finished result's bakes add four)
TEXTURE_HEAD = 1 << 20  # bytes of a texture read for its header (a JPEG's metadata comes before its size)


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def write_glb(path: str, positions, normals, uvs, indices, base_color_png: bytes, metallic_roughness_png: bytes,
              name: str = "mesh", alpha_mode: str = "OPAQUE", extras: dict | None = None) -> None:
    """Write one mesh with a metallic-roughness material. glTF conventions: Y up, +Z to the viewer,
    metres, UV (0, 0) at the image's top-left. Written to a temp file, then renamed."""
    if alpha_mode not in ("OPAQUE", "MASK", "BLEND"):
        raise ValueError(f"alpha_mode must be OPAQUE, MASK or BLEND, not {alpha_mode!r}")
    positions = np.ascontiguousarray(positions, dtype=np.float32)
    normals = np.ascontiguousarray(normals, dtype=np.float32)
    uvs = np.ascontiguousarray(uvs, dtype=np.float32)
    indices = np.ascontiguousarray(indices, dtype=np.uint32)
    blobs, views = [], []

    def add_view(data: bytes, target: int | None = None) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(_pad(data, b"\0"))
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target:
            view["target"] = target
        views.append(view)
        return len(views) - 1

    accessors = []

    def add_accessor(array: np.ndarray, kind: str, component: int, target: int, bounds: bool = False) -> int:
        acc = {"bufferView": add_view(array.tobytes(), target), "componentType": component,
               "count": int(array.shape[0]) if kind != "SCALAR" else int(array.size), "type": kind}
        if bounds:
            acc["min"] = [float(v) for v in array.min(axis=0)]
            acc["max"] = [float(v) for v in array.max(axis=0)]
        accessors.append(acc)
        return len(accessors) - 1

    attributes = {
        "POSITION": add_accessor(positions, "VEC3", FLOAT, ARRAY_BUFFER, bounds=True),
        "NORMAL": add_accessor(normals, "VEC3", FLOAT, ARRAY_BUFFER),
        "TEXCOORD_0": add_accessor(uvs, "VEC2", FLOAT, ARRAY_BUFFER),
    }
    index_accessor = add_accessor(indices.reshape(-1), "SCALAR", UNSIGNED_INT, ELEMENT_ARRAY_BUFFER)
    images = [{"bufferView": add_view(png), "mimeType": "image/png", "name": label}
              for png, label in ((base_color_png, f"{name}_basecolor"), (metallic_roughness_png, f"{name}_mr"))]
    material = {"name": f"{name}_material", "alphaMode": alpha_mode, "doubleSided": False,
                "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicRoughnessTexture": {"index": 1},
                                         "metallicFactor": 1.0, "roughnessFactor": 1.0}}
    if alpha_mode == "MASK":
        material["alphaCutoff"] = 0.5
    binary = b"".join(blobs)
    doc = {
        "asset": {"version": "2.0", "generator": "TRELLIS.2 for Blender preview"},
        "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": [{"attributes": attributes, "indices": index_accessor,
                                                  "material": 0, "mode": 4}]}],
        "materials": [material],
        "textures": [{"source": 0, "sampler": 0}, {"source": 1, "sampler": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": images, "accessors": accessors, "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    if extras:
        doc["extras"] = extras
        doc["nodes"][0]["extras"] = extras  # Blender's importer turns node extras into object properties
    json_bytes = _pad(json.dumps(doc, separators=(",", ":")).encode("utf-8"), b" ")
    total = 12 + 8 + len(json_bytes) + 8 + len(binary)
    tmp = f"{path}.part"
    try:
        with open(tmp, "wb") as f:
            f.write(GLB_MAGIC + struct.pack("<II", 2, total))
            f.write(struct.pack("<II", len(json_bytes), JSON_CHUNK) + json_bytes)
            f.write(struct.pack("<II", len(binary), BIN_CHUNK))
            f.write(binary)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def read_glb_header(path: str) -> tuple[int, int]:
    """(version, declared total length); ValueError if the file does not start like a GLB."""
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != GLB_MAGIC:
        raise ValueError(f"{os.path.basename(path)} is not a GLB file (no 'glTF' magic)")
    version, length = struct.unpack("<II", head[4:])
    return version, length


def validate_glb(path: str) -> dict:
    """Check magic, version, declared length against the file size and the chunk layout, and that the
    file is self-contained (check_references); returns the JSON document. Raises ValueError naming the
    file for anything truncated, malformed or referring to other files."""
    base = os.path.basename(path)
    version, length = read_glb_header(path)
    size = os.path.getsize(path)
    if version != 2:
        raise ValueError(f"{base}: GLB version {version}, expected 2")
    if length != size:
        raise ValueError(f"{base} is truncated or padded: header says {length} bytes, file has {size}")
    with open(path, "rb") as f:
        f.seek(12)
        chunk_len, chunk_type = struct.unpack("<II", f.read(8))
        if chunk_type != JSON_CHUNK or 20 + chunk_len > size:
            raise ValueError(f"{base}: the first chunk is not a complete JSON chunk")
        try:
            doc = json.loads(f.read(chunk_len))
        except ValueError as exc:
            raise ValueError(f"{base}: unreadable JSON chunk ({exc})") from None
        rest, bin_len = size - 20 - chunk_len, None
        if rest:
            if rest < 8:
                raise ValueError(f"{base}: {rest} stray bytes after the JSON chunk")
            bin_len, bin_type = struct.unpack("<II", f.read(8))
            if bin_type != BIN_CHUNK or bin_len + 8 > rest:
                raise ValueError(f"{base}: the binary chunk is incomplete")
    check_references(doc, bin_len, base)
    check_textures(path, doc, 20 + chunk_len + 8 if bin_len is not None else None, base)
    return doc


def _data_uri(uri: str, end: int) -> bytes:
    """The first `end` bytes of a base64 data: URI's payload."""
    payload = uri.partition(",")[2]
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


def check_self_contained(path: str) -> dict:
    """validate_glb under the name the add-on calls before importing a file (a history entry, say):
    ValueError unless the GLB is complete and reads nothing outside itself. Returns the JSON document."""
    return validate_glb(path)


def _items(doc: dict, name: str, base: str) -> list:
    items = doc.get(name, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{base}: '{name}' is not a list of objects")
    return items


def _index(item: dict, key: str, count: int, where: str, base: str, required: bool = False) -> None:
    value = item.get(key)
    if value is None and not required:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
        raise ValueError(f"{base}: {where} names {key} {str(value)[:40]!r}, which the file does not have ({count} "
                         "there)")


def _uri(item: dict, where: str, base: str) -> None:
    uri = item.get("uri")
    if uri is not None and not (isinstance(uri, str) and uri.startswith("data:")):
        raise ValueError(f"{base}: {where} refers to another file ({str(uri)[:80]!r}); only data embedded in the "
                         "GLB is accepted")


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
    for n, view in enumerate(views):
        _index(view, "buffer", len(buffers), f"bufferView {n}", base, required=True)
        offset, length = view.get("byteOffset", 0), view.get("byteLength")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, length)) \
                or offset + length > sizes[view["buffer"]]:
            raise ValueError(f"{base}: bufferView {n} lies outside its buffer")
    for n, accessor in enumerate(_items(doc, "accessors", base)):
        _index(accessor, "bufferView", len(views), f"accessor {n}", base)
    for n, image in enumerate(_items(doc, "images", base)):
        _uri(image, f"image {n}", base)
        _index(image, "bufferView", len(views), f"image {n}", base, required=image.get("uri") is None)
