"""Minimal glTF 2.0 binary (GLB) writer for one textured PBR mesh, and the check of a GLB file.

A result GLB is untrusted (a provider made it, or a history file was edited): validate_glb checks the file's
layout here, then its JSON document: self-contained, its pictures' sizes read from their headers
(glb_document.py), and what Blender's glTF importer would allocate for it, and its extensions
(glb_allocations.py). Anything malformed is a ValueError naming the file, never another exception."""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from .glb_allocations import (EXTENSIONS, FACE_BUDGET_MAX, MAX_ELEMENTS, MAX_FACES, MAX_INDICES,  # noqa: F401
                              MAX_VERTICES, MAX_ZERO_COUNT, check_accessors, check_extensions, check_meshes)
from .glb_document import (MAX_IMAGES, MAX_JSON_BYTES, MAX_JSON_CONTAINERS, MAX_JSON_DEPTH,  # noqa: F401
                           MAX_TEXTURE_PIXELS, MAX_TEXTURE_SIDE, TEXTURE_HEAD, check_references, check_textures,
                           parse_json, sizes_problem)

GLB_MAGIC = b"glTF"
JSON_CHUNK, BIN_CHUNK = 0x4E4F534A, 0x004E4942
FLOAT, UNSIGNED_INT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


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
    """Check magic, version, declared length against the file size and the chunk layout, that the file is
    self-contained (check_references), what the importer would allocate (check_accessors, check_meshes), its
    extensions (check_extensions) and its pictures' sizes (check_textures); returns the JSON document. Raises
    ValueError naming the file for anything truncated, malformed, too large or referring to other files (any
    malformed document: no other exception leaves here, so callers refuse the file as a bad result)."""
    base = os.path.basename(path)
    version, length = read_glb_header(path)
    size = os.path.getsize(path)
    if version != 2:
        raise ValueError(f"{base}: GLB version {version}, expected 2")
    if length != size:
        raise ValueError(f"{base} is truncated or padded: header says {length} bytes, file has {size}")
    if size < 20:
        raise ValueError(f"{base}: {size} bytes, too short to hold a JSON chunk")
    with open(path, "rb") as f:
        f.seek(12)
        chunk_len, chunk_type = struct.unpack("<II", f.read(8))
        if chunk_type != JSON_CHUNK or 20 + chunk_len > size:
            raise ValueError(f"{base}: the first chunk is not a complete JSON chunk")
        if chunk_len > MAX_JSON_BYTES:
            raise ValueError(f"{base}: its JSON chunk is {chunk_len} bytes; at most {MAX_JSON_BYTES >> 20} MiB is "
                             "accepted")
        doc = parse_json(f.read(chunk_len), base)
        rest, bin_len = size - 20 - chunk_len, None
        if rest:
            if rest < 8:
                raise ValueError(f"{base}: {rest} stray bytes after the JSON chunk")
            bin_len, bin_type = struct.unpack("<II", f.read(8))
            if bin_type != BIN_CHUNK or bin_len + 8 > rest:
                raise ValueError(f"{base}: the binary chunk is incomplete")
    try:
        check_references(doc, bin_len, base)
        check_extensions(doc, base)
        counts = check_accessors(doc, base)
        check_meshes(doc, counts, base)
        check_textures(path, doc, 20 + chunk_len + 8 if bin_len is not None else None, base)
    except (TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError, struct.error) as exc:
        # a malformed document the checks above did not name: refused all the same, never a crash
        raise ValueError(f"{base}: malformed glTF ({type(exc).__name__}: {str(exc)[:80]})") from None
    return doc


def check_self_contained(path: str) -> dict:
    """validate_glb under the name the add-on calls before importing a file (a history entry, say):
    ValueError unless the GLB is complete and reads nothing outside itself. Returns the JSON document."""
    return validate_glb(path)
