"""trellis.generate: modal with a progress bar in the UI, blocking in scripts and background mode (ModalJob)."""
from __future__ import annotations

import json

import bpy

from ..backend import schema
from ..trellis_addon import generation, jobs, props
from .modal_job import ModalJob


class TRELLIS_OT_generate(ModalJob, bpy.types.Operator):
    """Generate a textured 3D mesh from the image and add it at the 3D cursor"""

    bl_idname = "trellis.generate"
    bl_label = "Generate 3D Mesh"
    bl_options = {"UNDO"}  # one undo step; no redo panel, which would re-run the whole job

    __annotations__ = {p.name: props.operator_property(p) for p in schema.PARAMS}
    __annotations__.update(
        image=bpy.props.StringProperty(
            name="Image", options={"SKIP_SAVE"},
            description="Image file path or image datablock name. Empty: the TRELLIS panel's image"),
        backend=bpy.props.EnumProperty(items=props.backend_items(), name="Backend", options={"SKIP_SAVE"}),
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

    # --- shared -----------------------------------------------------------------------------------
    def _request(self, context) -> dict:
        """The scene's settings with this call's keywords on top; raises RequestError."""
        scene = context.scene.trellis2
        is_set = self.properties.is_property_set
        overrides = {p.name: getattr(self, p.name) for p in schema.PARAMS if is_set(p.name)}
        return dict(settings=generation.resolve_settings(scene.to_settings(), overrides),
                    image=self.image if is_set("image") else scene.image,
                    backend=self.backend if is_set("backend") else scene.backend,
                    target_size=self.target_size if is_set("target_size") else scene.target_size,
                    anchor=self.place_near,
                    force_new=self.force_new if is_set("force_new") else scene.force_new)

    def _start(self, context, request: dict | None = None) -> jobs.Job | None:
        try:
            job = generation.prepare_job(**(request or self._request(context)))
        except (generation.RequestError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return None
        return generation.enqueue(job)

    def _done(self, context, job: jobs.Job) -> set:
        if job.state == jobs.IMPORTING:
            try:
                generation.import_job(context, job)
            except generation.RequestError:
                pass
        if job.state == jobs.DONE:
            self.report({"INFO"}, f"TRELLIS: added {', '.join(job.objects)} in {job.elapsed:.1f} s")
            return {"FINISHED"}
        if job.state == jobs.CANCELLED:
            self.report({"WARNING"}, "TRELLIS: generation cancelled")
            return {"CANCELLED"}
        self.report({"ERROR"}, f"TRELLIS: {job.error}")
        return {"CANCELLED"}

    # --- modal in the UI (ModalJob), after the cost confirmation; blocking in scripts ----------------
    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            request = self._request(context)
        except generation.RequestError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        estimate = generation.needs_cost_confirmation(request["backend"], request["settings"])
        if estimate and not self.cost_confirmed and not generation.answered_from_cache(**request):
            keywords = {k: getattr(self, k) for k in self.properties.rna_type.properties.keys()
                        if k != "rna_type" and self.properties.is_property_set(k)}
            bpy.ops.trellis.confirm_cost("INVOKE_DEFAULT", estimate=estimate, keywords=json.dumps(keywords))
            return {"CANCELLED"}
        return self._run_modal(context, self._start(context, request))


class TRELLIS_OT_cancel(bpy.types.Operator):
    """Stop the running generation. The worker process is stopped; nothing is imported"""

    bl_idname = "trellis.cancel"
    bl_label = "Cancel Generation"
    bl_options = {"INTERNAL"}

    job_id: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        targets = [jobs.manager.get(self.job_id)] if self.job_id else jobs.manager.active()
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
