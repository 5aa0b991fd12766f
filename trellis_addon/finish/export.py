"""Export a finished result with Blender's own exporter, picked by the file's extension."""
from __future__ import annotations

import os

import bpy

from .asset import images_of, pack_images

FORMATS = (".glb", ".gltf", ".fbx", ".obj", ".usdc", ".usdz", ".usd", ".stl", ".blend")


def _call(operator, **options):
    """Run an exporter with the options this Blender version has (their names move between versions)."""
    known = operator.get_rna_type().properties.keys()
    result = operator(**{k: v for k, v in options.items() if k in known})
    if "FINISHED" not in result:
        raise RuntimeError(f"{operator.idname_py()} did not finish")


def _run_exporter(path: str, ext: str) -> None:
    if ext in (".glb", ".gltf"):
        _call(bpy.ops.export_scene.gltf, filepath=path, use_selection=True,
              export_format="GLB" if ext == ".glb" else "GLTF_SEPARATE")
    elif ext == ".fbx":
        _call(bpy.ops.export_scene.fbx, filepath=path, use_selection=True, path_mode="COPY", embed_textures=True)
    elif ext == ".obj":
        _call(bpy.ops.wm.obj_export, filepath=path, export_selected_objects=True, path_mode="COPY",
              export_materials=True)
    elif ext in (".usdc", ".usdz", ".usd"):
        _call(bpy.ops.wm.usd_export, filepath=path, selected_objects_only=True, visible_objects_only=False,
              export_textures=True,
              export_textures_mode="NEW", relative_paths=True)
    elif ext == ".stl":
        _call(bpy.ops.wm.stl_export, filepath=path, export_selected_objects=True)


class _files_for_images:
    """While active: images with no file of their own (packed from the GLB, or baked) point to a copy
    written beside the export, so exporters that reference texture files (.obj, .usdc) find them."""

    def __init__(self, objects, folder: str, needed: bool):
        self.images = images_of(objects) if needed else []
        self.folder, self.saved = folder, []

    def __enter__(self):
        for image in self.images:
            if image.packed_file is None or os.path.isfile(bpy.path.abspath(image.filepath)):
                continue
            target = os.path.join(self.folder, f"{bpy.path.clean_name(image.name)}.png")
            with open(target, "wb") as f:
                f.write(image.packed_file.data)
            self.saved.append((image, image.filepath_raw))
            image.filepath_raw = target
        return self

    def __exit__(self, *exc):
        for image, path in self.saved:
            image.filepath_raw = path


def pick(objects, which: str) -> list:
    """"all": the objects as given; "low": only the baked low-poly (`*_low`)."""
    if which == "all":
        return list(objects)
    if which == "low":
        low = [o for o in objects if o.name.endswith("_low")]
        if not low:
            raise ValueError("there is no low-poly to export (bake_faces was 0)")
        return low
    raise ValueError(f"which must be 'all' or 'low', not {which!r}")


def export(objects, path: str, which: str = "all", context=None) -> str:
    """Write the objects (result, LODs, low-poly; or only the low-poly) to path with the exporter of its
    extension: .glb (textures embedded), .gltf (+ .bin and textures beside), .fbx (embedded), .obj (+ .mtl,
    textures copied beside), .usdc/.usd (textures beside), .usdz (packed in), .stl (geometry only),
    .blend (images packed). Needs a context with a view layer holding them (selection); no window."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot export {ext or 'files without an extension'} (one of {', '.join(FORMATS)})")
    chosen = pick(objects, which)
    pack_images(chosen)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if ext == ".blend":
        bpy.data.libraries.write(path, set(chosen), path_remap="NONE", fake_user=True, compress=True)
        return path
    context = context or bpy.context
    layer = context.view_layer
    hidden = {c: (c.hide_viewport, c.hide_render) for o in chosen for c in o.users_collection}
    selected, active = [o for o in layer.objects if o.select_get()], layer.objects.active
    try:
        for collection in hidden:  # the LODs' collection: hidden in viewport and render
            collection.hide_viewport = collection.hide_render = False
        for obj in layer.objects:
            obj.select_set(obj in chosen)
        layer.objects.active = chosen[0]
        layer.update()
        with _files_for_images(chosen, os.path.dirname(os.path.abspath(path)), ext in (".obj", ".usdc", ".usd")):
            _run_exporter(path, ext)
    finally:
        for collection, (viewport, render) in hidden.items():
            collection.hide_viewport, collection.hide_render = viewport, render
        for obj in layer.objects:
            obj.select_set(obj in selected)
        layer.objects.active = active
    return path
