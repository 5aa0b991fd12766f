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
from .. import finishing, history, image_input, importer, meshfile, prefs, vouch
from ..record import valid_qa
from ..paths import EXTENSION_ROOT
from .job import BUILDING, CANCELLED, IMPORTING, PREPARING, QUEUED, Job, discard_folder
from .files import submit_io
from .process import WorkerProcess, WorkerSpec, log_tail

IDLE_SECONDS = 60.0  # the background Blender exits after this long without a task
FALLBACK = "Imported on the main thread (no background Blender could start)"
READ_FALLBACK = "Image read on the main thread (no background Blender could start)"
SHA = frozenset("0123456789abcdef")


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
    return WorkerSpec(key=("blender", command), command=command, log_path=os.path.join(prefs.jobs_root(), log))


def checked_answer(job: Job, msg: dict) -> dict:
    """The background Blender's import answer, checked before anything uses it: snapshots as .blend files beside
    the job's GLBs (each with its SHA-256, "" where none is valid: vouch.py), one valid measured quality per GLB
    at most, library files as .blend files in the job's asset library folder. Anything else is dropped (the
    results themselves are appended from the snapshot files their GLBs name, each checked as it is appended)."""
    files = (job.result or {}).get("files") or []
    beside = {os.path.dirname(os.path.realpath(f)) for f in files}
    library = os.path.realpath(job.asset_library) if job.asset_library else ""

    def listed(key):
        value = msg.get(key)
        return value if isinstance(value, list) else []

    def in_folder(path, folders):
        return (isinstance(path, str) and path.endswith(".blend") and os.path.isfile(path)
                and os.path.dirname(os.path.realpath(path)) in folders)

    digests = listed("digests")
    kept = [(p, digests[i] if i < len(digests) and vouch.valid(digests[i]) else "")
            for i, p in enumerate(listed("snapshots")) if in_folder(p, beside)][:len(files)]
    return {"snapshots": [p for p, _ in kept], "digests": [d for _, d in kept],
            "qa": [q if valid_qa(q) else None for q in listed("qa")[:len(files)]],
            "libraries": [p for p in listed("libraries") if library and in_folder(p, {library})][:len(files)]}


class Task:
    """One task for a job ("prepare" its input or "import" its result): routed by the worker's reader
    thread like a job's messages; it lasts while the job waits in `state`."""

    def __init__(self, job: Job, kind: str, worker: WorkerProcess):
        self.job, self.kind, self.id, self.worker = job, kind, f"{job.id}-{kind}", worker
        self.state = PREPARING if kind == "prepare" else BUILDING
        self.messages: queue.Queue = queue.Queue()

    def deliver(self, msg: dict) -> None:
        self.messages.put(msg)


class Builder:
    """Up to `size` background Blenders (1 in the UI; a batch's --jobs N may use N): each task goes to an
    idle one, a new one starts while all are busy and the pool is not full, else the least loaded queues it."""

    def __init__(self):
        self.enabled: bool | None = None  # None: in the UI only (not in background runs)
        self.size = 1
        self.workers: list[WorkerProcess] = []
        self.tasks: dict[str, Task] = {}
        self.last_used: dict[WorkerProcess, float] = {}
        self.unavailable = ""  # why no background Blender could start (then imports stay on the main thread)

    @property
    def worker(self) -> WorkerProcess | None:
        """The first background Blender still running (the only one in the UI); None when none runs."""
        return next((w for w in self.workers if w.alive), None)

    @property
    def on(self) -> bool:
        """Whether heavy bpy work goes to a background Blender: in the UI (not in background runs) unless
        forced, and while one could start."""
        return bool(((not bpy.app.background) if self.enabled is None else self.enabled) and not self.unavailable)

    def wanted(self, job: Job) -> bool:
        """Whether this job's result should be imported in the background (a retexture job's, with its .blend:
        fitted and transferred there)."""
        files = (job.result or {}).get("files") or []
        if job.mode == "retexture":
            keys = [meshfile.KEY if self._transfers(job) else ""] * len(files)
        else:
            keys = [spec["key"] for spec in finishing.specs(job) or [{"key": ""}] * len(files)]
        return bool(self.on and files and job.mode in ("generate", "retexture")
                    and not all(importer.fresh_snapshot(f, key) for f, key in zip(files, keys)))

    @staticmethod
    def _transfers(job: Job) -> bool:
        return bool(job.mode == "retexture" and job.mesh_source and os.path.isfile(job.mesh_source))

    def load(self, worker: WorkerProcess) -> int:
        return sum(task.worker is worker for task in self.tasks.values())

    def _worker(self) -> WorkerProcess | None:
        """The background Blender for the next task, started where needed; None (and the reason kept) where
        none starts."""
        for gone in [w for w in self.workers if not w.alive or w.stopping]:
            self.workers.remove(gone)
            self.last_used.pop(gone, None)
        ready = min(self.workers, key=self.load, default=None)
        try:
            if ready is None or (self.load(ready) and len(self.workers) < max(1, self.size)):
                logs = {w.log_path for w in self.workers}
                spec = next(s for s in map(blender_spec, range(1, len(self.workers) + 2)) if s.log_path not in logs)
                ready = WorkerProcess(spec).start()
                self.workers.append(ready)
        except Exception as exc:  # noqa: BLE001 (any reason: fall back, say so once)
            if self.workers:  # the pool cannot grow: the running ones take the task
                return min(self.workers, key=self.load)
            self.unavailable = f"{type(exc).__name__}: {exc}"
            print(f"TRELLIS: no background Blender ({self.unavailable}); images are read and results imported "
                  "on the main thread")
            return None
        self.last_used[ready] = time.monotonic()
        return ready

    def start(self, job: Job) -> None:
        """Send a BUILDING job's import to the background Blender (IMPORTING at once where none starts)."""
        worker = self._worker()
        if worker is None:
            job.state, job.text = IMPORTING, FALLBACK
            return
        task = self.tasks[job.id] = Task(job, "import", worker)
        plan = finishing.specs(job)
        extra = {"finish": plan} if plan else {"retexture": job.mesh_source} if self._transfers(job) else {}
        worker.submit(task, protocol.encode("job", id=task.id, kind="import", files=job.result["files"], **extra))

    def ready(self) -> bool:
        """Whether a background Blender runs or could be started now (started where none runs)."""
        return self.on and self._worker() is not None

    def prepare(self, job: Job) -> None:
        """Send a PREPARING job's image (read here where no background Blender starts) and a retexture job's
        mesh to export (job.mesh_source) to the background Blender."""
        worker = self._worker()
        thumb = "" if job.is_quote else os.path.join(job.output_dir, history.THUMB)
        if worker is None and job.mesh_source:  # asked for while one ran: nothing was sent
            self._unreadable(job, f"The mesh could not be exported: no background Blender ({self.unavailable})")
            return
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
        task = self.tasks[job.id] = Task(job, "prepare", worker)
        image = dict(image=job.source["path"], colorspace=job.source["colorspace"], rgba=job.rgba_path, thumb=thumb,
                     alpha_mode=job.source.get("alpha_mode", ""), max_megapixels=image_input.max_megapixels()
                     ) if job.source else {}
        mesh = dict(mesh_blend=job.mesh_source, mesh_glb=job.mesh_path) if job.mesh_source else {}
        worker.submit(task, protocol.encode("job", id=task.id, kind="prepare", **image, **mesh))

    def _prepared(self, job: Job, image_sha) -> None:
        """The prepared input (and a retexture job's mesh) is on disk: history is asked, then the job queues
        (pump starts it). An image read here before has its hash already."""
        image_sha = image_sha if job.source else job.image_sha
        if not (isinstance(image_sha, str) and len(image_sha) == 64 and set(image_sha) <= SHA
                and os.path.isfile(job.rgba_path)) or (job.mesh_source and not os.path.isfile(job.mesh_path)):
            job.fail("The background Blender wrote no prepared input", protocol.ErrorCode.INTERNAL)
            submit_io(discard_folder, job.output_dir)
            return
        job.image_sha = image_sha
        job.cache_key = history.cache_key(image_sha, job.backend, job.model, job.settings)
        if job.source:
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
                    job.built = checked_answer(job, msg)
                    for snapshot, digest in zip(job.built["snapshots"], job.built["digests"]):
                        vouch.expect(snapshot, digest)  # hashed again in a thread: the ticks ahead wait for it
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
                    tail = log_tail(task.worker.log_path).strip()
                    detail = f"\nLast lines of the background Blender's log:\n{tail}" if tail else ""
                    job.fail(f"The background Blender stopped unexpectedly (exit code {msg['code']}){detail}",
                             protocol.ErrorCode.WORKER_EXIT)
                    if task.kind == "prepare":  # nothing was sent: no entry stays
                        submit_io(discard_folder, job.output_dir)
                changed.append(job)
            if job.state != task.state or job.is_finished:
                if job.state == CANCELLED and task.kind == "import":
                    task.worker.send(protocol.encode("cancel", id=task.id))  # finishing stops at its next stage
                del self.tasks[job_id]
                self.last_used[task.worker] = time.monotonic()
        now = time.monotonic()
        for worker in list(self.workers):
            if not self.load(worker) and now - self.last_used.get(worker, now) > IDLE_SECONDS:
                self._retire(worker)
        return changed

    def _retire(self, worker: WorkerProcess) -> None:
        worker.close_stdin()  # EOF: it exits
        self.workers.remove(worker)
        self.last_used.pop(worker, None)

    def stop(self) -> None:
        for worker in list(self.workers):
            self._retire(worker)
