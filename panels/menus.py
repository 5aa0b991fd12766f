"""Menu entries: right-click an image (Image Editor, image empties, Outliner) to generate from it."""
from __future__ import annotations

import bpy

from ..operators import from_image

MENUS = ("IMAGE_MT_image", "IMAGE_MT_uvs_context_menu", "VIEW3D_MT_object_context_menu",
         "OUTLINER_MT_context_menu")


def draw_entry(self, context):
    if from_image.images_in_context(context):  # only where there is an image to use
        self.layout.separator()
        self.layout.operator("trellis.generate_from_image", icon="MESH_MONKEY")


def register():
    for name in MENUS:
        getattr(bpy.types, name).append(draw_entry)


def unregister():
    for name in MENUS:
        menu = getattr(bpy.types, name, None)
        if menu is not None:
            menu.remove(draw_entry)
