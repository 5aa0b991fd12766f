"""A finished job's results: its record persisted (record.json, before anything else can go wrong),
its GLBs imported with Blender's glTF importer and placed, the record on each root object."""
from __future__ import annotations

import functools
import os
import shutil
import time
import tomllib

import bpy

from ..backend import glb
from . import history, importer, prefs, spending
from .paths import EXTENSION_ROOT
from .queue import DONE, Job, manager, submit_io
from .request import RequestError


@functools.cache
def addon_version() -> str:
    with open(os.path.join(EXTENSION_ROOT, "blender_manifest.toml"), "rb") as f:
        return tomllib.load(f)["version"]


def persist_record(job: Job) -> None:
    """record.json in the job's folder, synchronously: on disk before the import starts. Holds what
    was sent and what came back, never a key."""
    if job.from_cache:
        return  # the entry it came from has its record
    record = job.record()
    record.addon_version, record.finished = addon_version(), time.time()
    history.write_json_atomic(os.path.join(job.output_dir, history.RECORD), record.to_json())
    history.history.invalidate()


def import_job(context, job: Job) -> list[bpy.types.Object]:
    """Import every GLB of a finished job; on failure nothing stays half-imported."""
    created: list[bpy.types.Object] = []
    persist_record(job)  # the result is safe whatever happens next
    try:
        groups = []
        for path in job.result["files"]:
            try:  # a history file may have been edited: nothing outside the GLB is ever read
                glb.check_self_contained(path)
            except ValueError as exc:
                raise RuntimeError(f"{os.path.basename(path)}: {exc}") from None
            objects = importer.import_glb(context, path, snapshot=True)
            created.extend(objects)
            groups.append(objects)
        record = job.record()
        record.files, record.job_folder = list(job.result["files"]), job.output_dir
        record.addon_version = addon_version()
        anchor = bpy.data.objects.get(job.anchor) if job.anchor else None
        roots = importer.place_results(context, groups, job.name, record, job.target_size, anchor=anchor)
    except Exception as exc:
        for obj in created:
            if obj.name in bpy.data.objects:
                bpy.data.objects.remove(obj, do_unlink=True)
        job.fail(f"Import failed: {exc}")
        raise RequestError(job.error) from None
    job.objects = [o.name for o in roots]
    job.set_finished(DONE, f"Done: {', '.join(job.objects)}" + (" (from cache)" if job.from_cache else ""))
    prune_history()
    return roots


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
