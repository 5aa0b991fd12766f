"""Start generation where the image already is: right-click menus and files dropped on the 3D View."""
from __future__ import annotations

import os

import bpy

from ..trellis_addon import blocking
from ..trellis_addon.image_input import IMAGE_EXTENSIONS



def _generate(image: str, anchor: str = "") -> set:
    return bpy.ops.trellis.generate(blocking.operator_mode(), image=image, place_near=anchor)


def image_empties(context) -> list[bpy.types.Object]:
    """Selected image empties (reference and background images are image empties too), active first."""
    objects = list(getattr(context, "selected_objects", None) or [])
    active = getattr(context, "active_object", None)
    if active is not None:
        objects = [active] + [o for o in objects if o != active]
    return [o for o in objects if o.type == "EMPTY" and o.empty_display_type == "IMAGE" and o.data is not None]


def images_in_context(context) -> list[tuple[bpy.types.Image, str]]:
    """(image, anchor object name) pairs for where the user right-clicked."""
    space = getattr(context, "space_data", None)
    if space is not None and space.type == "IMAGE_EDITOR":
        usable = space.image is not None and space.image.type in ("IMAGE", "UV_TEST")  # not Render Result
        return [(space.image, "")] if usable else []
    if space is not None and space.type == "OUTLINER":
        ids = getattr(context, "selected_ids", None) or []
        return [(i, "") for i in ids if isinstance(i, bpy.types.Image)]
    return [(o.data, o.name) for o in image_empties(context)]


class TRELLIS_OT_generate_from_image(bpy.types.Operator):
    """Generate a 3D mesh from this image with TRELLIS.2 (the TRELLIS panel's settings). From an image
    empty, the result is placed beside it"""

    bl_idname = "trellis.generate_from_image"
    bl_label = "Generate 3D Mesh (TRELLIS.2)"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not images_in_context(context):
            cls.poll_message_set("Needs an image: the Image Editor's image, an image empty or images in the "
                                 "Outliner's Blender File view")
            return False
        return True

    def execute(self, context):
        started = 0
        for image, anchor in images_in_context(context):
            try:
                result = _generate(image.name, anchor)
            except RuntimeError as exc:  # blocking mode: the job failed; its message was reported
                self.report({"ERROR"}, str(exc).splitlines()[-1])
                continue
            started += "CANCELLED" not in result
        return {"FINISHED"} if started else {"CANCELLED"}


class TRELLIS_OT_generate_from_files(bpy.types.Operator):
    """Generate a 3D mesh from each image file (one queued job per file)"""

    bl_idname = "trellis.generate_from_files"
    bl_label = "Generate 3D Mesh from Image Files (TRELLIS.2)"
    bl_options = {"REGISTER"}

    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"})
    files: bpy.props.CollectionProperty(type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE", "HIDDEN"})
    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE", "HIDDEN"})
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def paths(self) -> list[str]:
        if self.files and any(f.name for f in self.files):
            return [os.path.join(self.directory, f.name) for f in self.files if f.name]
        return [self.filepath] if self.filepath else []

    def invoke(self, context, event):
        if self.paths():  # dropped files
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        paths = self.paths()
        supported = [p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS)]
        for path in sorted(set(paths) - set(supported)):
            self.report({"WARNING"}, f"Skipped {os.path.basename(path)}: not an image type TRELLIS reads "
                                     f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
        started = 0
        for path in supported:
            try:
                result = _generate(path)
            except RuntimeError as exc:
                self.report({"ERROR"}, str(exc).splitlines()[-1])
                continue
            started += "CANCELLED" not in result
        if not supported:
            self.report({"ERROR"}, "No image files to generate from")
        return {"FINISHED"} if started else {"CANCELLED"}


class TRELLIS_FH_images(bpy.types.FileHandler):
    """Image files dropped on the 3D View: generate a mesh from each"""

    bl_idname = "TRELLIS_FH_images"
    bl_label = "Generate 3D Mesh (TRELLIS.2)"
    bl_import_operator = "trellis.generate_from_files"
    bl_file_extensions = ";".join(IMAGE_EXTENSIONS)

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


classes = (TRELLIS_OT_generate_from_image, TRELLIS_OT_generate_from_files, TRELLIS_FH_images)
