"""What the open 3D viewports will draw of a new result: the landing decodes and uploads those images in ticks
of their own, so that the viewport's first draw of the result does not do it all at once."""
from __future__ import annotations

import bpy

EEVEE = ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT")


def drawn(shading_type: str, color_type: str, engine: str) -> str:
    """Which images a viewport with this shading draws: "all" (Material Preview, EEVEE's Rendered: every
    texture of the material), "colour" (Solid with Texture colour: the base colour, a colour image), or ""
    (none: Solid's other colours, Wireframe, Cycles and Workbench, which read their images themselves)."""
    if shading_type == "MATERIAL" or (shading_type == "RENDERED" and engine in EEVEE):
        return "all"
    return "colour" if shading_type == "SOLID" and color_type == "TEXTURE" else ""


def _view3d_areas():
    """(window, area) of every 3D viewport open in a window."""
    for window in getattr(bpy.context.window_manager, "windows", ()):
        if window.screen is not None:  # None: a window being opened or closed
            yield from ((window, area) for area in window.screen.areas if area.type == "VIEW_3D")


def kinds() -> set:
    """drawn() of every 3D viewport open in a window."""
    return {drawn(area.spaces.active.shading.type, area.spaces.active.shading.color_type, window.scene.render.engine)
            for window, area in _view3d_areas()} - {""}


def any_open() -> bool:
    """Whether a 3D viewport is open in a window (it draws a new result, whatever its shading); never without
    a window (-b, the bpy module: their window manager keeps the startup file's windows, undrawn)."""
    return not bpy.app.background and next(_view3d_areas(), None) is not None


def warm_steps(images: list, drawn_kinds: set) -> list:
    """("read"|"upload", image name) for each image the viewports will draw: its pixels decoded, then (in a
    window) its GPU texture made."""
    chosen = [i for i in images if "all" in drawn_kinds or ("colour" in drawn_kinds and not i.colorspace_settings.is_data)]
    upload = not bpy.app.background  # no GPU there: gpu.texture.from_image crashes the bpy module
    return [(kind, i.name) for i in chosen for kind in ("read", "upload") if kind == "read" or upload]
