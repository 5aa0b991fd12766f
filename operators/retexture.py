"""trellis.retexture: the active mesh keeps its geometry and gets a material painted from the image."""
from __future__ import annotations

import time

import bpy

from ..backend import schema
from ..trellis_addon import generation, jobs, props, retexture


class TRELLIS_OT_retexture(bpy.types.Operator):
    """Replace the active mesh's material with one TRELLIS.2 paints from the image (geometry kept)"""

    bl_idname = "trellis.retexture"
    bl_label = "Retexture from Image"
    bl_options = {"REGISTER", "UNDO"}  # one undo step

    __annotations__ = {p.name: props.operator_property(p) for p in schema.PARAMS}
    __annotations__.update(
        image=bpy.props.StringProperty(
            name="Image", options={"SKIP_SAVE"},
            description="Image file path or image datablock name. Empty: the TRELLIS panel's image"),
        backend=bpy.props.EnumProperty(items=props.backend_items(), name="Backend", options={"SKIP_SAVE"}),
        on_copy=bpy.props.BoolProperty(
            name="On a Copy", options={"SKIP_SAVE"},
            description="Put the new material on a copy of the object and leave the original as it is"),
    )

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH"

    def execute(self, context):
        scene = context.scene.trellis2
        is_set = self.properties.is_property_set
        obj = context.active_object
        try:
            overrides = {p.name: getattr(self, p.name) for p in schema.PARAMS if is_set(p.name)}
            settings = generation.resolve_settings(scene.to_settings(), overrides)
            job = retexture.prepare(context, obj, image=self.image if is_set("image") else scene.image,
                                    backend=(self.backend if is_set("backend") else scene.backend).lower(),
                                    settings=settings)
            job.start(generation.worker_for(job))
        except (generation.RequestError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        jobs.manager.add(job)
        try:
            while not (job.state == jobs.IMPORTING or job.is_finished):
                job.poll()
                time.sleep(0.05)
        except KeyboardInterrupt:
            job.cancel()
        if job.state == jobs.IMPORTING:
            try:
                target = retexture.apply_result(context, job, obj, self.on_copy)
            except (generation.RequestError, RuntimeError, TypeError) as exc:
                job.fail(f"Retexture failed: {exc}")
            else:
                self.report({"INFO"}, f"TRELLIS: retextured {target.name} in {job.elapsed:.1f} s")
        jobs.flush_records()
        if job.state == jobs.DONE:
            return {"FINISHED"}
        self.report({"WARNING"} if job.state == jobs.CANCELLED else {"ERROR"}, f"TRELLIS: {job.error or job.text}")
        return {"CANCELLED"}


classes = (TRELLIS_OT_retexture,)
