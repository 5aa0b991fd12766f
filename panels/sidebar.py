"""3D View ▸ Sidebar ▸ TRELLIS."""
from __future__ import annotations

import os
import threading

import bpy

from ..backend import protocol, registry, schema
from ..trellis_addon import prefs, spending
from ..trellis_addon.queue import QUEUED, Job, manager

CATEGORY = "TRELLIS"
ADVANCED = ("max_num_tokens", "preprocess_image", "remesh_band", "remesh_project")


def register():
    """Import every backend's module (its MAPPINGS, and the HTTP stack they import: about 0.16 s) on a
    thread, so the sidebar's first draw does not do it on the main thread."""
    if not bpy.app.background:
        threading.Thread(target=_load_mappings, name="trellis-mappings", daemon=True).start()


def _load_mappings() -> None:
    for info in list(registry.BACKENDS):
        try:
            registry.mapping(info.id)
        except Exception as exc:  # noqa: BLE001 (the draw reports it where it matters)
            print(f"TRELLIS: {info.id} mappings not loaded: {type(exc).__name__}: {exc}")


def ignored_settings(backend: str) -> frozenset:
    """Schema settings the scene's backend does not send (drawn greyed out)."""
    return frozenset(registry.ignored(backend))


def draw_prop(layout, settings, name: str, ignored: frozenset, **kwargs):
    """One setting on its own row, greyed out (still editable) when the backend ignores it."""
    row = layout.row(align=True)
    row.active = name not in ignored
    row.prop(settings, name, **kwargs)
    return row


def note_ignored(layout, backend: str, names, ignored: frozenset) -> None:
    if ignored.intersection(names):
        label = registry.get(backend).short_label
        layout.label(text=f"Greyed out: {label} ignores them", icon="INFO")


class _SidebarPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


def draw_job(layout, job: Job, with_name: bool) -> None:
    row = layout.row(align=True)
    backend = job.info.short_label
    name = f"{job.name} ({backend}) · " if with_name else ""
    if job.state == QUEUED:
        row.label(text=f"{name}Queued", icon="TIME")
    else:
        row.progress(factor=job.fraction, type="BAR", text=f"{name}{job.text} · {job.elapsed:.0f} s")
    row.operator("trellis.cancel", text="", icon="CANCEL").job_id = job.id
    if job.remote and not with_name:
        layout.label(text="Submitted: cancelling may still be billed", icon="INFO")


def draw_queue(layout, active: list) -> None:
    if len(active) > 1:
        queued = sum(j.state == QUEUED for j in active)
        row = layout.row()
        row.label(text=f"Jobs: {len(active) - queued} running, {queued} queued", icon="SORTTIME")
        row.operator("trellis.cancel", text="Cancel All", icon="CANCEL").job_id = ""
    for job in active:
        draw_job(layout, job, with_name=len(active) > 1)


def draw_outcome(layout, job: Job) -> None:
    """The last job's end: its text, what to do about a failure (from its error code's remedy), its cost."""
    icon = {"done": "CHECKMARK", "failed": "ERROR"}.get(job.state, "INFO")
    layout.label(text=job.text, icon=icon)
    remedy = job.error_code.remedy if job.error_code else None
    if remedy == protocol.Remedy.FIX_ACCOUNT:
        layout.operator("preferences.addon_show", text="Check Key in Preferences", icon="PREFERENCES").module = \
            __package__.rsplit(".", 1)[0]
    elif remedy == protocol.Remedy.RETRY:
        layout.label(text="Temporary: try again later", icon="TIME")
    elif remedy == protocol.Remedy.FIX_SETUP:
        layout.operator("trellis.check_local_setup", icon="CHECKMARK")
    if job.cost is not None and not job.is_quote:  # a quote's text is its price
        spent = spending.session.total(job.cost_unit)
        layout.label(text=f"Cost {spending.money(job.cost, job.cost_unit)} · session "
                          f"{spending.money(spent, job.cost_unit)}", icon="FUND")


class TRELLIS_PT_main(_SidebarPanel, bpy.types.Panel):
    bl_label = "TRELLIS.2"

    def draw(self, context):
        layout = self.layout
        s = context.scene.trellis2
        row = layout.row(align=True)
        row.menu("TRELLIS_MT_presets", text="Presets", icon="PRESET")
        row.operator("trellis.preset_add", text="", icon="ADD")
        row.operator("trellis.preset_add", text="", icon="REMOVE").remove_active = True

        layout.template_ID_preview(s, "image", open="image.open", rows=3, cols=6)

        layout.prop(s, "backend")
        info = registry.get(s.backend)
        if not info.is_ai:
            box = layout.box()
            box.label(text="Not TRELLIS.2: an offline stand-in", icon="INFO")
            box.label(text="for trying the workflow (no AI)")
        if info.needs_network and not bpy.app.online_access:
            box = layout.box()
            box.label(text="Online access is off", icon="ERROR")
            box.label(text="Preferences ▸ System ▸ Allow Online Access")

        ignored = ignored_settings(s.backend)
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        draw_prop(col, s, "resolution", ignored, expand=True)
        for name in ("texture_size", "decimation_target", "remesh"):
            draw_prop(col, s, name, ignored)
        note_ignored(col, s.backend, ("resolution", "texture_size", "decimation_target", "remesh"), ignored)
        row = col.row(align=True)
        row.prop(s, "random_seed", text="", icon="FILE_REFRESH", toggle=True)
        sub = row.row(align=True)
        sub.enabled = not s.random_seed
        sub.prop(s, "seed")
        if not s.random_seed:
            col.prop(s, "force_new")
        col.prop(s, "number_results")
        col.prop(s, "target_size")

        active = manager.active()
        draw_queue(layout, active)
        row = layout.row()
        row.scale_y = 1.5
        row.operator("trellis.generate", text="Generate" if not active else "Generate Another",
                     icon="MESH_MONKEY")
        if info.can_quote:
            layout.operator("trellis.quote_cost", icon="FUND")
        if "retexture" in info.modes:
            layout.operator("trellis.retexture", icon="TEXTURE")
        last = manager.jobs[-1] if manager.jobs else None
        if last is not None and last.is_finished and not active:
            draw_outcome(layout, last)


def _stage_panel(stage: schema.Stage, order: int) -> type:
    def draw_header(self, context):
        self.layout.prop(context.scene.trellis2, stage.override, text="")

    def draw(self, context):
        s = context.scene.trellis2
        col = self.layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.active = getattr(s, stage.override)
        if not col.active:
            col.label(text="Model defaults are used", icon="INFO")
        ignored = ignored_settings(s.backend)
        names = [p.name for p in stage.params]
        for name in names:
            draw_prop(col, s, name, ignored)
        note_ignored(col, s.backend, names, ignored)

    return type(f"TRELLIS_PT_{stage.name}", (_SidebarPanel, bpy.types.Panel), {
        "bl_label": f"{stage.label} Sampler", "bl_parent_id": "TRELLIS_PT_main",
        "bl_options": {"DEFAULT_CLOSED"}, "bl_order": order, "__doc__": stage.description,
        "draw_header": draw_header, "draw": draw,
    })


class TRELLIS_PT_advanced(_SidebarPanel, bpy.types.Panel):
    """Knobs only some backends take (the local pipeline, EmpirioLabs): greyed out where ignored"""

    bl_label = "Advanced"
    bl_parent_id = "TRELLIS_PT_main"
    bl_options = {"DEFAULT_CLOSED"}
    bl_order = len(schema.STAGES)
    bl_ui_units_x = 14  # as a popover (wm.call_panel): wide enough for the interval rows and the note

    @classmethod
    def poll(cls, context):
        return registry.get(context.scene.trellis2.backend).is_ai

    def draw(self, context):
        s = context.scene.trellis2
        ignored = ignored_settings(s.backend)
        col = self.layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        names = list(ADVANCED)
        for stage in schema.STAGES:
            interval = [f"{stage.name}_guidance_interval_{end}" for end in ("start", "end")]
            names += interval
            sub = col.column(align=True)
            sub.active = getattr(s, stage.override) and not ignored.intersection(interval)
            sub.prop(s, interval[0], text=f"{stage.label.split()[-1]} Guidance")  # Structure, Shape, Texture
            sub.prop(s, interval[1], text="To")
        for name in ADVANCED:
            draw_prop(col, s, name, ignored)
        note_ignored(col, s.backend, names, ignored)


class TRELLIS_PT_finish(_SidebarPanel, bpy.types.Panel):
    """How each result is finished in Blender: origin and scale, cleanup, LODs, a baked low-poly, the asset mark"""

    bl_label = "Finish"
    bl_parent_id = "TRELLIS_PT_main"
    bl_options = {"DEFAULT_CLOSED"}
    bl_order = len(schema.STAGES) + 1
    bl_ui_units_x = 14  # as a popover (wm.call_panel)

    def draw(self, context):
        s = context.scene.trellis2
        col = self.layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.row().prop(s, "origin", expand=True)
        col.prop(s, "apply_scale")
        col.prop(s, "cleanup")
        sub = col.column()
        sub.active = s.cleanup
        sub.prop(s, "min_part_fraction")
        col.prop(s, "remove_interior")
        col.prop(s, "lod_levels")
        sub = col.column()
        sub.active = s.lod_levels > 0
        sub.prop(s, "lod_ratio")
        col.prop(s, "bake_faces")
        if 0 < s.bake_faces < schema.FINISH_BY_NAME["bake_faces"].min:
            col.label(text="Low-poly: 0 (off) or at least 1000 faces", icon="ERROR")
        col.prop(s, "mark_asset")
        p = prefs.get()
        if p is not None and p.asset_library:
            col.label(text=f"Also saved to {os.path.basename(os.path.normpath(bpy.path.abspath(p.asset_library)))}",
                      icon="ASSET_MANAGER")


classes = ((TRELLIS_PT_main,) + tuple(_stage_panel(s, i) for i, s in enumerate(schema.STAGES))
           + (TRELLIS_PT_advanced, TRELLIS_PT_finish))
