"""Turn the user's image (a file path or an image datablock) into the RGBA array a job sends.

Decoding and resizing use Blender's own image code; checks run before any worker starts.
"""
from __future__ import annotations

import os

import bpy
import numpy as np

from ..backend import preview_mesh

MAX_SIDE = 1024  # TRELLIS.2 conditions on at most 1024 px on the long side
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".exr")  # files users may pick


class InputError(ValueError):
    pass


def resolve(image: str | bpy.types.Image | None) -> bpy.types.Image:
    """A datablock for a datablock, a datablock name or a file path; InputError otherwise."""
    if image is None or image == "":
        raise InputError("No image: choose an image in the TRELLIS panel or pass image=PATH")
    if isinstance(image, bpy.types.Image):
        return image
    if image in bpy.data.images:
        return bpy.data.images[image]
    path = bpy.path.abspath(image)
    if not os.path.isfile(path):
        raise InputError(f"Image file not found: {path}")
    if os.path.getsize(path) == 0:
        raise InputError(f"Image file is empty (0 bytes): {path}")
    known = set(bpy.data.images)
    try:
        img = bpy.data.images.load(path, check_existing=True)
    except RuntimeError:
        img = None
    if img is None or img.size[0] == 0:  # loading is lazy: a non-image "loads" with no pixels
        if img is not None and img not in known:
            bpy.data.images.remove(img)
        raise InputError(f"Not an image Blender can read: {path}")
    return img


def display_name(image: bpy.types.Image) -> str:
    base = os.path.basename(bpy.path.abspath(image.filepath)) if image.filepath else image.name
    return os.path.splitext(base)[0] or "TRELLIS"


def to_rgba8(image: bpy.types.Image) -> np.ndarray:
    """Pixels as uint8 HxWx4, rows top to bottom, long side at most MAX_SIDE, sRGB encoded."""
    width, height = image.size  # reading the size loads a file image's pixels
    if width == 0 or height == 0:
        raise InputError(f"Image {image.name!r} has no pixels (unreadable or not an image file)")
    source, temp = image, None
    if max(width, height) > MAX_SIDE:
        scale = MAX_SIDE / max(width, height)
        temp = image.copy()  # never resize the user's image
        temp.scale(max(1, round(width * scale)), max(1, round(height * scale)))
        source = temp
    try:
        w, h = source.size
        flat = np.empty(w * h * 4, dtype=np.float32)
        source.pixels.foreach_get(flat)
        is_float = source.is_float
        is_linear = is_float and source.colorspace_settings.name not in ("sRGB", "Non-Color")
    finally:
        if temp is not None:
            bpy.data.images.remove(temp)
    rgba = flat.reshape(h, w, 4)
    if is_linear:  # float images hold linear values; the model expects an ordinary sRGB picture
        rgb = rgba[..., :3]
        rgba[..., :3] = np.where(rgb <= 0.0031308, rgb * 12.92,
                                 1.055 * np.power(np.clip(rgb, 0, None), 1 / 2.4) - 0.055)
    if is_float:  # byte images are within 0..1 already
        np.clip(flat, 0.0, 1.0, out=flat)
    flat *= 255.0
    flat += 0.5
    return np.ascontiguousarray(flat.astype(np.uint8).reshape(h, w, 4)[::-1])


def check_foreground(rgba: np.ndarray, name: str) -> None:
    """Reject blank pictures; photos without a plain background pass (the model cuts them out)."""
    if not preview_mesh.has_content(rgba):
        raise InputError(f"Image {name!r} has no foreground: it is blank, a single colour or fully transparent")
