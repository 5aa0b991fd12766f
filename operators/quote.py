"""trellis.quote_cost: the provider's price for the current settings, before anything is generated."""
from __future__ import annotations

import bpy

from ..backend import registry
from ..trellis_addon import generation, jobs
from .modal_job import ModalJob


class TRELLIS_OT_quote_cost(ModalJob, bpy.types.Operator):
    """Ask the provider what generating with the current image and settings would cost (Scenario's dry run:
    nothing is generated or charged)"""

    bl_idname = "trellis.quote_cost"
    bl_label = "Quote Cost"

    @classmethod
    def poll(cls, context):
        return registry.BY_ID[context.scene.trellis2.backend.lower()].can_quote

    def _start(self, context):
        s = context.scene.trellis2
        try:
            settings = generation.resolve_settings(s.to_settings(), {})
            job = generation.prepare_job(image=s.image, backend=s.backend, settings=settings, quote=True)
        except (generation.RequestError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return None
        return generation.enqueue(job)

    def _done(self, context, job):
        if job.state == jobs.IMPORTING:
            self.report({"INFO"}, f"TRELLIS: {generation.finish_quote(job)}")
            return {"FINISHED"}
        self.report({"WARNING"} if job.state == jobs.CANCELLED else {"ERROR"},
                    f"TRELLIS: quote {job.error or job.text}")
        return {"CANCELLED"}


classes = (TRELLIS_OT_quote_cost,)
