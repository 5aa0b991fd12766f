"""trellis.retexture: the active mesh keeps its geometry and gets a material painted from the image
(modal in the UI, blocking in scripts)."""
from __future__ import annotations

import bpy

from ..trellis_addon import props, request, retexture
from ..trellis_addon.queue import CANCELLED, IMPORTING, manager
from .modal_job import ModalJob


class TRELLIS_OT_retexture(ModalJob, bpy.types.Operator):
    """Replace the active mesh's material with one TRELLIS.2 paints from the image (geometry kept)"""

    bl_idname = "trellis.retexture"
    bl_label = "Retexture from Image"
    bl_options = {"UNDO"}  # one undo step; no redo panel, which would run the whole job again

    __annotations__ = props.job_keywords(
        on_copy=bpy.props.BoolProperty(
            name="On a Copy", options={"SKIP_SAVE"},
            description="Put the new material on a copy of the object and leave the original as it is"),
    )

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH"

    def _start(self, context):
        scene = context.scene.trellis2
        self._object = context.active_object.name
        try:
            settings, chosen = props.overrides(self, scene)
            checked = request.Request(settings=request.resolve_settings(scene.to_settings(), settings),
                                      mode="retexture", **chosen)
            job = retexture.prepare(context, context.active_object, checked)
        except (request.RequestError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return None
        return manager.enqueue(job)

    def _done(self, context, job):
        obj = bpy.data.objects.get(self._object)
        if job.state == IMPORTING and obj is None:
            job.fail(f"Retexture failed: {self._object} was deleted while the job ran")
        elif job.state == IMPORTING:
            try:
                target = retexture.apply_result(context, job, obj, self.on_copy)
            except (request.RequestError, RuntimeError, TypeError) as exc:
                job.fail(f"Retexture failed: {exc}")
            else:
                self.report({"INFO"}, f"TRELLIS: retextured {target.name} in {job.elapsed:.1f} s")
                return {"FINISHED"}
        self.report({"WARNING"} if job.state == CANCELLED else {"ERROR"}, f"TRELLIS: {job.error or job.text}")
        return {"CANCELLED"}


classes = (TRELLIS_OT_retexture,)
