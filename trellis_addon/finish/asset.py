"""Asset Browser: mark a result (preview, catalog "TRELLIS", tags, a one-line description), save it as its
own .blend into a library folder and register that folder once as an asset library.

Previews: `ID.asset_generate_preview()` renders with OpenGL offscreen. It works in a `blender -b` process
and the bpy module where an EGL/GPU context can be made (checked in bpy 4.2 and 5.0.1 here: a 128² render
of the object); where it cannot, or the preview comes back empty in background mode, the preview is
filled from `preview_image` (the input image) instead. In the UI the render is an asynchronous job.
The render's time grows with the mesh: 31 s for a 500 000-face result, 2.3 s at 20 000 and 0.3 s for a
cube in bpy 5.0.1 on 2 cores (software GL). So a result above PREVIEW_TRIANGLES is shown by its smallest
LOD or low-poly within it (rendered, the pixels copied), and where it has none by the input image.
"""
from __future__ import annotations

import os
import re
import uuid

import bpy
import numpy as np

CATALOG_PATH = "TRELLIS"
CATALOG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/microsoft/TRELLIS.2/blender/catalog/TRELLIS"))
CATALOG_FILE = "blender_assets.cats.txt"
LIBRARY_NAME = "TRELLIS"
TAG_KEYS = ("backend", "model", "seed", "resolution")
PREVIEW_SIZE = 128
PREVIEW_TRIANGLES = 20000  # above: the preview is rendered from a smaller copy, or is the input image


def tags_of(record: dict | None) -> list[str]:
    """"TRELLIS.2" and key:value for backend, model, seed and resolution where the record has them."""
    record = record or {}
    values = dict(record, resolution=(record.get("settings") or {}).get("resolution", record.get("resolution")))
    return ["TRELLIS.2"] + [f"{k}:{values[k]}" for k in TAG_KEYS if values.get(k) not in (None, "")]


def description_of(record: dict | None, settings: dict) -> str:
    """One line: where it came from and how it was finished."""
    record = record or {}
    model = record.get("settings") or {}
    made = ", ".join(f"{k} {v}" for k, v in (("seed", record.get("seed")), ("resolution", model.get("resolution")),
                                              ("texture", model.get("texture_size")),
                                              ("faces", model.get("decimation_target"))) if v is not None)
    finish = ", ".join(f"{k} {v}" for k, v in sorted(settings.items()))
    return f"TRELLIS.2 via {record.get('backend') or '?'} {record.get('model') or ''}".rstrip() + \
        (f" ({made})" if made else "") + f"; finish: {finish}"


def _preview_empty(obj) -> bool:
    preview = obj.preview
    if preview is None or not preview.image_size[0]:
        return True
    alpha = np.array(preview.image_pixels_float[:], np.float32)[3::4]
    return not alpha.any()


def preview_from_image(obj, path: str, size: int = PREVIEW_SIZE) -> bool:
    """Fill obj's preview from an image file (scaled to size²); False when it cannot be read."""
    if not path or not os.path.isfile(path):
        return False
    image = bpy.data.images.load(path, check_existing=False)
    try:
        image.scale(size, size)
        pixels = np.empty(size * size * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    preview = obj.preview_ensure()
    preview.image_size = (size, size)
    preview.image_pixels_float.foreach_set(pixels)
    return True


def _render_preview(obj, source) -> bool:
    """obj's preview rendered from source (obj itself, or a LOD / the low-poly: its pixels copied)."""
    if source is not obj:
        source.asset_mark()
    try:
        source.asset_generate_preview()
    except RuntimeError as exc:  # no GPU context to render with
        print(f"TRELLIS: no rendered preview ({exc})")
    if source is obj:
        return not _preview_empty(obj)
    try:
        if _preview_empty(source):
            return False
        width, height = source.preview.image_size
        pixels = np.empty(width * height * 4, np.float32)
        source.preview.image_pixels_float.foreach_get(pixels)
        preview = obj.preview_ensure()
        preview.image_size = (width, height)
        preview.image_pixels_float.foreach_set(pixels)
        return True
    finally:
        source.asset_clear()


def mark_asset(obj, record: dict | None, settings: dict, preview_image: str = "", render: bool = True,
               triangles: int = 0, proxies=()) -> str:
    """Mark obj as an asset in the TRELLIS catalog with tags and a description; returns how its preview
    was made: "rendered", "proxy" (rendered from the smallest of proxies, its LODs and low-poly, where obj
    has more than PREVIEW_TRIANGLES triangles), "image" (from preview_image), "pending" (a UI job) or
    "none". render=False: the preview is the image only."""
    obj.asset_mark()
    data = obj.asset_data
    data.catalog_id = CATALOG_ID
    for tag in list(data.tags):
        data.tags.remove(tag)
    for tag in tags_of(record):
        data.tags.new(tag, skip_if_exists=True)
    data.description = description_of(record, settings)
    small = sorted((len(p.data.polygons), i, p) for i, p in enumerate(proxies)
                   if p.type == "MESH" and len(p.data.polygons) <= PREVIEW_TRIANGLES)
    source = obj if triangles <= PREVIEW_TRIANGLES else (small[0][2] if small else None)
    if render and not bpy.app.background and source is obj:
        obj.asset_generate_preview()  # in the UI an asynchronous job
        return "pending"
    if render and source is not None and _render_preview(obj, source):
        return "rendered" if source is obj else "proxy"
    return "image" if preview_from_image(obj, preview_image) else "none"


def write_catalog(folder: str) -> str:
    """Keep `blender_assets.cats.txt` in folder current: other catalogs kept, one TRELLIS entry."""
    path = os.path.join(folder, CATALOG_FILE)
    lines = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            lines = [ln.rstrip("\n") for ln in f]
    entries = [ln for ln in lines if ln.strip() and not ln.startswith(("#", "VERSION"))
               and not ln.startswith(CATALOG_ID) and ln.split(":")[1:2] != [CATALOG_PATH]]
    text = ["# This is an Asset Catalog Definition file for Blender.", "#",
            "# Empty lines and lines starting with `#` will be ignored.",
            "# The first non-ignored line should be the version indicator.",
            '# Other lines are of the format "UUID:catalog/path/for/assets:simple catalog name"', "",
            "VERSION 1", ""] + entries + [f"{CATALOG_ID}:{CATALOG_PATH}:{CATALOG_PATH}"]
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(text) + "\n")
    os.replace(tmp, path)
    return path


def images_of(objects) -> list:
    """The images the objects' materials use, each once."""
    found = []
    for obj in objects:
        for mat in (obj.data.materials if obj.type == "MESH" else ()):
            for node in (mat.node_tree.nodes if mat and mat.node_tree else ()):
                if getattr(node, "image", None) is not None and node.image not in found:
                    found.append(node.image)
    return found


def pack_images(objects) -> None:
    for image in images_of(objects):
        if image.packed_file is None and image.source in ("FILE", "GENERATED"):
            image.pack()


def save_to_library(objects, folder: str, name: str) -> str:
    """Write the objects (result, LODs, low-poly: pass them all), images packed, as `<folder>/<name>.blend`
    (and keep the folder's catalog file current). Returns the path."""
    pack_images(objects)
    write_catalog(folder)
    safe = re.sub(r'[\\/:*?"<>|]+', "_", name).strip() or "result"
    path = os.path.join(folder, f"{safe}.blend")
    tmp = os.path.join(folder, f".{safe}.blend.tmp")
    bpy.data.libraries.write(tmp, set(objects), path_remap="NONE", fake_user=True, compress=True)
    os.replace(tmp, path)
    return path


def register_library(folder: str, name: str = LIBRARY_NAME, save_preferences: bool = True):
    """Register folder as an asset library in Blender's preferences once (found again by its directory);
    saved to the user preferences unless save_preferences is False. Returns the library entry."""
    libraries = bpy.context.preferences.filepaths.asset_libraries
    wanted = os.path.normcase(os.path.realpath(folder))
    for library in libraries:
        if os.path.normcase(os.path.realpath(bpy.path.abspath(library.path))) == wanted:
            return library
    os.makedirs(folder, exist_ok=True)
    if hasattr(libraries, "new"):
        library = libraries.new(name=name, directory=folder)
    else:
        bpy.ops.preferences.asset_library_add(directory=folder)
        library = libraries[-1]
        library.name = name
    if save_preferences:
        bpy.ops.wm.save_userpref()
    return library
