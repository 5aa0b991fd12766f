"""Results imported off the main thread: a background Blender (blend_worker.py) imports a finished job's
GLBs with Blender's glTF importer and saves each as its snapshot .blend; the UI's Blender then only
appends and places it (results.import_job finds the fresh snapshots). A job waits in BUILDING meanwhile.

Where no background Blender can be started, the import runs on the main thread as before (one line in
the log, and the job's text says so). Background runs (`-b`, scripts, the CLI) block anyway and import
in their own process unless `Builder.enabled` is forced on (tests, benchmarks).
"""
from __future__ import annotations

import os
import queue
import sys
import time

import bpy

from ...backend import protocol
from .. import importer, prefs
from ..paths import EXTENSION_ROOT
from .job import BUILDING, IMPORTING, Job
from .process import WorkerProcess, WorkerSpec, log_tail

IDLE_SECONDS = 60.0  # the background Blender exits after this long without a task
FALLBACK = "Imported on the main thread (no background Blender could start)"


def blender_spec() -> WorkerSpec:
    """This Blender in the background with the extension's worker script; under the bpy module, this Python."""
    script = os.path.join(EXTENSION_ROOT, "trellis_addon", "blend_main.py")
    if bpy.app.binary_path:
        command = (bpy.app.binary_path, "-b", "--factory-startup", "--python-exit-code", "1", "--python", script,
                   "--", EXTENSION_ROOT)
    else:
        command = (sys.executable, script, EXTENSION_ROOT)
    return WorkerSpec(key=("blender", command), command=command,
                      log_path=os.path.join(prefs.jobs_root(), "blender-worker.log"))


class Task:
    """One import task for a job: routed by the worker's reader thread like a job's messages."""

    def __init__(self, job: Job):
        self.job, self.id = job, f"{job.id}-import"
        self.messages: queue.Queue = queue.Queue()

    def deliver(self, msg: dict) -> None:
        self.messages.put(msg)


class Builder:
    def __init__(self):
        self.enabled: bool | None = None  # None: in the UI only (not in background runs)
        self.worker: WorkerProcess | None = None
        self.tasks: dict[str, Task] = {}
        self.last_used = time.monotonic()
        self.unavailable = ""  # why no background Blender could start (then imports stay on the main thread)

    def wanted(self, job: Job) -> bool:
        """Whether this job's result should be imported in the background."""
        on = (not bpy.app.background) if self.enabled is None else self.enabled
        files = (job.result or {}).get("files") or []
        return bool(on and files and job.mode == "generate" and not self.unavailable
                    and not all(importer.fresh_snapshot(f) for f in files))

    def start(self, job: Job) -> None:
        """Send a BUILDING job's import to the background Blender (IMPORTING at once where none starts)."""
        try:
            if self.worker is None or not self.worker.alive or self.worker.stopping:
                self.worker = WorkerProcess(blender_spec()).start()
        except Exception as exc:  # noqa: BLE001 (any reason: fall back, say so once)
            self.unavailable = f"{type(exc).__name__}: {exc}"
            print(f"TRELLIS: no background Blender ({self.unavailable}); importing on the main thread")
            job.state, job.text = IMPORTING, FALLBACK
            return
        task = self.tasks[job.id] = Task(job)
        self.worker.submit(task, protocol.encode("job", id=task.id, kind="import", files=job.result["files"]))
        self.last_used = time.monotonic()

    def poll(self) -> list[Job]:
        """Apply the background Blender's answers; the jobs that changed."""
        changed = []
        for job_id, task in list(self.tasks.items()):
            job = task.job
            while not task.messages.empty():
                msg = task.messages.get_nowait()
                if job.is_finished:
                    continue
                if msg["type"] == "progress":
                    job.text = msg.get("text") or job.text
                elif msg["type"] == "result":
                    job.state, job.text = IMPORTING, "Placing"
                elif msg["type"] == "error":
                    job.fail(f"Import failed: {msg.get('message')}", protocol.ErrorCode.parse(msg.get("code")))
                elif msg["type"] == protocol.EXIT:
                    tail = log_tail(self.worker.log_path if self.worker else "").strip()
                    detail = f"\nLast lines of the background Blender's log:\n{tail}" if tail else ""
                    job.fail(f"The background Blender stopped unexpectedly (exit code {msg['code']}){detail}",
                             protocol.ErrorCode.WORKER_EXIT)
                changed.append(job)
            if job.state != BUILDING or job.is_finished:
                del self.tasks[job_id]
        if self.worker is not None and not self.tasks and time.monotonic() - self.last_used > IDLE_SECONDS:
            self.stop()
        return changed

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.close_stdin()
            self.worker = None
