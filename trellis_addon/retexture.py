"""Retexture from image: keep an object's geometry, replace its material with one TRELLIS.2 paints from an
image. The selected mesh goes to the worker as a GLB; the result (new UVs and material on a re-unwrapped
copy of the mesh) is fitted onto the original's world bounds, its UVs are transferred onto the original
mesh (vertex count and transform unchanged) and its material replaces the old one."""
from __future__ import annotations

import json
import os
import tempfile

import bpy

from . import importer, meshfile, request, results
from .meshfile import MESH_BLEND, export_mesh, write_mesh_blend
from .queue import DONE, Job, manager, submit_io


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


def apply_result(context, job: Job, obj: bpy.types.Object, on_copy: bool = False) -> bpy.types.Object:
    """Put the job's first result on obj (or a copy of it): new UV map transferred from the result, the
    result's material. Returns the object that got it (active, with the selection as it was); the imported
    result is removed. In the UI a background Blender fitted and transferred it (the .blend the job's mesh came
    in): its UV values are copied here; otherwise, or where the mesh was edited meanwhile, transferred here."""
    selected = [o.name for o in context.view_layer.objects if o.select_get()]
    path = job.result["files"][0]
    imported = importer.import_glb(context, path, snapshot=True, key=results.snapshot_key(job, 0, None),
                                   verified=job.built.get("verified"), landing=job.landings.get(path))
    try:
        found = meshfile.parts(imported)
        source = found.get("source") or next((o for o in imported if o.type == "MESH"), None)
        if source is None:
            raise request.RequestError("The retextured result has no mesh")
        target = obj
        if on_copy:
            target = obj.copy()
            target.data = obj.data.copy()
            target.name = f"{obj.name}.retextured"
            for coll in obj.users_collection:
                coll.objects.link(target)
        done = found.get("target")
        if done is None or not meshfile.copy_transferred(done, source, target):
            if "source" not in found:  # fitted in the background Blender already
                meshfile.fit(source, obj)
            meshfile.transfer(context, source, target)
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
        if job.mesh_source:
            submit_io(_remove, job.mesh_source)  # its GLB is the job's input from now on
    target["trellis2_retexture"] = json.dumps({"job": job.id, "backend": job.backend})
    target.select_set(True)
    context.view_layer.objects.active = target
    job.objects = [target.name]
    job.set_finished(DONE, f"Retextured {target.name}")
    return target


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
