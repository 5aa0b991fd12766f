"""Remote tasks submitted before Blender stopped: polled again on the next start, never paid twice.

A history entry whose job.json names a remote task but has no result is PENDING (whatever the job
ended in, unless the provider said the task failed). resume_pending() starts one job per such entry in
the same folder (except those the user cancelled: History's Fetch Result), telling the worker to poll
that task instead of submitting; the result lands in the entry (result.json) and History offers it
for import. An entry another Blender holds (entry_lock) is left to it.
"""
from __future__ import annotations

import os

import bpy

from ..backend import registry, schema
from . import entry_lock, history, prefs, request
from .queue import IMPORTING, DONE, Job, manager, submit_io

POLL_SECONDS = 0.5
_resumed: list[Job] = []


def resume_entry(entry: history.Entry) -> Job:
    """Start polling the entry's remote task again; raises request.RequestError."""
    record = entry.record
    backend = record.get("backend", "")
    remote = record.get("remote") or {}
    tasks = [t for t in record.get("remote_tasks") or [remote] if isinstance(t, dict) and t.get("task_id")]
    info = registry.BY_ID.get(backend)
    if info is None or not info.needs_network or not tasks:  # hosted backends poll earlier tasks
        raise request.RequestError(f"{entry.id}: a {backend or 'unknown'} task cannot be resumed")
    if any(j.output_dir == entry.folder and not j.is_finished for j in manager.jobs):
        raise request.RequestError(f"{entry.id} is already being resumed")
    held_before = entry_lock.holds(entry.folder)
    if not entry_lock.hold(entry.folder):
        pid = entry_lock.owner(entry.folder)[0]
        raise request.RequestError(f"{entry.id} is in use by another Blender (process {pid or '?'})")
    try:
        job = _job(entry, backend, tasks)
    except request.RequestError:
        if not held_before:
            entry_lock.release(entry.folder)
        raise
    manager.enqueue(job)
    _resumed.append(job)
    if not bpy.app.timers.is_registered(_drive):
        bpy.app.timers.register(_drive, first_interval=POLL_SECONDS)
    return job


def _job(entry: history.Entry, backend: str, tasks: list[dict]) -> Job:
    record = entry.record
    checked = request.Request(image=os.path.join(entry.folder, history.INPUT), backend=backend,
                              settings=record.get("settings") or {}, mode=record.get("mode") or "generate",
                              target_size=float(record.get("target_size") or 0.0))
    options, secrets = request.access(checked)
    return Job(name=record.get("name") or entry.id, backend=backend, settings=checked.settings, mode=checked.mode,
               rgba_path=checked.image, output_dir=entry.folder, image_ref=record.get("image", ""),
               target_size=checked.target_size, options=dict(options, resume_tasks=tasks), secrets=secrets,
               model=checked.model, image_sha=record.get("image_hash", ""), cache_key=record.get("cache_key", ""),
               created=record.get("created"), remote=tasks[-1], remote_tasks=tasks, finish=_finish(record),
               asset_library=prefs.asset_library())


def _finish(record) -> dict | None:
    """The finish settings the job was asked with (None: none, or unreadable ones: imported as it came)."""
    try:
        return schema.validate_finish(record.get("finish")) if record.get("finish") else None
    except schema.SettingError:
        return None


def resume_pending(found: list[history.Entry] | None = None) -> list[Job]:
    """Resume every pending remote task of the history (or of `found`, a scan made elsewhere), except
    those the user cancelled (History offers Fetch Result for them); entries that cannot be resumed
    (another Blender holds them, no key) are skipped."""
    if found is None:
        history.history.invalidate()
        found = history.history.entries(prefs.jobs_root())
    started = []
    for entry in found:
        if entry.state == history.PENDING and not entry.cancelled:
            try:
                started.append(resume_entry(entry))
            except request.RequestError as exc:
                print(f"TRELLIS: not resumed: {exc}")
    return started


def _pending(root: str) -> list[history.Entry]:
    return [e for e in history.History.scan(root) if e.state == history.PENDING]


def _drive():
    """Timer: poll resumed jobs; a downloaded result stays in history, not imported (History offers it)."""
    manager.poll_all()
    for job in list(_resumed):
        if job.state == IMPORTING:
            job.set_finished(DONE, "Downloaded: import it from History")
        if job.is_finished:
            _resumed.remove(job)
            history.history.invalidate()
    return POLL_SECONDS if _resumed else None


_scan = None  # the start-up scan running on the file thread


def _on_start():
    if bpy.app.background:  # scripts and batches never start network work implicitly
        return None
    return scan_then_resume()


def scan_then_resume():
    """Timer step: scan the history on the file thread, then resume what it found here (main thread).
    Returns the seconds until the next step, None when done."""
    global _scan
    if _scan is None:
        _scan = submit_io(_pending, prefs.jobs_root())
        if _scan is None:
            return None
    if not _scan.done():
        return POLL_SECONDS
    scan, _scan = _scan, None
    if scan.exception() is None and scan.result():
        resume_pending(scan.result())
    return None


def register():
    bpy.app.timers.register(_on_start, first_interval=2.0)


def unregister():
    for fn in (_on_start, _drive):
        if bpy.app.timers.is_registered(fn):
            bpy.app.timers.unregister(fn)
