"""History entries (re-import, open, settings, delete, prune) and the result object's Regenerate,
Variations and Load Settings."""
from __future__ import annotations

import os
import stat

import bpy

from ..backend import schema
from ..trellis_addon import blocking, entry_lock, history, prefs, props, request, results, resume
from ..trellis_addon.queue import DONE, IMPORTING, Job, manager
from ..trellis_addon.record import OBJECT_PROPERTY, Record
from .modal_job import ModalJob


def entry_folder(entry_id: str) -> str | None:
    """The folder of an entry id: a folder directly in the results folder (links resolved), never a
    path elsewhere (an absolute path, `..`, a link out)."""
    if not entry_id or entry_id in (".", "..") or os.path.basename(entry_id) != entry_id or "/" in entry_id:
        return None
    root = os.path.realpath(prefs.jobs_root())
    folder = os.path.join(root, entry_id)
    inside = os.path.dirname(os.path.realpath(folder)) == root
    return folder if inside and os.path.isdir(folder) else None


def _entry(entry_id: str) -> history.Entry | None:
    folder = entry_folder(entry_id)
    return history.read_entry(folder) if folder else None


def _active_record(context) -> dict | None:
    obj = context.active_object
    record = Record.from_text(obj.get(OBJECT_PROPERTY)) if obj is not None else None
    return record.to_json() if record else None


def load_settings(scene_settings, record: dict) -> None:
    """The panel's settings, Finish settings too, from a record (unknown or out-of-range values are skipped)."""
    saved = dict(record.get("settings") or {}, **(record.get("finish") or {}))
    for param in schema.PARAMS + schema.FINISH_PARAMS:
        if param.name in saved:
            try:
                props.set_scene_value(scene_settings, param, param.validate(saved[param.name]))
            except (schema.SettingError, TypeError, ValueError):
                pass
    if record.get("seed") is not None:
        scene_settings.seed = int(record["seed"])
    if record.get("backend"):
        scene_settings.backend = record["backend"]


def _source(record: dict) -> tuple[str, str]:
    """(the image to generate from again, "") or ("", why not). Only the prepared input of the record's own
    history entry is sent: a regular file, no link, in that entry's folder directly in the results folder.
    A record is outside data (any .blend's object may carry one), so a path it names elsewhere (its job
    folder, its original image) is never read: a click would send that file under the user's key."""
    entry_id = os.path.basename(os.path.normpath(record.get("job_folder") or "/"))
    folder = entry_folder(entry_id)
    path = os.path.join(folder, history.INPUT) if folder else ""
    try:
        if path and stat.S_ISREG(os.lstat(path).st_mode):
            return path, ""
    except OSError:
        pass
    original = str(record.get("image") or "")[:200]
    hint = f"; to use its original image, open {original!r} in the TRELLIS panel" if original else ""
    if not entry_id:
        return "", f"This result names no history entry{hint}"
    if folder is None:
        return "", f"This result's history entry {entry_id[:80]!r} is not in the results folder{hint}"
    return "", f"History entry {entry_id!r} has no prepared input{hint}"


class _EntryOperator:
    bl_options = {"INTERNAL"}
    entry: bpy.props.StringProperty(options={"SKIP_SAVE"})  # folder name under the results folder

    def _entry_in(self, states: tuple, what: str) -> history.Entry | None:
        """The entry, when it is in one of the states; else reported (None)."""
        entry = _entry(self.entry)
        if entry is None or entry.state not in states:
            self.report({"ERROR"}, f"History entry {self.entry!r} has {what}")
            return None
        return entry


class TRELLIS_OT_history_import(ModalJob, _EntryOperator, bpy.types.Operator):
    """Import this result again (or for the first time, if Blender stopped before importing it)"""

    bl_idname = "trellis.history_import"
    bl_label = "Import Result"
    bl_options = {"UNDO", "INTERNAL"}

    def _start(self, context):
        """The entry's result as a job waiting to be imported: its snapshots verified off the main thread (or
        its GLBs imported again in the background Blender), then landed as a new result's are."""
        entry = self._entry_in((history.DONE, history.READY), "no importable result")
        if entry is None:
            return None
        record = entry.record
        return manager.add(Job(
            name=entry.title, backend=record.get("backend", "preview"), mode=record.get("mode", "generate"),
            settings=record.get("settings") or {}, rgba_path=os.path.join(entry.folder, history.INPUT),
            output_dir=entry.folder, image_ref=record.get("image", ""), model=record.get("model", ""),
            target_size=float(record.get("target_size") or 0.0), image_sha=record.get("image_hash", ""),
            cache_key=record.get("cache_key", ""), remote=record.get("remote"), created=record.get("created"),
            result={"files": entry.files, "seeds": record.get("seeds", []), "cost": record.get("cost"),
                    "cost_unit": record.get("cost_unit"), "info": record.get("info", {})}, state=IMPORTING,
            finish=schema.validate_finish(context.scene.trellis2.to_finish()), asset_library=prefs.asset_library()))

    def _done(self, context, job):
        if job.state == IMPORTING:
            try:
                results.import_job(context, job)
            except request.RequestError:
                pass  # import_job failed the job with its message
        if job.state != DONE:
            self.report({"ERROR"}, f"TRELLIS: {job.error or 'import cancelled'}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"TRELLIS: imported {', '.join(job.objects)} from history")
        return {"FINISHED"}


class TRELLIS_OT_history_resume(_EntryOperator, bpy.types.Operator):
    """Poll this submitted remote task again and download its result (no new request, no new charge)"""

    bl_idname = "trellis.history_resume"
    bl_label = "Fetch Result"

    def execute(self, context):
        entry = self._entry_in((history.PENDING,), "no pending remote task")
        if entry is None:
            return {"CANCELLED"}
        try:
            resume.resume_entry(entry)
        except request.RequestError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class TRELLIS_OT_history_open(_EntryOperator, bpy.types.Operator):
    """Open this result's folder in the file manager"""

    bl_idname = "trellis.history_open"
    bl_label = "Open Folder"

    def execute(self, context):
        folder = entry_folder(self.entry)
        if folder is None:
            self.report({"ERROR"}, f"No history entry {self.entry!r}")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=folder)
        return {"FINISHED"}


class TRELLIS_OT_history_settings(_EntryOperator, bpy.types.Operator):
    """Copy this result's settings, seed and backend into the TRELLIS panel"""

    bl_idname = "trellis.history_settings"
    bl_label = "Copy Settings to Panel"
    bl_options = {"UNDO", "INTERNAL"}

    def execute(self, context):
        entry = _entry(self.entry)
        if entry is None or not entry.record.get("settings"):
            self.report({"ERROR"}, "This entry has no readable settings")
            return {"CANCELLED"}
        seeds = entry.record.get("seeds") or [None]
        load_settings(context.scene.trellis2, dict(entry.record, seed=seeds[0]))
        return {"FINISHED"}


class TRELLIS_OT_history_delete(_EntryOperator, bpy.types.Operator):
    """Delete this entry's folder (GLB files, input, record) from disk"""

    bl_idname = "trellis.history_delete"
    bl_label = "Delete History Entry"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        entry = _entry(self.entry)
        if entry is None:
            self.report({"ERROR"}, f"No history entry {self.entry!r} in the results folder")
            return {"CANCELLED"}
        if any(j.output_dir == entry.folder for j in manager.active()):
            self.report({"ERROR"}, "A running job uses this folder")
            return {"CANCELLED"}
        if not history.history.delete(entry):
            pid = entry_lock.owner(entry.folder)[0]
            self.report({"ERROR"}, f"Another Blender (process {pid or '?'}) is using {entry.id}: not deleted")
            return {"CANCELLED"}
        return {"FINISHED"}


class TRELLIS_OT_history_prune(bpy.types.Operator):
    """Delete the oldest results until the history fits the size cap of the preferences"""

    bl_idname = "trellis.history_prune"
    bl_label = "Prune History Now"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        p = prefs.get()
        if not p or p.history_cap_gb <= 0:
            self.report({"INFO"}, "No size cap set (preferences: Keep at Most)")
            return {"CANCELLED"}
        keep = {j.output_dir for j in manager.active()}
        deleted = history.history.prune(prefs.jobs_root(), int(p.history_cap_gb * 1024 ** 3), keep)
        self.report({"INFO"}, f"TRELLIS: deleted {len(deleted)} old results")
        return {"FINISHED"}


class _ResultOperator:
    @classmethod
    def poll(cls, context):
        if _active_record(context) is None:
            cls.poll_message_set("Select an object generated by TRELLIS")
            return False
        return True


class TRELLIS_OT_regenerate(_ResultOperator, bpy.types.Operator):
    """Generate the selected result again with the same image, settings and seed: answered from history
    at no cost while its entry exists"""

    bl_idname = "trellis.regenerate"
    bl_label = "Regenerate"

    def execute(self, context):
        record = _active_record(context)
        settings = dict(record.get("settings") or {}, random_seed=False, seed=record.get("seed", 0),
                        number_results=1)
        return _generate(self, record, settings)


class TRELLIS_OT_variations(_ResultOperator, bpy.types.Operator):
    """Generate new variations of the selected result: same image and settings, new seeds, side by side"""

    bl_idname = "trellis.variations"
    bl_label = "Variations"

    count: bpy.props.IntProperty(name="Variations", default=4, min=1, max=4, options={"SKIP_SAVE"})

    def execute(self, context):
        record = _active_record(context)
        settings = dict(record.get("settings") or {}, random_seed=True, number_results=self.count)
        return _generate(self, record, settings)


class TRELLIS_OT_load_settings(_ResultOperator, bpy.types.Operator):
    """Load the selected result's settings, seed and backend into the TRELLIS panel"""

    bl_idname = "trellis.load_settings"
    bl_label = "Load Settings"
    bl_options = {"UNDO"}

    def execute(self, context):
        load_settings(context.scene.trellis2, _active_record(context))
        return {"FINISHED"}


def _generate(op, record: dict, settings: dict) -> set:
    image, problem = _source(record)
    if not image:
        op.report({"ERROR"}, problem)
        return {"CANCELLED"}
    keywords = {k: v for k, v in settings.items() if k in schema.BY_NAME}
    try:
        keywords = schema.validate(keywords)
    except schema.SettingError as exc:
        op.report({"ERROR"}, f"The stored settings are invalid: {exc}")
        return {"CANCELLED"}
    try:  # finished as this result was (where it says how)
        keywords.update(schema.validate_finish(record.get("finish") or {}, partial=True))
    except schema.SettingError:
        pass  # unreadable finish settings: the panel's
    backend = record.get("backend") or "preview"
    return bpy.ops.trellis.generate(blocking.operator_mode(), image=image, backend=backend,
                                    target_size=float(record.get("target_size") or 0.0), **keywords)


classes = (TRELLIS_OT_history_import, TRELLIS_OT_history_resume, TRELLIS_OT_history_open, TRELLIS_OT_history_settings,
           TRELLIS_OT_history_delete, TRELLIS_OT_history_prune, TRELLIS_OT_regenerate, TRELLIS_OT_variations,
           TRELLIS_OT_load_settings)
