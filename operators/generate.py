"""trellis.generate: modal with a progress bar in the UI, blocking in scripts and background mode (ModalJob)."""
from __future__ import annotations

import json

import bpy

from ..trellis_addon import props, request, results, spending
from ..trellis_addon.queue import CANCELLED, DONE, IMPORTING, manager
from .modal_job import ModalJob


class TRELLIS_OT_generate(ModalJob, bpy.types.Operator):
    """Generate a textured 3D mesh from the image and add it at the 3D cursor"""

    bl_idname = "trellis.generate"
    bl_label = "Generate 3D Mesh"
    bl_options = {"UNDO"}  # one undo step; no redo panel, which would re-run the whole job

    __annotations__ = props.job_keywords(
        target_size=bpy.props.FloatProperty(
            name="Target Size", default=0.0, options={"SKIP_SAVE"},
            description="Longest side of the result in metres; 0 keeps the model's size"),
        place_near=bpy.props.StringProperty(
            name="Place Near", options={"SKIP_SAVE"},
            description="Name of an object (e.g. the image empty the picture came from) to put the result "
                        "next to. Empty: at the 3D cursor"),
        force_new=bpy.props.BoolProperty(
            name="Force New", options={"SKIP_SAVE"},
            description="Generate even when history already holds this exact request (same image, settings "
                        "and explicit seed). Off: such a request is answered from history at no cost"),
        cost_confirmed=bpy.props.BoolProperty(options={"SKIP_SAVE", "HIDDEN"}),
    )

    def _request(self, context) -> request.Request:
        """The scene's settings with this call's keywords on top; raises RequestError."""
        scene = context.scene.trellis2
        settings, chosen = props.overrides(self, scene, ("image", "backend", "target_size", "force_new"))
        return request.Request(settings=request.resolve_settings(scene.to_settings(), settings),
                               anchor=self.place_near, finish=props.finish_settings(self, scene), **chosen)

    def _start(self, context, checked: request.Request | None = None):
        try:
            job = request.prepare(checked or self._request(context))
        except (request.RequestError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return None
        return manager.enqueue(job)

    def _done(self, context, job) -> set:
        if job.state == IMPORTING:
            try:
                results.import_job(context, job)
            except request.RequestError:
                pass
        if job.state == DONE:
            self.report({"INFO"}, f"TRELLIS: added {', '.join(job.objects)} in {job.elapsed:.1f} s")
            return {"FINISHED"}
        if job.state == CANCELLED:
            self.report({"WARNING"}, "TRELLIS: generation cancelled")
            return {"CANCELLED"}
        self.report({"ERROR"}, f"TRELLIS: {job.error}")
        return {"CANCELLED"}

    # --- modal in the UI (ModalJob), after the cost confirmation; blocking in scripts ----------------
    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            checked = self._request(context)
        except request.RequestError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        estimate = spending.session.needs_confirmation(checked.backend, checked.settings)
        if estimate and not self.cost_confirmed and not request.answered_from_cache(checked):
            keywords = {k: getattr(self, k) for k in self.properties.rna_type.properties.keys()
                        if k != "rna_type" and self.properties.is_property_set(k)}
            bpy.ops.trellis.confirm_cost("INVOKE_DEFAULT", estimate=estimate, keywords=json.dumps(keywords))
            return {"CANCELLED"}
        return self._run_modal(context, self._start(context, checked))


class TRELLIS_OT_cancel(bpy.types.Operator):
    """Stop the running generation. The worker process is stopped; nothing is imported"""

    bl_idname = "trellis.cancel"
    bl_label = "Cancel Generation"
    bl_options = {"INTERNAL"}

    job_id: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        targets = [manager.get(self.job_id)] if self.job_id else manager.active()
        for job in filter(None, targets):
            job.cancel()
        return {"FINISHED"}


class TRELLIS_OT_confirm_cost(bpy.types.Operator):
    """Confirm a hosted generation whose estimated cost is above your threshold"""

    bl_idname = "trellis.confirm_cost"
    bl_label = "Confirm Cost"
    bl_options = {"INTERNAL"}

    estimate: bpy.props.FloatProperty(options={"SKIP_SAVE"})
    keywords: bpy.props.StringProperty(options={"SKIP_SAVE"})  # JSON: the generate call's keywords

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(
            self, event, title="Generate with a paid service?",
            message=f"Estimated cost about ${self.estimate:.2f} (threshold in the add-on preferences)",
            confirm_text="Generate")

    def execute(self, context):
        keywords = json.loads(self.keywords or "{}")
        return bpy.ops.trellis.generate("INVOKE_DEFAULT", **dict(keywords, cost_confirmed=True))


classes = (TRELLIS_OT_generate, TRELLIS_OT_cancel, TRELLIS_OT_confirm_cost)
