"""From the user's request to a running job, and from a finished job to objects in the scene."""
from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import time
import tomllib
import uuid

import bpy
import numpy as np

from ..backend import protocol, providers, registry, schema
from . import history, image_input, importer, jobs, prefs


def addon_version() -> str:
    with open(os.path.join(jobs.EXTENSION_ROOT, "blender_manifest.toml"), "rb") as f:
        return tomllib.load(f)["version"]


class RequestError(ValueError):
    """Bad input caught before any worker starts."""


def resolve_settings(scene_settings: dict, overrides: dict) -> dict:
    """Scene settings with script keywords on top, validated, seed resolved."""
    settings = dict(scene_settings)
    settings.update(overrides)
    if "seed" in overrides and "random_seed" not in overrides:
        settings["random_seed"] = False  # an explicit seed means "use this seed"
    try:
        settings = schema.validate(settings)
    except schema.SettingError as exc:
        raise RequestError(f"Invalid setting {exc}") from None
    if settings["random_seed"]:
        settings["seed"] = random.randint(0, schema.INT32_MAX)
    return settings


def model_id(backend: str) -> str:
    """What model answers on this backend (part of the cache key)."""
    if backend == "local":
        return prefs.local_model()
    return registry.BY_ID[backend].model or backend


def _read_image(image, keep_image: bool) -> tuple[np.ndarray, str, str]:
    """(rgba, display name, reference) for a datablock, a file path, or a history entry's input_rgba.npy."""
    if isinstance(image, str) and image.endswith(".npy") and os.path.isfile(image):  # a history entry
        record = history.read_entry(os.path.dirname(image))
        name = record.title if record else "image"
        return np.load(image, allow_pickle=False), name, (record.record.get("image") if record else "") or image
    known = set(bpy.data.images)
    img = None
    try:
        img = image_input.resolve(image)
        name = image_input.display_name(img)
        image_ref = bpy.path.abspath(img.filepath) if img.filepath else img.name
        rgba = image_input.to_rgba8(img)
        image_input.check_foreground(rgba, name)
    except image_input.InputError as exc:
        raise RequestError(str(exc)) from None
    finally:
        if not keep_image and img is not None and img not in known:
            bpy.data.images.remove(img)
    return rgba, name, image_ref


def _cache_lookup(rgba, backend: str, settings: dict, force_new: bool, mode: str):
    """(image hash, cache key, the history entry that answers this request or None)"""
    image_sha = history.image_hash(rgba)
    key = history.cache_key(image_sha, backend, model_id(backend), settings)
    fresh = settings["random_seed"] or force_new or mode != "generate"
    return image_sha, key, None if fresh else history.history.find_cached(prefs.jobs_root(), key)


def answered_from_cache(*, image, backend: str, settings: dict, force_new: bool = False, **_) -> bool:
    """Would this request be served from history (no cost)? False when it cannot be read."""
    if settings.get("random_seed") or force_new or backend.lower() not in registry.BY_ID:
        return False
    try:
        rgba = _read_image(image, keep_image=True)[0]
    except RequestError:
        return False
    return _cache_lookup(rgba, backend.lower(), settings, False, "generate")[2] is not None


def prepare_job(*, image, backend: str, settings: dict, target_size: float = 0.0, anchor: str = "",
                keep_image: bool = True, force_new: bool = False, mode: str = "generate",
                quote: bool = False) -> jobs.Job:
    """Check everything, write the prepared image, return an unstarted Job. Raises RequestError.
    A request with an explicit seed that history already answered comes back as a job served from
    the cache (no worker, no network, no cost) unless force_new. anchor: an object the result is placed
    next to. keep_image=False removes an image this call loaded from a file once read (batches).
    quote: ask the provider what the request would cost instead (nothing generated; see finish_quote)."""
    backend = backend.lower()
    if backend not in registry.BY_ID:
        raise RequestError(f"Unknown backend {backend!r} (available: {', '.join(registry.BY_ID)})")
    if target_size < 0:
        raise RequestError(f"Invalid setting target_size: {target_size} must be 0 (keep) or a length > 0")
    info = registry.BY_ID[backend]
    if mode not in info.modes:
        able = ", ".join(b.label for b in registry.BACKENDS if mode in b.modes)
        raise RequestError(f"{info.label} cannot {mode} (use {able})")
    if quote and not info.can_quote:
        able = ", ".join(b.label for b in registry.BACKENDS if b.can_quote)
        raise RequestError(f"{info.label} gives no cost quote before generating ({able} does)")
    try:
        providers.check(backend, settings, mode)
    except schema.SettingError as exc:
        raise RequestError(f"Invalid setting {exc}") from None
    rgba, name, image_ref = _read_image(image, keep_image)
    image_sha, key, cached = _cache_lookup(rgba, backend, settings, force_new or quote, mode)
    if cached is not None:
        job = jobs.Job(name=name, backend=backend, settings=settings, output_dir=cached.folder,
                       rgba_path=os.path.join(cached.folder, history.INPUT), image_ref=image_ref,
                       target_size=target_size)
        job.anchor, job.image_sha, job.cache_key, job.from_cache = anchor, image_sha, key, cached.id
        job.result = {"files": cached.files, "seeds": cached.record.get("seeds", []), "cost": 0.0}
        return job
    options, secrets = {}, {}
    if backend == "local":
        try:
            _, options = prefs.local_setup()
        except prefs.AccessError as exc:
            raise RequestError(f"{info.label}: {exc}") from None
    if info.needs_network:
        try:
            options, secrets = prefs.remote_access(backend)
        except prefs.AccessError as exc:
            raise RequestError(f"{info.label}: {exc}") from None
        if not quote:
            check_session_cap(info, settings, mode)
    if quote:
        options["quote_only"] = True
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "image"
    root = os.path.join(prefs.jobs_root(), QUOTES) if quote else prefs.jobs_root()  # hidden from history
    folder = os.path.join(root, f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}")
    os.makedirs(folder, exist_ok=True)
    rgba_path = os.path.join(folder, history.INPUT)
    np.save(rgba_path, rgba)
    if not quote:
        history.write_thumbnail(rgba, os.path.join(folder, history.THUMB))
    job = jobs.Job(name=name, backend=backend, settings=settings, rgba_path=rgba_path, output_dir=folder,
                   image_ref=image_ref, target_size=target_size, options=options, secrets=secrets, mode=mode)
    job.anchor, job.image_sha, job.cache_key = anchor, image_sha, key
    return job


QUOTES = ".quotes"  # quote jobs' folders, under the jobs folder; removed once answered


def quote_amount(job: jobs.Job) -> str:
    """"24 CU (2 × 12)": the total, and per result when there are several."""
    info = job.result.get("info", {})
    count = int(info.get("number_results") or 1)
    each = f" ({count} × {info['cost_per_result']:g})" if count > 1 and "cost_per_result" in info else ""
    return f"{job.cost:g} {job.cost_unit}{each}"


def finish_quote(job: jobs.Job) -> str:
    """Close a quote job that has its answer (nothing to import; its folder goes): "Quote: ..." as its
    text (fits the sidebar). Returns the message naming the provider."""
    amount = quote_amount(job)
    job.set_finished(jobs.DONE, f"Quote: {amount}")
    jobs.submit_io(shutil.rmtree, job.output_dir, True)  # after the record write queued before it
    return f"{registry.BY_ID[job.backend].label.split(' (')[0]} quote: {amount}"


def persist_record(job: jobs.Job) -> None:
    """record.json in the job's folder, synchronously: on disk before the import starts. Holds what
    was sent and what came back, never a key."""
    if job.from_cache:
        return  # the entry it came from has its record
    record = dict(job.record(), files=[os.path.relpath(f, job.output_dir) for f in job.result["files"]],
                  image_hash=job.image_sha, cache_key=job.cache_key, model=model_id(job.backend),
                  addon_version=addon_version(), finished=time.time(), info=job.result.get("info", {}))
    history.write_json_atomic(os.path.join(job.output_dir, history.RECORD), record)
    history.history.invalidate()


def prune_history() -> None:
    """Apply the history size cap (preferences) in the background, keeping unfinished jobs."""
    p = prefs.get()
    if not p or p.history_cap_gb <= 0:
        return
    root, cap = prefs.jobs_root(), int(p.history_cap_gb * 1024 ** 3)
    keep = {j.output_dir for j in jobs.manager.active()}
    jobs.submit_io(history.history.prune, root, cap, keep)


def enqueue(job: jobs.Job, max_parallel: int | None = None) -> jobs.Job:
    """Queue a prepared job and start it if a slot is free (a cached answer goes straight to import)."""
    jobs.manager.add(job, launch=lambda: worker_for(job))
    if job.from_cache:
        job.state, job.fraction, job.text = jobs.IMPORTING, 1.0, "From cache"
    pump(max_parallel)
    return job


def _cap(max_parallel: int | None) -> int | None:
    p = prefs.get()
    return max_parallel or (p.max_parallel_jobs if p else None)


def pump(max_parallel: int | None = None) -> None:
    """Start queued jobs as slots free up (cap: the argument, else the preferences)."""
    jobs.manager.pump(_cap(max_parallel))


def wait(job: jobs.Job, max_parallel: int | None = None) -> None:
    """Block until the job is ready to import or finished, printing a line when its step changes
    (scripts, background mode, the command line). KeyboardInterrupt propagates."""
    last = ""
    while not (job.state == jobs.IMPORTING or job.is_finished):
        jobs.manager.poll_all(_cap(max_parallel))
        line = progress_line(job)
        if line.split("[")[0] != last.split("[")[0]:
            print(line, flush=True)
            last = line
        time.sleep(0.05)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_interrupts():
    """While Blender blocks on jobs, Ctrl-C raises KeyboardInterrupt. `blender -b` handles SIGINT itself
    (a first press only flags a break), which would let a job or a batch run on."""
    try:
        previous = signal.signal(signal.SIGINT, _raise_interrupt)
    except (ValueError, OSError):  # not the main thread: leave it alone
        previous = False
    try:
        yield
    finally:
        if previous is not False:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def operator_mode() -> str:
    """How to call trellis.generate from another operator: modal with a window, blocking without."""
    return "EXEC_DEFAULT" if bpy.app.background or bpy.context.window is None else "INVOKE_DEFAULT"


def check_session_cap(info: registry.BackendInfo, settings: dict, mode: str = "generate") -> None:
    """Refuse a hosted job that would take the session past its cap: USD (Session Cap) or the backend's
    credits (Credit Cap; estimated from the last price the provider reported)."""
    p = prefs.get()
    if info.cost_unit == "USD":
        cap, spent, estimate = (p.session_cap if p else 0.0), jobs.manager.session_cost, info.estimate_cost(settings)
        if cap and spent + estimate > cap:
            raise RequestError(f"Session spending cap ${cap:.2f} reached (spent ${spent:.2f}, this job about "
                               f"${estimate:.2f}): raise it in the add-on preferences")
        return
    cap, spent = (p.session_credit_cap if p else 0.0), jobs.manager.session_credits.get(info.cost_unit, 0.0)
    price = jobs.manager.credit_prices.get((info.id, mode, settings["resolution"]), 0.0)
    estimate = price * settings["number_results"]
    if cap and spent + estimate > cap:
        unit = info.cost_unit
        raise RequestError(f"Session credit cap {cap:g} {unit} reached (spent {spent:g} {unit}, this job about "
                           f"{estimate:g} {unit}): raise it in the add-on preferences")


def needs_cost_confirmation(backend: str, settings: dict) -> float:
    """The estimated cost when it is above the preference's threshold, else 0."""
    info = registry.BY_ID.get(backend.lower())
    estimate = info.estimate_cost(settings) if info else 0.0
    threshold = prefs.get().confirm_above if prefs.get() else 0.0
    return estimate if estimate and estimate > threshold else 0.0


def import_job(context, job: jobs.Job) -> list[bpy.types.Object]:
    """Import every GLB of a finished job; on failure nothing stays half-imported."""
    created: list[bpy.types.Object] = []
    persist_record(job)  # the result is safe whatever happens next
    try:
        groups = []
        for path in job.result["files"]:
            objects = importer.import_glb(context, path, snapshot=True)
            created.extend(objects)
            groups.append(objects)
        record = {"addon_version": addon_version(), "backend": job.backend, "settings": job.settings,
                  "seeds": job.result.get("seeds", []), "files": job.result["files"], "cost": job.result.get("cost"),
                  "image": job.image_ref, "job": job.id, "job_folder": job.output_dir,
                  "cache_key": job.cache_key, "from_cache": bool(job.from_cache), "cost_unit": job.cost_unit}
        anchor = bpy.data.objects.get(job.anchor) if job.anchor else None
        roots = importer.place_results(context, groups, job.name, record, job.target_size, anchor=anchor)
    except Exception as exc:
        for obj in created:
            if obj.name in bpy.data.objects:
                bpy.data.objects.remove(obj, do_unlink=True)
        job.fail(f"Import failed: {exc}")
        raise RequestError(job.error) from None
    job.objects = [o.name for o in roots]
    job.set_finished(jobs.DONE, f"Done: {', '.join(job.objects)}" + (" (from cache)" if job.from_cache else ""))
    prune_history()
    return roots


def progress_line(job: jobs.Job) -> str:
    if job.state == jobs.QUEUED:
        ahead = [j for j in jobs.manager.jobs if j.state == jobs.QUEUED].index(job)
        return f"TRELLIS {job.name}: queued ({ahead} ahead, {len(jobs.manager.running())} running)"
    step = f" {job.step}/{job.total}" if job.total else ""
    return f"TRELLIS {job.name}: {job.fraction * 100:5.1f}% {job.text}{step} [{job.elapsed:.1f}s]"


def _pooled_worker(job: jobs.Job | None) -> jobs.WorkerProcess:
    log = os.path.join(prefs.jobs_root(), "worker-pool.log")
    # a worker started under other TRELLIS_* variables (test and debug switches) is not reused
    key = ("blender-python", tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("TRELLIS_"))))
    return jobs.manager.pooled_worker(key, lambda: jobs.WorkerProcess(log_path=log, persistent=True, key=key), job)


def prewarm(backend: str) -> None:
    """Start the pooled worker a batch's hosted or offline jobs will use, with the backend's module
    imported, while its first images are read."""
    if backend != "local":
        _pooled_worker(None).send(protocol.encode("preload", backend=backend))


def worker_for(job: jobs.Job) -> jobs.WorkerProcess:
    """A warm worker: the local GPU one (one model load for many jobs), or one of the pool that runs
    hosted jobs (several on one worker, on threads) and offline ones (a worker each) in Blender's Python."""
    if job.backend != "local":
        return _pooled_worker(job)
    setup, _ = prefs.local_setup()
    log = os.path.join(prefs.jobs_root(), "local-worker.log")
    key = (setup["python"], tuple(sorted(setup["env"].items())), setup["idle_exit"])
    return jobs.manager.persistent_worker(key, lambda: jobs.WorkerProcess(
        python=setup["python"], env=setup["env"], isolated=False, log_path=log, persistent=True,
        idle_exit=setup["idle_exit"], key=key))
