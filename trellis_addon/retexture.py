"""Retexture from image: keep an object's geometry, replace its material with one TRELLIS.2 paints from an
image. The selected mesh goes to the worker as a GLB; the result (new UVs and material on a re-unwrapped
copy of the mesh) is fitted onto the original's world bounds, its UVs are transferred onto the original
mesh (vertex count and transform unchanged) and its material replaces the old one."""
from __future__ import annotations

import json
import os
import tempfile

import bpy

from . import importer, request
from .meshfile import MESH_BLEND, export_mesh, write_mesh_blend
from .queue import DONE, Job, manager

UV_NAME = "TRELLIS_UV"


def prepare(context, obj: bpy.types.Object, checked: request.Request) -> Job:
    """The retexture job for the object: its mesh as the job's input_mesh.glb, exported by a background
    Blender in the UI (the job waits in PREPARING), else here."""
    if obj is None or obj.type != "MESH":
        raise request.RequestError("Select a mesh object to retexture")
    with tempfile.TemporaryDirectory(prefix="trellis-retexture-") as tmp:
        if manager.builder.on and manager.builder.ready():
            blend = os.path.join(tmp, MESH_BLEND)
            write_mesh_blend(context, obj, blend)
            return request.prepare(checked, mesh_blend=blend)
        mesh = os.path.join(tmp, request.MESH_GLB)
        try:
            export_mesh(context, obj, mesh)
        except RuntimeError as exc:
            raise request.RequestError(str(exc)) from None
        return request.prepare(checked, mesh_path=mesh)


def _fit(source: bpy.types.Object, target: bpy.types.Object) -> None:
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


def apply_result(context, job: Job, obj: bpy.types.Object, on_copy: bool = False) -> bpy.types.Object:
    """Put the job's first result on obj (or a copy of it): new UV map transferred from the result,
    result's material. Returns the object that got it (active, with the selection as it was); the imported
    result is removed."""
    selected = [o.name for o in context.view_layer.objects if o.select_get()]
    imported = importer.import_glb(context, job.result["files"][0], snapshot=True)  # in the UI a background
    # Blender imported it: appended here
    try:
        source = next((o for o in imported if o.type == "MESH"), None)
        if source is None:
            raise request.RequestError("The retextured result has no mesh")
        _fit(source, obj)
        target = obj
        if on_copy:
            target = obj.copy()
            target.data = obj.data.copy()
            target.name = f"{obj.name}.retextured"
            for coll in obj.users_collection:
                coll.objects.link(target)
        if source.data.uv_layers:
            uv = target.data.uv_layers.get(UV_NAME) or target.data.uv_layers.new(name=UV_NAME)
            target.data.uv_layers.active = uv
            uv.active_render = True
            modifier = target.modifiers.new("TRELLIS UV", "DATA_TRANSFER")
            modifier.object = source
            modifier.use_object_transform = True
            modifier.use_loop_data = True
            modifier.data_types_loops = {"UV"}
            modifier.loop_mapping = "POLYINTERP_NEAREST"
            source.data.uv_layers.active.name = UV_NAME  # transferred by name into the new map
            modifier.layers_uv_select_src = UV_NAME
            modifier.layers_uv_select_dst = "NAME"
            while target.modifiers[0] != modifier:  # applied first: it reads the undeformed mesh
                target.modifiers.move(target.modifiers.find(modifier.name), 0)
            with context.temp_override(object=target, active_object=target):
                bpy.ops.object.modifier_apply(modifier=modifier.name)
        material = source.data.materials[0] if source.data.materials else None
        if material is not None:
            target.data.materials.clear()
            target.data.materials.append(material)
            for polygon in target.data.polygons:
                polygon.material_index = 0
    finally:
        meshes = [o.data for o in imported if o.type == "MESH"]
        for o in imported:
            bpy.data.objects.remove(o, do_unlink=True)
        for mesh in meshes:
            if mesh.users == 0:
                bpy.data.meshes.remove(mesh)
        for name in selected:
            if name in context.view_layer.objects:
                context.view_layer.objects[name].select_set(True)
    target["trellis2_retexture"] = json.dumps({"job": job.id, "backend": job.backend})
    target.select_set(True)
    context.view_layer.objects.active = target
    job.objects = [target.name]
    job.set_finished(DONE, f"Retextured {target.name}")
    return target
