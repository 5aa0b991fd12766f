"""3D View ▸ Sidebar ▸ TRELLIS ▸ History and Selected Result."""
from __future__ import annotations

import os
import time

import bpy
import bpy.utils.previews

from ..trellis_addon import finishing, history, prefs
from ..trellis_addon.queue import submit_io
from ..trellis_addon.record import OBJECT_PROPERTY, Record
from .sidebar import _SidebarPanel

SHOWN = 12  # entries listed; the folder keeps them all
_previews = None


def thumbnail(entry: history.Entry) -> int:
    """Icon id of the entry's thumb.png (loaded once per entry), 0 without one."""
    path = os.path.join(entry.folder, history.THUMB)
    if _previews is None or not os.path.isfile(path):
        return 0
    if entry.id not in _previews:
        _previews.load(entry.id, path, "IMAGE")
    return _previews[entry.id].icon_id


def _size(n: int) -> str:
    return f"{n / 1024 ** 3:.2f} GB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.1f} MB"


def draw_entry(layout, entry: history.Entry) -> None:
    box = layout.box()
    row = box.row()
    icon = thumbnail(entry)
    if entry.state == history.BROKEN:
        row.label(text=f"{entry.id}: broken ({entry.problem})", icon="ERROR")
        row.operator("trellis.history_delete", text="", icon="TRASH").entry = entry.id
        return
    record = entry.record
    try:
        when = time.strftime("%m-%d %H:%M", time.localtime(entry.created)) if entry.created else ""
    except (OverflowError, OSError, ValueError):  # a time no clock shows
        when = ""
    seeds = ", ".join(map(str, record.get("seeds") or [])) or "?"
    col = row.column()
    if icon:
        col.template_icon(icon_value=icon, scale=2.0)
    col = row.column(align=True)
    col.label(text=f"{entry.title} · {record.get('backend', '?')}")
    col.label(text=f"seed {seeds}")
    col.label(text=f"{when} · {_size(entry.size)}")
    if entry.state == history.READY:
        col.label(text="Not imported yet", icon="INFO")
    elif entry.cancelled:
        col.label(text="Cancelled — may still be billed", icon="ERROR")
    elif entry.state == history.PENDING:
        col.label(text="Submitted, result not downloaded", icon="TIME")
    buttons = box.row(align=True)
    if entry.state in (history.DONE, history.READY):
        buttons.operator("trellis.history_import", text="Import", icon="IMPORT").entry = entry.id
        buttons.operator("trellis.history_settings", text="", icon="PRESET").entry = entry.id
    if entry.state == history.PENDING:
        buttons.operator("trellis.history_resume", text="Fetch Result", icon="FILE_REFRESH").entry = entry.id
    buttons.operator("trellis.history_open", text="", icon="FILE_FOLDER").entry = entry.id
    buttons.operator("trellis.history_delete", text="", icon="TRASH").entry = entry.id


class TRELLIS_PT_history(_SidebarPanel, bpy.types.Panel):
    """Every result kept on disk: import again, copy settings, delete"""

    bl_label = "History"
    bl_parent_id = "TRELLIS_PT_main"
    bl_options = {"DEFAULT_CLOSED"}
    bl_order = 20
    bl_ui_units_x = 14  # width when shown as a popover (wm.call_panel)

    def draw(self, context):
        layout = self.layout
        root = prefs.jobs_root(create=False)
        entries = [e for e in history.history.snapshot(root, submit_io) if e.state != history.OTHER]
        total = sum(e.size for e in entries)  # measured on the file thread by snapshot()
        p = prefs.get()
        cap = f" of {p.history_cap_gb:g} GB" if p and p.history_cap_gb > 0 else ""
        row = layout.row()
        row.label(text=f"{len(entries)} results · {_size(total)}{cap}")
        row.operator("trellis.history_prune", text="", icon="BRUSH_DATA")
        if not entries:
            layout.label(text="Finished jobs appear here", icon="INFO")
        for entry in entries[:SHOWN]:
            draw_entry(layout, entry)
        if len(entries) > SHOWN:
            layout.label(text=f"{len(entries) - SHOWN} older results in the folder")


def draw_qa(layout, qa: dict) -> None:
    """The result's measured quality (finish.measure), as the Selected Result panel shows it."""
    rows = finishing.qa_rows(qa)
    if rows:
        col = layout.box().column(align=True)
        for text, icon in rows:
            col.label(text=text, icon=icon)


class TRELLIS_PT_result(_SidebarPanel, bpy.types.Panel):
    """The selected object's TRELLIS record: generate it again or vary it"""

    bl_label = "Selected Result"
    bl_parent_id = "TRELLIS_PT_main"
    bl_order = 19

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and OBJECT_PROPERTY in obj

    def draw(self, context):
        obj = context.active_object
        record = Record.from_text(obj.get(OBJECT_PROPERTY))
        if record is None:
            self.layout.label(text="Unreadable TRELLIS record", icon="ERROR")
            return
        col = self.layout.column(align=True)
        col.label(text=f"{record.backend or '?'} · seed {record.seed}" + (" · from cache" if record.from_cache else ""))
        draw_qa(self.layout, record.result_qa())
        row = col.row(align=True)
        row.operator("trellis.regenerate", icon="FILE_REFRESH")
        row.operator("trellis.variations", icon="MOD_ARRAY")
        col.operator("trellis.load_settings", icon="PRESET")


def register():
    global _previews
    _previews = bpy.utils.previews.new()


def unregister():
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None


classes = (TRELLIS_PT_result, TRELLIS_PT_history)
