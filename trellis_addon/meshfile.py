"""A retexture job's mesh work, the same in the UI's Blender (retexture.py) and a background one
(blend_worker.py): the object exported as the GLB the job sends, or written with its mesh into a .blend for a
background Blender to export; the result fitted onto the object's world bounds, its UVs transferred onto the
object's own mesh and its material taken."""
from __future__ import annotations

import bpy
import numpy as np

from . import importer

MESH_BLEND = "input_mesh.blend"  # the object as it looks and its own mesh, for a background Blender
NAME_PROPERTY = "trellis2_name"  # on the copy to export: the object's own name (its GLB node's name)
PART = "trellis2_retexture_part"  # what an object of that .blend or of the transferred snapshot is: PARTS
PARTS = ("export", "target", "source")
KEY = "retexture"  # the transferred snapshot beside the result's GLB (importer.snapshot_path)
UV_NAME = "TRELLIS_UV"


def export_mesh(context, obj: bpy.types.Object, path: str) -> None:
    """The object alone as a GLB (world transform on its node, modifiers applied, no materials)."""
    selected = [o for o in context.view_layer.objects if o.select_get()]
    active = context.view_layer.objects.active
    try:
        for o in selected:
            o.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        result = bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True,
                                           export_materials="NONE", export_apply=True)
        if "FINISHED" not in result:
            raise RuntimeError(f"Could not export {obj.name} as GLB")
    finally:
        obj.select_set(False)
        for o in selected:
            o.select_set(True)
        context.view_layer.objects.active = active


def write_mesh_blend(context, obj: bpy.types.Object, path: str) -> None:
    """Two lone objects in a .blend, no materials in the file: the object as it looks (modifiers applied, its
    world transform; what export_mesh exports) and its own mesh (what the UVs are transferred onto), both
    copies. A copy and one write, much less than the glTF export (bench/main_thread_per_job.py)."""
    looks = bpy.data.meshes.new_from_object(obj.evaluated_get(context.evaluated_depsgraph_get()))
    copies = [bpy.data.objects.new(f".{obj.name}.trellis-{part}", mesh)
              for part, mesh in (("export", looks), ("target", obj.data.copy()))]
    try:
        for copy, part in zip(copies, ("export", "target")):
            copy.matrix_world = obj.matrix_world
            copy[PART] = part
            for index in range(len(copy.data.materials)):
                copy.data.materials[index] = None  # the slots stay (one primitive per slot, as exported here)
        copies[0][NAME_PROPERTY] = obj.name
        bpy.data.libraries.write(path, set(copies), path_remap="NONE", fake_user=False, compress=False)
    finally:
        for copy in copies:
            mesh = copy.data
            bpy.data.objects.remove(copy)
            bpy.data.meshes.remove(mesh)


def parts(objects) -> dict:
    """{part: object} of objects marked with PART (one each; later ones of a part are ignored)."""
    found = {}
    for obj in objects:
        if obj.type == "MESH" and obj.get(PART) in PARTS:
            found.setdefault(obj[PART], obj)
    return found


def fit(source: bpy.types.Object, target: bpy.types.Object) -> None:
    """Scale and move source so its world bounds match target's (TRELLIS.2 may hand back a unit cube)."""
    bpy.context.view_layer.update()
    lo, hi = importer._world_bounds([source])
    tlo, thi = importer._world_bounds([target])
    size, tsize = max(hi - lo), max(thi - tlo)
    if size <= 0 or tsize <= 0:
        return
    factor = tsize / size
    source.scale *= factor
    source.location = source.location * factor
    bpy.context.view_layer.update()
    lo, hi = importer._world_bounds([source])
    source.location += (tlo + thi) / 2 - (lo + hi) / 2
    bpy.context.view_layer.update()


def _uv_map(target: bpy.types.Object):
    uv = target.data.uv_layers.get(UV_NAME) or target.data.uv_layers.new(name=UV_NAME)
    target.data.uv_layers.active = uv
    uv.active_render = True
    return uv


def transfer(context, source: bpy.types.Object, target: bpy.types.Object) -> None:
    """The fitted source's UVs onto target's own mesh (a Data Transfer applied first in its stack: it reads
    the undeformed mesh), and the source's material on it."""
    if source.data.uv_layers:
        _uv_map(target)
        modifier = target.modifiers.new("TRELLIS UV", "DATA_TRANSFER")
        modifier.object = source
        modifier.use_object_transform = True
        modifier.use_loop_data = True
        modifier.data_types_loops = {"UV"}
        modifier.loop_mapping = "POLYINTERP_NEAREST"
        source.data.uv_layers.active.name = UV_NAME  # transferred by name into the new map
        modifier.layers_uv_select_src = UV_NAME
        modifier.layers_uv_select_dst = "NAME"
        while target.modifiers[0] != modifier:
            target.modifiers.move(target.modifiers.find(modifier.name), 0)
        with context.temp_override(object=target, active_object=target):
            bpy.ops.object.modifier_apply(modifier=modifier.name)
    take_material(source, target)


def copy_transferred(done: bpy.types.Object, source: bpy.types.Object, target: bpy.types.Object) -> bool:
    """What a background Blender transferred onto a copy of target's mesh (done) put on target: its UV map's
    values and the source's material. False (nothing changed) where target's mesh no longer has done's corners
    (edited meanwhile): then transfer() does it here."""
    uvs = done.data.uv_layers.get(UV_NAME)
    if len(done.data.loops) != len(target.data.loops) or len(done.data.polygons) != len(target.data.polygons):
        return False
    if uvs is not None:  # through the attributes: a UV layer's own foreach goes corner by corner
        values = np.empty(len(done.data.loops) * 2, np.float32)
        done.data.attributes[uvs.name].data.foreach_get("vector", values)
        target.data.attributes[_uv_map(target).name].data.foreach_set("vector", values)
    take_material(source, target)
    return True


def take_material(source: bpy.types.Object, target: bpy.types.Object) -> None:
    material = source.data.materials[0] if source.data.materials else None
    if material is not None:
        target.data.materials.clear()
        target.data.materials.append(material)
        index = target.data.attributes.get("material_index")
        if index is not None:  # without it every face has the first slot (no per-face write needed)
            target.data.attributes.remove(index)
