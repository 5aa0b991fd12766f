"""Asset Browser: mark a result (preview, catalog "TRELLIS", tags, a one-line description), save it as its
own .blend into a library folder and register that folder once as an asset library.

Previews: where there is no window (the background Blender that finishes UI jobs, the CLI, scripts) the
preview is a Workbench render of the result (`render_preview`: textures, studio light, transparent film,
in a scene of its own) read into the object's preview; Blender's own `ID.asset_generate_preview()`
takes 35 times as long for a 500 000-face result in software GL (bench/finish_stages.py). In the UI Blender's
preview job renders it. Where no GPU context can be made, the preview is the input image.
"""
from __future__ import annotations

import math
import os
import re
import stat
import tempfile
import uuid

import bpy
import numpy as np
from mathutils import Vector

from .transform import world_bounds

CATALOG_PATH = "TRELLIS"
CATALOG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/microsoft/TRELLIS.2/blender/catalog/TRELLIS"))
CATALOG_FILE = "blender_assets.cats.txt"
LIBRARY_NAME = "TRELLIS"
TAG_KEYS = ("backend", "model", "seed", "resolution")
PREVIEW_SIZE = 128


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


def render_preview(objects, path: str, size: int = PREVIEW_SIZE) -> bool:
    """A size² PNG of objects at path: Blender's Workbench engine (textures, studio light, transparent
    film) in a scene of its own, a camera looking down at the bounds from the front right; the scenes
    of the file are not touched. False where it cannot render (no GPU context)."""
    meshes = [o for o in objects if o.type == "MESH"]
    if not meshes:
        return False
    lo, hi = world_bounds(meshes)  # from the bases: matrix_world may not be evaluated yet
    centre, radius = (lo + hi) / 2, max((hi - lo).length / 2, 1e-6)
    scene = bpy.data.scenes.new("TRELLIS preview")
    camera = bpy.data.objects.new("TRELLIS preview camera", bpy.data.cameras.new("TRELLIS preview camera"))
    try:
        for obj in meshes:
            scene.collection.objects.link(obj)
        scene.collection.objects.link(camera)
        scene.camera = camera
        lens = camera.data
        lens.lens, lens.sensor_width = 50.0, 36.0
        lens.clip_start, lens.clip_end = radius * 0.01, radius * 100
        direction = Vector((1.0, -1.2, 0.8)).normalized()
        distance = radius / math.sin(math.atan(lens.sensor_width / 2 / lens.lens)) * 0.85  # the box in the sphere
        camera.location = centre + direction * distance
        camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
        render = scene.render
        render.engine = "BLENDER_WORKBENCH"
        render.resolution_x = render.resolution_y = size
        render.resolution_percentage = 100
        render.film_transparent = True
        render.image_settings.file_format, render.image_settings.color_mode = "PNG", "RGBA"
        render.filepath = path
        scene.display.render_aa = "FXAA"
        shading = scene.display.shading
        shading.light, shading.color_type = "STUDIO", "TEXTURE"
        scene.view_settings.view_transform = "Standard"
        bpy.ops.render.render(write_still=True, scene=scene.name)
    except RuntimeError as exc:  # no GPU context to render with
        print(f"TRELLIS: no rendered preview ({exc})")
        return False
    finally:
        data = camera.data
        bpy.data.scenes.remove(scene)
        bpy.data.objects.remove(camera)
        bpy.data.cameras.remove(data)
    return os.path.isfile(path)


def mark_asset(obj, record: dict | None, settings: dict, preview_image: str = "", render: bool = True,
               objects=None) -> str:
    """Mark obj as an asset in the TRELLIS catalog with tags and a description; returns how its preview
    was made: "rendered" (render_preview of objects, the result's: obj where None), "image" (from
    preview_image), "pending" (Blender's own preview job, in the UI) or "none". render=False: the
    preview is the image only."""
    obj.asset_mark()
    data = obj.asset_data
    data.catalog_id = CATALOG_ID
    for tag in list(data.tags):
        data.tags.remove(tag)
    for tag in tags_of(record):
        data.tags.new(tag, skip_if_exists=True)
    data.description = description_of(record, settings)
    if render and not bpy.app.background:
        obj.asset_generate_preview()  # in the UI an asynchronous job
        return "pending"
    if render:
        path = os.path.join(tempfile.gettempdir(), f"trellis-preview-{uuid.uuid4().hex}.png")
        try:
            if render_preview(objects or [obj], path) and preview_from_image(obj, path) and not _preview_empty(obj):
                return "rendered"
        finally:
            if os.path.exists(path):
                os.remove(path)
    return "image" if preview_from_image(obj, preview_image) else "none"


def write_catalog(folder: str) -> str:
    """Keep `blender_assets.cats.txt` in folder current: the TRELLIS entry added where it is missing, every
    other line (the user's catalogs and comments) kept as it is; a file that has the entry is not written."""
    path = os.path.join(folder, CATALOG_FILE)
    entry = f"{CATALOG_ID}:{CATALOG_PATH}:{CATALOG_PATH}"
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if any(ln.startswith(CATALOG_ID + ":") for ln in text.splitlines()):
            return path
    if not text.strip():
        text = "\n".join(["# This is an Asset Catalog Definition file for Blender.", "#",
                          "# Empty lines and lines starting with `#` will be ignored.",
                          "# The first non-ignored line should be the version indicator.",
                          '# Other lines are of the format "UUID:catalog/path/for/assets:simple catalog name"', "",
                          "VERSION 1", ""]) + "\n"
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + ("" if text.endswith("\n") else "\n") + entry + "\n")
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


def _still_own(folder: str, safe: str, own: dict | None) -> bool:
    """Whether own ({"path", "size", "mtime_ns"}: the file saved earlier for the same result) is one of this
    result's names in folder and still that very file: a plain file, its size and modification time as
    recorded."""
    if not own or os.path.dirname(own["path"]) != folder or \
            not re.fullmatch(re.escape(safe) + r"(_\d+)?\.blend", os.path.basename(own["path"])):
        return False
    try:
        st = os.lstat(own["path"])
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (own["size"], own["mtime_ns"])


def _claim(tmp: str, folder: str, safe: str) -> str:
    """tmp under the first of `<safe>.blend`, `<safe>_2.blend`, `_3`... that no file has; never over a file
    (a hard link is refused where the name exists, so two Blenders saving at once each get a name)."""
    number = 1
    while True:
        path = os.path.join(folder, f"{safe}.blend" if number == 1 else f"{safe}_{number}.blend")
        number += 1
        try:
            os.link(tmp, path)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: the name is taken by creating it
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            os.replace(tmp, path)
            return path
        os.remove(tmp)
        return path


def save_to_library(objects, folder: str, name: str, own: dict | None = None) -> str:
    """Write the objects (result, LODs, low-poly: pass them all), images packed, as `<folder>/<name>.blend`, or
    `<name>_2.blend`, `_3`... where that name is taken: a file the add-on did not write is never replaced.
    own: the file saved earlier for the same result ({"path", "size", "mtime_ns"}, as finishing records it),
    replaced where it is still that very file. Keeps the folder's catalog file current. Returns the path."""
    folder = os.path.normpath(folder)
    pack_images(objects)
    write_catalog(folder)
    safe = re.sub(r'[\\/:*?"<>|]+', "_", name).strip() or "result"
    tmp = os.path.join(folder, f".{safe}.{uuid.uuid4().hex[:8]}.blend.tmp")
    bpy.data.libraries.write(tmp, set(objects), path_remap="NONE", fake_user=True, compress=True)
    if _still_own(folder, safe, own):
        os.replace(tmp, own["path"])
        return own["path"]
    return _claim(tmp, folder, safe)


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
