"""trellis.quote_cost: the provider's price for the current settings, before anything is generated."""
from __future__ import annotations

import bpy

from ..backend import registry
from ..trellis_addon import request, results
from ..trellis_addon.queue import CANCELLED, IMPORTING, manager
from .modal_job import ModalJob


class TRELLIS_OT_quote_cost(ModalJob, bpy.types.Operator):
    """Ask the provider what generating with the current image and settings would cost (Scenario's dry run:
    nothing is generated or charged)"""

    bl_idname = "trellis.quote_cost"
    bl_label = "Quote Cost"

    @classmethod
    def poll(cls, context):
        return registry.get(context.scene.trellis2.backend).can_quote

    def _start(self, context):
        s = context.scene.trellis2
        try:
            settings = request.resolve_settings(s.to_settings(), {})
            job = request.prepare(request.Request(image=s.image, backend=s.backend, settings=settings, quote=True))
        except (request.RequestError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return None
        return manager.enqueue(job)

    def _done(self, context, job):
        if job.state == IMPORTING:
            self.report({"INFO"}, f"TRELLIS: {results.finish_quote(job)}")
            return {"FINISHED"}
        self.report({"WARNING"} if job.state == CANCELLED else {"ERROR"}, f"TRELLIS: quote {job.error or job.text}")
        return {"CANCELLED"}


classes = (TRELLIS_OT_quote_cost,)
