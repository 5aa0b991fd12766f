"""Turn the user's image (a file path or an image datablock) into the RGBA array a job sends.

Decoding and resizing use Blender's own image code; checks run before any worker starts.
"""
from __future__ import annotations

import os

import bpy
import numpy as np

from ..backend import image_header, preview_mesh
from ..backend.blender_protocol import ALPHA_MODES
from . import history, prefs

MAX_SIDE = 1024  # TRELLIS.2 conditions on at most 1024 px on the long side
MAX_MEGAPIXELS = 64.0  # default of the max_megapixels preference: larger pictures are refused undecoded
MIB = 1 << 20
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".exr")  # files users may pick


class InputError(ValueError):
    pass


def resolve(image: str | bpy.types.Image | None, limit: float | None = None) -> bpy.types.Image:
    """A datablock for a datablock, a datablock name or a file path; InputError otherwise. limit: the
    pixel limit in megapixels (None: the preference)."""
    if image is None or image == "":
        raise InputError("No image: choose an image in the TRELLIS panel or pass image=PATH")
    if isinstance(image, bpy.types.Image) or image in bpy.data.images:
        img = image if isinstance(image, bpy.types.Image) else bpy.data.images[image]
        if not img.has_data and img.packed_file is None and img.source == "FILE" and img.filepath:
            check_pixels(bpy.path.abspath(img.filepath), limit)  # not decoded yet: its file's header first
        return img
    path = bpy.path.abspath(image)
    check_file(path, limit)
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


def max_megapixels() -> float:
    value = getattr(prefs.get(), "max_megapixels", MAX_MEGAPIXELS)
    return float(value) if isinstance(value, (int, float)) and value > 0 else MAX_MEGAPIXELS


def check_pixels(path: str, limit: float | None = None) -> None:
    """Refuse a picture above the pixel limit (megapixels; None: the preference) from its file's header,
    before anything decodes it (unknown formats are left to Blender's loader); and one whose decoded
    picture is larger than that many pixels of 8-bit RGBA: Blender decodes a 16-bit or floating-point
    picture into 16 bytes a pixel (4 for 8 bits), so such a picture may have a quarter of the pixels."""
    found = image_header.depth(path)
    limit = max_megapixels() if limit is None else limit
    if not found:
        return
    w, h, name = found.width, found.height, os.path.basename(path)
    if w * h > limit * 1e6:
        raise InputError(f"Image {name!r} is {w} x {h} pixels ({w * h / 1e6:.1f} megapixels), "
                         f"above the limit of {limit:g} megapixels (preferences: Max Megapixels): "
                         "scale it down first")
    bound = limit * 1e6 * 4
    if found.decoded_bytes > bound:
        raise InputError(f"Image {name!r} is {w} x {h} pixels, {found.bits}-bit: it decodes to "
                         f"{found.decoded_bytes / MIB:.1f} MiB; the limit is {bound / MIB:.1f} MiB "
                         f"({limit:g} megapixels at 8 bits, preferences: Max Megapixels): "
                         "save it as 8-bit or smaller")


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
        # a float buffer holds linear values whatever the file was (Blender linearizes a 16-bit sRGB PNG
        # on load and still labels it sRGB); only data (Non-Color) is sent as it is
        colorspace = source.colorspace_settings
        is_linear = is_float and not (getattr(colorspace, "is_data", False) or colorspace.name == "Non-Color")
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


# --- the prepared input, written off the main thread -------------------------------------------------
def file_source(image) -> dict | None:
    """What a background Blender needs to read this image itself ({"path", "colorspace", "alpha_mode"}: the
    datablock's, so the file reads as it does here; "" for a path): a file path, or
    a datablock that is only its file on disk (not packed, not edited, not generated, one still image).
    None: its pixels exist only here and are read on the main thread."""
    if isinstance(image, str) and image.endswith(".npy"):
        return None  # a history entry's prepared input: already decoded
    if isinstance(image, str) and image not in bpy.data.images:
        return {"path": bpy.path.abspath(image), "colorspace": "", "alpha_mode": ""}
    img = image if isinstance(image, bpy.types.Image) else bpy.data.images.get(image) if image else None
    if (img is None or img.source != "FILE" or img.packed_file is not None or img.is_dirty or not img.filepath
            or img.library is not None):
        return None
    path = bpy.path.abspath(img.filepath)
    return ({"path": path, "colorspace": img.colorspace_settings.name, "alpha_mode": img.alpha_mode}
            if os.path.isfile(path) else None)


def check_file(path: str, limit: float | None = None) -> None:
    """All a file is checked for before it is decoded (on the main thread, the only checks): it exists, is
    not empty and is within the pixel limit (its header)."""
    if not os.path.isfile(path):
        raise InputError(f"Image file not found: {path}")
    if os.path.getsize(path) == 0:
        raise InputError(f"Image file is empty (0 bytes): {path}")
    check_pixels(path, limit)


def source_key(source: dict) -> tuple | None:
    """The file's identity (path, size, modification time, colour space, alpha mode), or None once it is gone."""
    try:
        st = os.stat(source["path"])
    except OSError:
        return None
    return source["path"], st.st_size, st.st_mtime_ns, source.get("colorspace", ""), source.get("alpha_mode", "")


_HASHES: dict[tuple, str] = {}  # source_key -> image hash of the prepared input (this Blender's session)


def remember_hash(key: tuple | None, image_sha: str) -> None:
    if key is not None:
        _HASHES[key] = image_sha


def known_hash(key: tuple | None) -> str | None:
    """The hash a background read of this very file gave, so a cache lookup need not decode it again."""
    return _HASHES.get(key) if key is not None else None


def prepare_file(path: str, rgba_path: str, thumb_path: str = "", colorspace: str = "",
                 limit: float | None = None, alpha_mode: str = "") -> dict:
    """Read, check and downsize an image file with Blender's own image code and write the prepared input
    (and the thumbnail): {"image_sha"}. InputError with the main thread's messages. Runs
    in the background Blender (blend_worker), or on the main thread where none starts."""
    known = set(bpy.data.images)
    img = None
    try:
        img = resolve(path, limit)
        if colorspace and img.colorspace_settings.name != colorspace:
            try:
                img.colorspace_settings.name = colorspace
            except TypeError:
                pass  # a colour space this Blender lacks: its own guess stands
        if alpha_mode in ALPHA_MODES and img.alpha_mode != alpha_mode:
            img.alpha_mode = alpha_mode  # before the pixels are read ("NONE": the file's alpha is ignored)
        rgba = to_rgba8(img)
        check_foreground(rgba, display_name(img))
    finally:
        if img is not None and img not in known:
            bpy.data.images.remove(img)
    tmp = rgba_path + ".tmp"
    with open(tmp, "wb") as f:  # never half a file under the name a worker reads
        np.save(f, rgba)
    os.replace(tmp, rgba_path)
    if thumb_path:
        history.write_thumbnail(rgba, thumb_path)
    return {"image_sha": history.image_hash(rgba)}
