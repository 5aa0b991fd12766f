"""3D View ▸ Sidebar ▸ TRELLIS ▸ History and Selected Result."""
from __future__ import annotations

import os
import stat
import time

import bpy
import bpy.utils.previews

from ..backend import image_header
from ..trellis_addon import finishing, history, prefs
from ..trellis_addon.queue import submit_io
from ..trellis_addon.record import OBJECT_PROPERTY, Record
from .sidebar import _SidebarPanel

SHOWN = 12  # entries listed; the folder keeps them all
_previews = None


THUMB_MAX_SIDE = 1024  # pixels a side (the add-on writes history.THUMB_SIDE)
# Bytes: a thumbnail the add-on writes holds at most THUMB_SIDE² RGBA pixels (64 KiB before compression).
# 4 MiB is every pixel of a THUMB_MAX_SIDE² 8-bit RGBA picture stored uncompressed: nothing the side limit
# lets through needs more, and what Blender reads before it decodes stays small.
THUMB_MAX_BYTES = 4 << 20


def _thumb_stamp(path: str) -> tuple | None:
    """(size, modification time, inode) of a regular file that is no link; None otherwise."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _thumb_fits(folder: str, path: str, stamp: tuple) -> bool:
    """Whether an entry's thumb.png may be decoded: the very file `stamp` describes, opened without following
    a link, in a folder that is no link out of the results folder, at most THUMB_MAX_BYTES, and a PNG whose
    header says at most THUMB_MAX_SIDE a side. A history folder may be anyone's (a shared or synced drive):
    only the header is read here."""
    if not 0 < stamp[0] <= THUMB_MAX_BYTES:
        return False
    if os.path.dirname(os.path.realpath(folder)) != os.path.realpath(os.path.dirname(folder)):
        return False
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        with os.fdopen(os.open(path, flags), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns, st.st_ino) != stamp:
                return False
            found = image_header.png_size_of(f)
    except OSError:
        return False
    return found is not None and max(found) <= THUMB_MAX_SIDE


def thumbnail(entry: history.Entry) -> int:
    """Icon id of the entry's thumb.png, 0 without one or for one that may not be decoded (_thumb_fits). The
    decision is kept per entry and file (size, time, inode), so a redraw costs one lstat."""
    if _previews is None:
        return 0
    path = os.path.join(entry.folder, history.THUMB)
    stamp = _thumb_stamp(path)
    known = _previews.decided.get(entry.id)
    if known is not None and known[0] == stamp:
        return known[1]
    if entry.id in _previews:
        del _previews[entry.id]  # another file now: its old picture goes
    icon = 0
    if stamp is not None and _thumb_fits(entry.folder, path, stamp):
        icon = _previews.load(entry.id, path, "IMAGE", force_reload=True).icon_id
    _previews.decided[entry.id] = (stamp, icon)
    return icon


def _size(n: int) -> str:
    return f"{n / 1024 ** 3:.2f} GB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.1f} MB"


def draw_entry(layout, entry: history.Entry) -> None:
    box = layout.box()
    row = box.row()
    if entry.state == history.BROKEN:  # no thumbnail: nothing of a broken entry is read
        row.label(text=f"{entry.id}: broken ({entry.problem})", icon="ERROR")
        row.operator("trellis.history_delete", text="", icon="TRASH").entry = entry.id
        return
    icon = thumbnail(entry)
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
    _previews.decided = {}  # entry id -> (thumb.png's _thumb_stamp, icon id or 0): cleared with the previews


def unregister():
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None


classes = (TRELLIS_PT_result, TRELLIS_PT_history)
