"""Generation presets: the bundled ones, and the user's own through Blender's preset system."""
from __future__ import annotations

import bpy
from bl_operators.presets import AddPresetBase

from ..backend import presets, schema
from ..trellis_addon import props

PRESET_SUBDIR = "trellis2/generation"


class TRELLIS_OT_apply_preset(bpy.types.Operator):
    """Apply a bundled generation preset to the TRELLIS panel"""

    bl_idname = "trellis.apply_preset"
    bl_label = "Apply TRELLIS Preset"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    name: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        values = presets.BUNDLED.get(self.name)
        if values is None:
            self.report({"ERROR"}, f"Unknown preset {self.name!r}")
            return {"CANCELLED"}
        for key, value in values.items():
            props.set_scene_value(context.scene.trellis2, schema.BY_NAME[key], value)
        return {"FINISHED"}


class TRELLIS_MT_presets(bpy.types.Menu):
    bl_label = "Generation Presets"
    preset_subdir = PRESET_SUBDIR
    preset_operator = "script.execute_preset"

    def draw(self, context):
        layout = self.layout
        for name in presets.BUNDLED:
            layout.operator(TRELLIS_OT_apply_preset.bl_idname, text=name).name = name
        user_dir = bpy.utils.user_resource("SCRIPTS", path=f"presets/{PRESET_SUBDIR}")
        layout.separator()
        self.path_menu([user_dir], self.preset_operator, props_default={"menu_idname": self.bl_idname},
                       filter_ext=lambda ext: ext.lower() == ".py")


class TRELLIS_OT_preset_add(AddPresetBase, bpy.types.Operator):
    """Save the current TRELLIS settings as a preset, or remove one"""

    bl_idname = "trellis.preset_add"
    bl_label = "Add TRELLIS Preset"
    preset_menu = "TRELLIS_MT_presets"
    preset_subdir = PRESET_SUBDIR
    preset_defines = ["settings = bpy.context.scene.trellis2"]
    preset_values = [f"settings.{name}" for name in presets.PRESET_SETTINGS]


classes = (TRELLIS_OT_apply_preset, TRELLIS_MT_presets, TRELLIS_OT_preset_add)
