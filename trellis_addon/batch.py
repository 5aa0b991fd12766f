"""`trellis batch`: every image of a folder or glob through the same queue and workers as the UI, a job
at a time or --jobs at once, one output and one manifest line per input (resumable). With import workers,
background Blenders read the images and import and finish the results; this Blender then only appends
each finished result and exports it."""
from __future__ import annotations

import glob
import hashlib
import os
import sys
import time

import bpy

from . import blocking, request, results, spending
from .image_input import IMAGE_EXTENSIONS
from .outputs import Manifest, clear_results, export_results, read_manifest
from .queue import CANCELLED, FAILED, IMPORTING, flush_records, manager

MANIFEST = "manifest.jsonl"


def find_inputs(pattern: str) -> list[str]:
    if os.path.isdir(pattern):
        paths = [os.path.join(pattern, n) for n in os.listdir(pattern) if not n.startswith(".")]
        paths = [p for p in paths if os.path.isfile(p)]
    else:
        paths = [p for p in glob.glob(pattern) if os.path.isfile(p)]
    return sorted(os.path.abspath(p) for p in paths)


def output_names(paths: list[str]) -> dict[str, str]:
    """input -> output stem, made from the whole input list at once, so the same inputs get the same names on
    every run whatever order or --jobs they run in, and distinct inputs distinct names (letter case aside:
    Windows and macOS do not tell `Chair` from `chair`). Each input gets the first of these no other input shares:
    its file name without the extension (`chair`); with the extension (`chair.png`, `chair.jpg` ->
    `chair_png`, `chair_jpg`); its path from the folder the inputs sharing that name have in common, folders
    and dots as "_" (`a/chair.png`, `b/chair.png` -> `a_chair_png`, `b_chair_png`); that path with 8 hex
    digits of a hash of the input's path from the folder all inputs have in common."""
    root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    names = {p: os.path.splitext(os.path.basename(p))[0] for p in paths}
    for level in range(3):
        sharing: dict[str, list[str]] = {}
        for p in paths:
            sharing.setdefault(names[p].casefold(), []).append(p)
        for group in (g for g in sharing.values() if len(g) > 1):
            names.update({p: _respelled(level, p, names[p], group, root) for p in group})
    return names


def _respelled(level: int, path: str, name: str, group: list[str], root: str) -> str:
    """output_names' next spelling of an input's name that `group` of inputs shares."""
    if level == 0:
        return f"{name}_{os.path.splitext(path)[1][1:].lower()}"
    if level == 1:
        return _flat(os.path.relpath(path, os.path.commonpath([os.path.dirname(p) for p in group])))
    return f"{name}_{hashlib.sha256(_flat(os.path.relpath(path, root)).encode()).hexdigest()[:8]}"


def _flat(relative: str) -> str:
    return relative.replace(os.sep, "_").replace("/", "_").replace(".", "_")


def run(args, wanted: dict) -> int:
    """A batch: background Blenders read the images and import and finish the results (this Blender then only
    appends each finished result and exports it)."""
    builder = manager.builder
    workers = args.import_workers if args.import_workers is not None else default_import_workers(args.jobs)
    saved = builder.size
    builder.size = workers
    try:
        return _run(args, wanted)
    finally:
        builder.stop()
        builder.size = saved


def default_import_workers(jobs: int) -> int:
    """One background Blender per job, at most one per core: more only share the cores (bench/README.md,
    bench/batch_parallel.py)."""
    return max(1, min(jobs, os.cpu_count() or 1))


def _run(args, wanted: dict) -> int:
    outdir = os.path.abspath(args.output)
    if not os.path.exists(args.inputs) and not glob.has_magic(args.inputs):
        print(f"trellis: error: {args.inputs} does not exist", file=sys.stderr)
        return 2
    found = find_inputs(args.inputs)
    if not found:
        print(f"trellis: no files in {args.inputs}: nothing to do", file=sys.stderr)
        return 1
    os.makedirs(outdir, exist_ok=True)
    manager.prewarm(wanted["backend"])
    names = output_names(found)
    manifest = Manifest(os.path.join(outdir, MANIFEST))
    previous = read_manifest(manifest.path) if args.resume else {}
    pending, counts, costs, started = [], {"done": 0, "failed": 0, "unsupported": 0, "resumed": 0}, {}, time.time()
    for path in found:
        old = previous.get(path)
        if old and old.get("state") == "done" and all(os.path.isfile(o) for o in old.get("output") or [None]):
            counts["resumed"] += 1
            print(f"trellis: {os.path.basename(path)}: done earlier, skipped (--resume)")
        elif not path.lower().endswith(IMAGE_EXTENSIONS):
            counts["unsupported"] += 1
            reason = f"not an image type ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
            manifest.write(input=path, output=[], state="skipped", error=reason)
            print(f"trellis: {os.path.basename(path)}: skipped, {reason}", file=sys.stderr)
        else:
            pending.append(path)
    total, running, finished_count = len(pending), {}, 0

    def record(path, job, error=None, outputs=()):
        nonlocal finished_count
        finished_count += 1
        result = (job.result or {}) if job else {}
        if result.get("cost"):
            costs[job.cost_unit] = costs.get(job.cost_unit, 0.0) + float(result["cost"])
        state = "done" if error is None else "failed"
        counts[state] += 1
        manifest.write(input=path, output=list(outputs), state=state, backend=wanted["backend"],
                       settings=job.settings if job else None, seed=result.get("seeds"),
                       cost=result.get("cost"), cost_unit=job.cost_unit if job and result else None,
                       qa=job.qa if job else [], asset_library_files=job.library_files if job else [],
                       duration=round(job.elapsed, 3) if job else 0.0, error=error,
                       job_folder=job.output_dir if job else None, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        where = f" -> {', '.join(outputs)}" if outputs else f": FAILED: {error}"
        took = f" in {job.elapsed:.1f} s" if job else ""
        print(f"trellis: [{finished_count}/{total}] {os.path.basename(path)}{took}{where}", flush=True)

    interrupted = False
    try:
        while pending or running:
            while pending and len(running) < 2 * args.jobs:  # a few prepared ahead, not the whole batch
                path = pending.pop(0)
                settings = wanted["settings"]
                if settings["random_seed"]:  # a new seed per image
                    settings = request.resolve_settings(settings, {})
                try:
                    job = request.prepare(request.Request(
                        image=path, backend=wanted["backend"], settings=settings, target_size=wanted["target_size"],
                        keep_image=False, force_new=args.force_new, finish=wanted["finish"],
                        asset_library=wanted["asset_library"]))
                except request.RequestError as exc:
                    record(path, None, error=str(exc))
                    continue
                manager.enqueue(job, args.jobs)
                running[job.id] = (path, job)
            manager.poll_all(args.jobs)
            for job_id, (path, job) in list(running.items()):
                if job.state == IMPORTING:
                    try:
                        results.import_job(bpy.context, job)
                        outputs = export_results(job, os.path.join(outdir, f"{names[path]}.{args.format}"),
                                                 args.export)
                    except request.RequestError:
                        pass  # import_job failed the job with its message
                    except (ValueError, RuntimeError, OSError) as exc:
                        job.fail(f"Could not write the output: {exc}")
                    else:
                        record(path, job, outputs=outputs)
                    finally:
                        clear_results(job)
                if job.state in (FAILED, CANCELLED):
                    record(path, job, error=job.error or job.text)
                if job.is_finished:
                    del running[job_id]
            time.sleep(0.05)
            blocking.check_interrupt()  # a Ctrl-C the garbage collector swallowed
    except KeyboardInterrupt:
        interrupted = True
        for _, job in running.values():
            job.cancel()
    finally:
        manifest.close()
        flush_records()
    left = len(pending) + len(running) if interrupted else 0
    summary = (f"trellis: batch {'interrupted' if interrupted else 'finished'} in {time.time() - started:.1f} s: "
               f"{counts['done']} done, {counts['failed']} failed, {counts['unsupported']} unsupported skipped, "
               f"{counts['resumed']} done earlier" + (f", {left} not run (rerun with --resume)" if left else "")
               + (f"; cost {spending.summary(costs)}" if costs else "") + f"; manifest {manifest.path}")
    print(summary, flush=True)
    if interrupted:
        return 130
    return 0 if counts["failed"] == 0 else 1
