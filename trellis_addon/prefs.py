"""Add-on preferences and the folders jobs write to."""
from __future__ import annotations

import os

import bpy

from .. import __package__ as base_package


class TRELLIS_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = base_package

    output_dir: bpy.props.StringProperty(
        name="Results Folder", subtype="DIR_PATH",
        description="Where each job keeps its input, GLB files and log. Empty: the extension's user folder")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "output_dir")
        layout.label(text=f"In use: {jobs_root(create=False)}", icon="FILE_FOLDER")


def get() -> TRELLIS_AP_preferences | None:
    addon = bpy.context.preferences.addons.get(base_package)
    return addon.preferences if addon else None


def jobs_root(create: bool = True) -> str:
    prefs = get()
    custom = bpy.path.abspath(prefs.output_dir) if prefs and prefs.output_dir else ""
    if custom:
        if create:
            os.makedirs(custom, exist_ok=True)
        return custom
    return bpy.utils.extension_path_user(base_package, path="jobs", create=create)


classes = (TRELLIS_AP_preferences,)
