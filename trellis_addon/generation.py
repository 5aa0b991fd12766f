"""From the user's request to a running job, and from a finished job to objects in the scene."""
from __future__ import annotations

import os
import random
import re
import time
import tomllib
import uuid

import bpy
import numpy as np

from ..backend import providers, registry, schema
from . import image_input, importer, jobs, prefs


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


def prepare_job(*, image, backend: str, settings: dict, target_size: float = 0.0, mode: str = "generate") -> jobs.Job:
    """Check everything, write the prepared image, return an unstarted Job. Raises RequestError."""
    backend = backend.lower()
    if backend not in registry.BY_ID:
        raise RequestError(f"Unknown backend {backend!r} (available: {', '.join(registry.BY_ID)})")
    if target_size < 0:
        raise RequestError(f"Invalid setting target_size: {target_size} must be 0 (keep) or a length > 0")
    info = registry.BY_ID[backend]
    if mode not in info.modes:
        able = ", ".join(b.label for b in registry.BACKENDS if mode in b.modes)
        raise RequestError(f"{info.label} cannot {mode} (use {able})")
    try:
        providers.check(backend, settings, mode)
    except schema.SettingError as exc:
        raise RequestError(f"Invalid setting {exc}") from None
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
        check_session_cap(info.estimate_cost(settings))
    try:
        img = image_input.resolve(image)
        name = image_input.display_name(img)
        rgba = image_input.to_rgba8(img)
        image_input.check_foreground(rgba, name)
    except image_input.InputError as exc:
        raise RequestError(str(exc)) from None
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "image"
    folder = os.path.join(prefs.jobs_root(),
                          f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}")
    os.makedirs(folder, exist_ok=True)
    rgba_path = os.path.join(folder, "input_rgba.npy")
    np.save(rgba_path, rgba)
    image_ref = bpy.path.abspath(img.filepath) if img.filepath else img.name
    return jobs.Job(name=name, backend=backend, settings=settings, rgba_path=rgba_path, output_dir=folder,
                    image_ref=image_ref, target_size=target_size, options=options, secrets=secrets, mode=mode)


def check_session_cap(estimate: float) -> None:
    cap = prefs.get().session_cap if prefs.get() else 0.0
    spent = jobs.manager.session_cost
    if cap and spent + estimate > cap:
        raise RequestError(f"Session spending cap ${cap:.2f} reached (spent ${spent:.2f}, this job about "
                           f"${estimate:.2f}): raise it in the add-on preferences")


def needs_cost_confirmation(backend: str, settings: dict) -> float:
    """The estimated cost when it is above the preference's threshold, else 0."""
    info = registry.BY_ID.get(backend.lower())
    estimate = info.estimate_cost(settings) if info else 0.0
    threshold = prefs.get().confirm_above if prefs.get() else 0.0
    return estimate if estimate and estimate > threshold else 0.0


def import_job(context, job: jobs.Job) -> list[bpy.types.Object]:
    """Import every GLB of a finished job; on failure nothing stays half-imported."""
    created: list[bpy.types.Object] = []
    try:
        groups = []
        for path in job.result["files"]:
            objects = importer.import_glb(context, path)
            created.extend(objects)
            groups.append(objects)
        record = {"addon_version": addon_version(), "backend": job.backend, "settings": job.settings,
                  "seeds": job.result.get("seeds", []), "files": job.result["files"], "cost": job.result.get("cost"),
                  "cost_unit": job.cost_unit,
                  "image": job.image_ref, "job": job.id, "job_folder": job.output_dir}
        roots = importer.place_results(context, groups, job.name, record, job.target_size)
    except Exception as exc:
        for obj in created:
            if obj.name in bpy.data.objects:
                bpy.data.objects.remove(obj, do_unlink=True)
        job.fail(f"Import failed: {exc}")
        raise RequestError(job.error) from None
    job.objects = [o.name for o in roots]
    job.set_finished(jobs.DONE, f"Done: {', '.join(job.objects)}")
    return roots


def progress_line(job: jobs.Job) -> str:
    step = f" {job.step}/{job.total}" if job.total else ""
    return f"TRELLIS {job.name}: {job.fraction * 100:5.1f}% {job.text}{step} [{job.elapsed:.1f}s]"


def worker_for(job: jobs.Job) -> jobs.WorkerProcess | None:
    """The warm local worker for local jobs (one model load for many jobs); None: a worker of its own."""
    if job.backend != "local":
        return None
    setup, _ = prefs.local_setup()
    log = os.path.join(prefs.jobs_root(), "local-worker.log")
    key = (setup["python"], tuple(sorted(setup["env"].items())), setup["idle_exit"])
    return jobs.manager.persistent_worker(key, lambda: jobs.WorkerProcess(
        python=setup["python"], env=setup["env"], isolated=False, log_path=log, persistent=True,
        idle_exit=setup["idle_exit"], key=key))
