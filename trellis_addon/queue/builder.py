"""Both ends of a job off the main thread, in a background Blender (blend_worker.py):
- input: it reads, checks and downsizes the image file with Blender's own image code and writes the
  prepared input and the thumbnail; the job waits in PREPARING (nothing is sent before), then history is
  asked (the image hash is known now) and the job queues, or fails with the reader's message, or is
  answered from the cache;
- result: it imports a finished job's GLBs with Blender's glTF importer and saves each as its snapshot
  .blend; the UI's Blender then only appends and places it (results.import_job finds the fresh
  snapshots). The job waits in BUILDING meanwhile.

Where no background Blender can be started, both run on the main thread as before (one line in the log,
and the job's text says so). Background runs (`-b`, scripts, the CLI) block anyway and import
in their own process unless `Builder.enabled` is forced on (tests, benchmarks).
"""
from __future__ import annotations

import os
import queue
import sys
import time

import bpy

from ...backend import protocol
from .. import finishing, history, image_input, importer, prefs
from ..paths import EXTENSION_ROOT
from .job import BUILDING, CANCELLED, IMPORTING, PREPARING, QUEUED, Job, discard_folder
from .files import submit_io
from .process import WorkerProcess, WorkerSpec, log_tail

IDLE_SECONDS = 60.0  # the background Blender exits after this long without a task
FALLBACK = "Imported on the main thread (no background Blender could start)"
READ_FALLBACK = "Image read on the main thread (no background Blender could start)"
SHA = frozenset("0123456789abcdef")


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
    """One task for a job ("prepare" its input or "import" its result): routed by the worker's reader
    thread like a job's messages; it lasts while the job waits in `state`."""

    def __init__(self, job: Job, kind: str):
        self.job, self.kind, self.id = job, kind, f"{job.id}-{kind}"
        self.state = PREPARING if kind == "prepare" else BUILDING
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

    @property
    def on(self) -> bool:
        """Whether heavy bpy work goes to a background Blender: in the UI (not in background runs) unless
        forced, and while one could start."""
        return bool(((not bpy.app.background) if self.enabled is None else self.enabled) and not self.unavailable)

    def wanted(self, job: Job) -> bool:
        """Whether this job's result should be imported in the background."""
        files = (job.result or {}).get("files") or []
        plan = finishing.specs(job) or [{"key": ""}] * len(files)
        return bool(self.on and files and job.mode == "generate"
                    and not all(importer.fresh_snapshot(f, spec["key"]) for f, spec in zip(files, plan)))

    def _worker(self) -> WorkerProcess | None:
        """The background Blender, started where needed; None (and the reason kept) where none starts."""
        try:
            if self.worker is None or not self.worker.alive or self.worker.stopping:
                self.worker = WorkerProcess(blender_spec()).start()
        except Exception as exc:  # noqa: BLE001 (any reason: fall back, say so once)
            self.unavailable = f"{type(exc).__name__}: {exc}"
            print(f"TRELLIS: no background Blender ({self.unavailable}); images are read and results imported "
                  "on the main thread")
            return None
        self.last_used = time.monotonic()
        return self.worker

    def start(self, job: Job) -> None:
        """Send a BUILDING job's import to the background Blender (IMPORTING at once where none starts)."""
        worker = self._worker()
        if worker is None:
            job.state, job.text = IMPORTING, FALLBACK
            return
        task = self.tasks[job.id] = Task(job, "import")
        plan = finishing.specs(job)
        worker.submit(task, protocol.encode("job", id=task.id, kind="import", files=job.result["files"],
                                            **({"finish": plan} if plan else {})))

    def prepare(self, job: Job) -> None:
        """Send a PREPARING job's image to the background Blender (read here where none starts)."""
        worker = self._worker()
        thumb = "" if job.is_quote else os.path.join(job.output_dir, history.THUMB)
        if worker is None:
            try:
                done = image_input.prepare_file(job.source["path"], job.rgba_path, thumb, job.source["colorspace"],
                                                alpha_mode=job.source.get("alpha_mode", ""))
            except image_input.InputError as exc:
                self._unreadable(job, str(exc))
                return
            self._prepared(job, done["image_sha"])
            job.text = READ_FALLBACK if job.state == QUEUED else job.text
            return
        task = self.tasks[job.id] = Task(job, "prepare")
        worker.submit(task, protocol.encode(
            "job", id=task.id, kind="prepare", image=job.source["path"], colorspace=job.source["colorspace"],
            alpha_mode=job.source.get("alpha_mode", ""), rgba=job.rgba_path, thumb=thumb,
            max_megapixels=image_input.max_megapixels()))

    def _prepared(self, job: Job, image_sha) -> None:
        """The prepared input is on disk: history is asked, then the job queues (pump starts it)."""
        if not (isinstance(image_sha, str) and len(image_sha) == 64 and set(image_sha) <= SHA
                and os.path.isfile(job.rgba_path)):
            job.fail("The background Blender wrote no prepared input", protocol.ErrorCode.INTERNAL)
            submit_io(discard_folder, job.output_dir)
            return
        job.image_sha = image_sha
        job.cache_key = history.cache_key(image_sha, job.backend, job.model, job.settings)
        image_input.remember_hash(image_input.source_key(job.source), image_sha)
        found = history.history.find_cached(prefs.jobs_root(), job.cache_key) if job.cacheable else None
        if found is None:
            job.state, job.text, job.started = QUEUED, "Queued", time.monotonic()
            return
        job.answer_from(found)
        if self.wanted(job):
            job.state, job.text = BUILDING, "Importing in the background"

    @staticmethod
    def _unreadable(job: Job, message: str) -> None:
        """Nothing was sent and nothing spent: the job fails with the reader's message, its folder goes."""
        job.fail(message, protocol.ErrorCode.BAD_INPUT)
        submit_io(discard_folder, job.output_dir)

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
                elif msg["type"] == "result" and task.kind == "prepare":
                    self._prepared(job, msg.get("image_sha"))
                elif msg["type"] == "result":
                    job.built = {k: msg.get(k) for k in ("snapshots", "qa", "libraries")}
                    job.state, job.text = IMPORTING, "Placing"
                elif msg["type"] == "error" and task.kind == "prepare":
                    code = protocol.ErrorCode.parse(msg.get("code"))
                    if code == protocol.ErrorCode.BAD_INPUT:
                        self._unreadable(job, str(msg.get("message") or "The image could not be read"))
                    else:
                        job.fail(f"Reading the image failed: {msg.get('message')}", code)
                        submit_io(discard_folder, job.output_dir)
                elif msg["type"] == "error":
                    job.fail(f"Import failed: {msg.get('message')}", protocol.ErrorCode.parse(msg.get("code")))
                elif msg["type"] == protocol.EXIT:
                    tail = log_tail(self.worker.log_path if self.worker else "").strip()
                    detail = f"\nLast lines of the background Blender's log:\n{tail}" if tail else ""
                    job.fail(f"The background Blender stopped unexpectedly (exit code {msg['code']}){detail}",
                             protocol.ErrorCode.WORKER_EXIT)
                    if task.kind == "prepare":  # nothing was sent: no entry stays
                        submit_io(discard_folder, job.output_dir)
                changed.append(job)
            if job.state != task.state or job.is_finished:
                if job.state == CANCELLED and task.kind == "import" and self.worker is not None:
                    self.worker.send(protocol.encode("cancel", id=task.id))  # finishing stops at its next stage
                del self.tasks[job_id]
        if self.worker is not None and not self.tasks and time.monotonic() - self.last_used > IDLE_SECONDS:
            self.stop()
        return changed

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.close_stdin()
            self.worker = None
