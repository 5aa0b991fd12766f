"""A finished job's results: its record persisted (record.json, before anything else can go wrong),
its GLBs imported with Blender's glTF importer and placed, the record on each root object."""
from __future__ import annotations

import functools
import json
import os
import shutil
import time
import tomllib

import bpy

from ..backend import glb
from . import finish, finishing, history, importer, meshfile, prefs, spending
from .landing import Landing
from .record import OBJECT_PROPERTY, Record
from .paths import EXTENSION_ROOT
from .queue import DONE, Job, manager, submit_io
from .request import RequestError


@functools.cache
def addon_version() -> str:
    with open(os.path.join(EXTENSION_ROOT, "blender_manifest.toml"), "rb") as f:
        return tomllib.load(f)["version"]


def persist_record(job: Job, wait: bool = True) -> None:
    """record.json in the job's folder: synchronously (wait: background runs) so that it is on disk before
    the import starts, or queued first on the file thread (the UI, which then appends meanwhile; the rewrite
    with the measured quality). Holds what was sent and what came back, never a key."""
    if job.from_cache:
        return  # the entry it came from has its record
    record = job.record()
    record.addon_version, record.finished = addon_version(), time.time()
    if wait:
        _write_record(job.output_dir, record.to_json())
    else:
        submit_io(_write_record, job.output_dir, record.to_json())


def _write_record(folder: str, data: dict) -> None:
    history.write_json_atomic(os.path.join(folder, history.RECORD), data)
    history.history.invalidate()


def import_job(context, job: Job) -> list[bpy.types.Object]:
    """Import every GLB of a finished job and finish it (job.finish); on an import failure nothing stays
    half-imported. A result the background Blender finished comes as its finished snapshot (appended);
    otherwise it is finished here, after placing. A failed finishing step leaves the result as imported
    (or as its last good stage left it) and the job says which step failed: nothing is lost."""
    created: list[bpy.types.Object] = []
    persist_record(job, wait=bpy.app.background)  # the result is safe whatever happens next (in the UI the
    # file thread writes it at once: an fsync on the main thread can wait for the background Blender's writes)
    plan = finishing.specs(job)
    built = job.built  # the background Blender's answer (blend_worker.import_task), checked by the builder
    done_there = built.get("qa") or []
    try:
        groups, extras, qa = [], [], []
        for index, path in enumerate(job.result["files"]):
            try:  # a history file may have been edited: nothing outside the GLB is ever read
                glb.check_self_contained(path)
            except ValueError as exc:
                raise RuntimeError(f"{os.path.basename(path)}: {exc}") from None
            objects = importer.import_glb(context, path, snapshot=True, key=snapshot_key(job, index, plan),
                                          verified=built.get("verified"), landing=job.landings.get(path))
            created.extend(objects)
            main, more, measured = finishing.split(objects)
            if measured is None and index < len(done_there) and "failed" in (done_there[index] or {}):
                measured = done_there[index]  # finishing failed there: the raw result, not finished again here
            groups.append(main)
            extras.append(more)
            qa.append(measured)
        record = job.record()
        record.files, record.job_folder = list(job.result["files"]), job.output_dir
        record.addon_version = addon_version()
        anchor = bpy.data.objects.get(job.anchor) if job.anchor else None
        sizes = [0.0 if m is not None and "failed" not in m else job.target_size for m in qa]
        roots = importer.place_results(context, groups, job.name, record, sizes, anchor=anchor, followers=extras)
        finishing.adopt([o for more in extras for o in more], importer.trellis_collection(context.scene))
    except Exception as exc:
        for obj in created:
            if obj.name in bpy.data.objects:
                bpy.data.objects.remove(obj, do_unlink=True)
        job.fail(f"Import failed: {exc}")
        raise RequestError(job.error) from None
    problems = []
    if plan:
        for index, objects in enumerate(groups):
            if qa[index] is None:
                qa[index], more = _finish_here(context, job, objects, plan[index], problems)
                extras[index] += more
            elif "failed" in qa[index]:
                problems.append(qa[index]["failed"])
        job.qa = [m or {} for m in qa]
        _record_qa(job, roots)
        job.library_files += built.get("libraries") or []
        if job.library_files:
            _register_library(job.asset_library)
    job.objects = [o.name for o in roots]
    job.parts = [[o.name for o in objects + more] for objects, more in zip(groups, extras)]
    text = f"Done: {', '.join(job.objects)}" + (" (from cache)" if job.from_cache else "")
    if problems:
        text += f"; finishing failed at {problems[0]} (the result is kept as imported)"
    job.set_finished(DONE, text)
    prune_history()
    return roots


def snapshot_key(job: Job, index: int, plan: list | None) -> str:
    """Which snapshot of result `index` is appended: a retexture's transfer, a finish setting's, or the raw one."""
    return meshfile.KEY if job.mesh_source else (plan[index]["key"] if plan else "")


def land_tick(job: Job) -> bool:
    """One of the UI's modal operator's ticks ahead of import_job: the next step of each result's landing
    (landing.py: appended into no scene, its images warmed and normals made where a viewport draws them), so
    that the tick that places it does not do it all; whether it did anything. Only snapshots the builder
    verified are landed ahead."""
    plan, verified = finishing.specs(job), job.built.get("verified") or {}
    for index, path in enumerate((job.result or {}).get("files") or []):
        if path not in job.landings:
            try:
                snap = importer.chosen_snapshot(path, snapshot_key(job, index, plan))
            except OSError:  # the GLB went away: import_job says so
                return False
            if snap not in verified:
                continue
            job.landings[path] = Landing(snap, verified[snap])
        if job.landings[path].tick():
            return True
    return False


def drop_landings(job: Job) -> None:
    """Remove what the ticks ahead appended that no placing took (the job failed or was cancelled between)."""
    for landing in job.landings.values():
        landing.drop()
    job.landings.clear()


def _finish_here(context, job: Job, objects: list, spec: dict, problems: list) -> tuple[dict, list]:
    """Finish one placed result on this thread (background runs, the CLI, the fallback): (qa, extras)."""
    def progress(text, fraction):
        job.text, job.stage, job.fraction = text, "finish", fraction

    try:
        measured, extras, library = finishing.run(context, objects, spec, progress=progress)
    except finish.FinishError as exc:
        problems.append(str(exc))
        print(f"TRELLIS: finishing {spec['name']} failed at {exc}")
        return {"failed": str(exc)}, []
    if library:
        job.library_files.append(library)
    return measured, extras


def _register_library(folder: str) -> None:
    """The asset library folder in Blender's preferences, once (kept for later sessions)."""
    try:
        finish.register_library(folder)
    except Exception as exc:  # noqa: BLE001 (the files are written: only the registration is missing)
        print(f"TRELLIS: could not register {folder} as an asset library: {exc}")


def _record_qa(job: Job, roots: list) -> None:
    """The measured quality on each result's object and in the History record."""
    for root in roots:
        record = Record.from_text(root.get(OBJECT_PROPERTY))
        if record is not None:
            record.qa = job.qa
            root[OBJECT_PROPERTY] = json.dumps(record.to_json())
    persist_record(job, wait=bpy.app.background)  # in the UI on the file thread: the main thread only appends


def finish_quote(job: Job) -> str:
    """Close a quote job that has its answer (nothing to import; its folder goes): "Quote: ..." as its
    text (fits the sidebar). Returns the message naming the provider."""
    amount = spending.quote_amount(job)
    job.set_finished(DONE, f"Quote: {amount}")
    submit_io(shutil.rmtree, job.output_dir, True)  # after the record write queued before it
    return f"{job.info.short_label} quote: {amount}"


def prune_history() -> None:
    """Apply the history size cap (preferences) in the background, keeping unfinished jobs."""
    p = prefs.get()
    if not p or p.history_cap_gb <= 0:
        return
    root, cap = prefs.jobs_root(), int(p.history_cap_gb * 1024 ** 3)
    keep = {j.output_dir for j in manager.active()}
    submit_io(history.history.prune, root, cap, keep)
