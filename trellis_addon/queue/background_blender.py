"""A background Blender as the builder starts it (blend_main.py under this Blender's binary, or this Python
under the bpy module) and what its import answer may say before anything uses it."""
from __future__ import annotations

import os
import sys

import bpy

from ...backend.blender_protocol import ImportAnswer
from .. import prefs
from ..blend_main import MEMORY_VARIABLE
from ..paths import EXTENSION_ROOT
from ..record import valid_qa
from .job import Job
from .process import WorkerSpec


def blender_spec(number: int = 1) -> WorkerSpec:
    """This Blender in the background with the extension's worker script; under the bpy module, this Python.
    Each of a pool's Blenders (number 1, 2, ...) writes a log of its own."""
    script = os.path.join(EXTENSION_ROOT, "trellis_addon", "blend_main.py")
    if bpy.app.binary_path:
        command = (bpy.app.binary_path, "-b", "--factory-startup", "--python-exit-code", "1", "--python", script,
                   "--", EXTENSION_ROOT)
    else:
        command = (sys.executable, script, EXTENSION_ROOT)
    log = "blender-worker.log" if number == 1 else f"blender-worker-{number}.log"
    return WorkerSpec(key=("blender", command), command=command, log_path=os.path.join(prefs.jobs_root(), log),
                      env={MEMORY_VARIABLE: str(prefs.worker_memory_bytes())})


def checked_answer(job: Job, msg: dict) -> dict:
    """The background Blender's import answer, checked before anything uses it: snapshots as .blend files beside
    the job's GLBs, one valid measured quality per GLB at most, library files as .blend files in the job's asset
    library folder. Anything else is dropped (the snapshots are verified before they are opened)."""
    try:
        answer = ImportAnswer.parse(msg)
    except ValueError as exc:
        print(f"TRELLIS: the background Blender's import answer does not parse ({exc}); what does is kept")
        answer = ImportAnswer.parse(msg, drop=True)
    files = (job.result or {}).get("files") or []
    beside = {os.path.dirname(os.path.realpath(f)) for f in files}
    library = os.path.realpath(job.asset_library) if job.asset_library else ""

    def in_folder(path, folders):
        return path.endswith(".blend") and os.path.isfile(path) and os.path.dirname(os.path.realpath(path)) in folders

    return {"snapshots": [p for p in answer.snapshots if in_folder(p, beside)][:len(files)],
            "qa": [q if valid_qa(q) else None for q in answer.qa[:len(files)]],
            "libraries": [p for p in answer.libraries if library and in_folder(p, {library})][:len(files)]}
