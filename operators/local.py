"""Local GPU backend: check the TRELLIS.2 environment, unload the model."""
from __future__ import annotations

import bpy

from ..trellis_addon import doctor, prefs
from ..trellis_addon.queue import manager


class TRELLIS_OT_unload_model(bpy.types.Operator):
    """Stop the local TRELLIS.2 worker and free its GPU memory (the next local job loads the model again)"""

    bl_idname = "trellis.unload_model"
    bl_label = "Unload Model"

    def execute(self, context):
        stopped = manager.unload()
        self.report({"INFO"}, "TRELLIS.2 model unloaded" if stopped else "No model was loaded")
        return {"FINISHED"}


class TRELLIS_OT_check_local_setup(bpy.types.Operator):
    """Run the TRELLIS.2 Python and check torch, CUDA, the GPU, every required package, the attention
    backend and whether the weights are available offline"""

    bl_idname = "trellis.check_local_setup"
    bl_label = "Check Local Setup"

    def execute(self, context):
        try:
            doctor.start(*prefs.local_setup())
        except prefs.AccessError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not bpy.app.background:
            bpy.app.timers.register(_redraw_until_done, first_interval=0.5)
        return {"FINISHED"}


def _redraw_until_done():
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()
    return 0.5 if doctor.state["running"] else None


def unregister_timers() -> None:
    if bpy.app.timers.is_registered(_redraw_until_done):
        bpy.app.timers.unregister(_redraw_until_done)


classes = (TRELLIS_OT_unload_model, TRELLIS_OT_check_local_setup)
