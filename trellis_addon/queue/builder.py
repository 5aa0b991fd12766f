"""Both ends of a job off the main thread, in a background Blender (blend_worker.py):
- input: it reads, checks and downsizes the image file with Blender's own image code and writes the
  prepared input and the thumbnail; the job waits in PREPARING (nothing is sent before), then history is
  asked (the image hash is known now) and the job queues, or fails with the reader's message, or is
  answered from the cache;
- result: it imports a finished job's GLBs with Blender's glTF importer and saves each as its snapshot
  .blend, signed (signing.py); the UI's Blender then only appends and places it (results.import_job finds
  the fresh snapshots). Every snapshot is verified in a thread before the job goes on to IMPORTING (a cache
  hit's and a History entry's too): one that does not verify is never opened here, its GLB is imported again
  in the background Blender instead (once). The job waits in BUILDING meanwhile.

In every mode (the UI, `-b` scripts, the CLI, batches): a provider's GLB and the user's picture are never parsed
in the process the user works in. Each background Blender has a memory bound (prefs.worker_memory_bytes, set
by blend_main) and each task a deadline (prefs.worker_deadline_seconds): past either, it is stopped and the
job fails with the reason, the result kept in history to import again. Only where no background Blender can
be started do both run on the main thread (one line in the log, and the job's text says so); tests of that
fallback set `Builder.enabled` off.
"""
from __future__ import annotations

import os
import queue
import threading
import time

from ...backend import protocol
from ...backend.blender_protocol import FinishSpec, ImportTask, PrepareAnswer, PrepareTask, is_sha
from .. import finishing, history, image_input, importer, meshfile, prefs, signing
from .background_blender import blender_spec, checked_answer
from .job import BUILDING, CANCELLED, IMPORTING, PREPARING, QUEUED, Job, discard_folder
from .files import submit_io
from .process import WorkerProcess, log_tail

IDLE_SECONDS = 60.0  # the background Blender exits after this long without a task
FALLBACK = "Imported on the main thread (no background Blender could start)"
READ_FALLBACK = "Image read on the main thread (no background Blender could start)"
KEPT = "; the result stays in history: import it again from there"
OUT_OF_MEMORY = ("MemoryError", "Unable to allocate", "out of memory", "bad_alloc")  # how an allocation past
# the memory bound ends an import task where it does not end the process


def _bound() -> str:
    return f"memory bound {prefs.worker_memory_bytes() / (1 << 30):.1f} GB"


def _answered_sha(msg: dict) -> str | None:
    """The prepared input's hash a prepare answer gives; None where the answer does not parse (the job fails:
    no prepared input)."""
    try:
        return PrepareAnswer.parse(msg).image_sha
    except ValueError as exc:
        print(f"TRELLIS: the background Blender's prepare answer is refused: {exc}")
        return None


class Task:
    """One task for a job ("prepare" its input or "import" its result in a background Blender, "verify" its
    snapshots in a thread): routed by the worker's reader thread (or the thread) like a job's messages; it
    lasts while the job waits in `state`. rebuilt: the job's GLBs were imported again already (a snapshot that
    still does not verify then fails the job)."""

    def __init__(self, job: Job, kind: str, worker: WorkerProcess | None, rebuilt: bool = False):
        self.job, self.kind, self.id, self.worker, self.rebuilt = job, kind, f"{job.id}-{kind}", worker, rebuilt
        self.state = PREPARING if kind == "prepare" else BUILDING
        self.started = time.monotonic()
        self.messages: queue.Queue = queue.Queue()

    def deliver(self, msg: dict) -> None:
        self.messages.put(msg)


class Builder:
    """Up to `size` background Blenders (1 in the UI; a batch's --jobs N may use N): each task goes to an
    idle one, a new one starts while all are busy and the pool is not full, else the least loaded queues it."""

    def __init__(self):
        self.enabled: bool | None = None  # None: on (False: the main thread's fallback, for its tests)
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
        """Whether heavy bpy work goes to a background Blender: always, unless turned off, while one could
        start."""
        return bool(self.enabled is not False and not self.unavailable)

    def wanted(self, job: Job) -> bool:
        """Whether this job's result goes through the builder (its snapshots verified, or its GLBs imported in
        the background: a retexture job's, with its .blend, fitted and transferred there)."""
        return bool(self.on and (job.result or {}).get("files") and job.mode in ("generate", "retexture"))

    def _chosen(self, job: Job) -> list[str]:
        """The snapshot import_job appends for each GLB (its key's)."""
        files = (job.result or {}).get("files") or []
        if job.mode == "retexture":
            keys = [meshfile.KEY if self._transfers(job) else ""] * len(files)
        else:
            keys = [spec["key"] for spec in finishing.specs(job) or [{"key": ""}] * len(files)]
        return [importer.snapshot_path(f, key) if importer.fresh_snapshot(f, key) else ""
                for f, key in zip(files, keys)]

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
        """A BUILDING job: its snapshots verified in a thread where each one it appends is there and signed, else
        its import sent to the background Blender (IMPORTING at once where none starts, or the builder was
        turned off meanwhile)."""
        if not self.on:
            job.state, job.text = IMPORTING, FALLBACK
            return
        try:
            key_file, key = prefs.signing_key_path(), prefs.signing_key()
        except (OSError, signing.SigningError) as exc:
            job.fail(f"The snapshot signing key cannot be read: {exc}", protocol.ErrorCode.INTERNAL)
            return
        chosen = self._chosen(job)
        unsigned = [path for path in chosen if path and not os.path.isfile(signing.signature_path(path))]
        if all(chosen) and not unsigned:
            self._verify(job, chosen, key, rebuilt=False)
            return
        for path in unsigned:  # one from a version before signing, or put there by another program
            print(f"TRELLIS: snapshot {os.path.basename(path)} not opened (not signed); importing its GLB again "
                  "in the background")
        self._import(job, key_file, rebuilt=False)

    def _import(self, job: Job, key_file: str, rebuilt: bool) -> None:
        worker = self._worker()
        if worker is None:
            job.state, job.text = IMPORTING, FALLBACK
            return
        task = self.tasks[job.id] = Task(job, "import", worker, rebuilt)
        plan = finishing.specs(job)
        message = ImportTask(task.id, list(job.result["files"]), key_file,
                             finish=[FinishSpec(**spec) for spec in plan] if plan else None,
                             retexture=job.mesh_source if not plan and self._transfers(job) else None)
        worker.submit(task, message.to_line())

    def _verify(self, job: Job, snapshots: list, key: bytes, rebuilt: bool) -> None:
        """Verify the snapshots' signatures in a thread (the main thread never reads them whole); its answer
        comes through the task like a worker's."""
        task = self.tasks[job.id] = Task(job, "verify", None, rebuilt)
        job.text = "Checking the result's signature"

        def run():
            task.deliver({"type": "verified", "found": {path: signing.verify(path, key) for path in snapshots}})
        threading.Thread(target=run, name="trellis2-verify", daemon=True).start()

    def _verified(self, task: Task, found: dict) -> None:
        """The verify task's answer: IMPORTING where every snapshot verified (job.built["verified"]: their
        fingerprints, which the append checks again), else the GLBs imported again in the background, once."""
        job = task.job
        refused = {path: why for path, (known, why) in found.items() if known is None}
        if not refused:
            job.built = dict(job.built, verified={path: known for path, (known, _) in found.items()})
            job.state, job.text = IMPORTING, "Placing"
            return
        path, why = next(iter(refused.items()))
        if task.rebuilt:
            job.fail(f"Import failed: the snapshot the background Blender wrote does not verify: "
                     f"{os.path.basename(path)} {why}", protocol.ErrorCode.INTERNAL)
            return
        for path, why in refused.items():
            print(f"TRELLIS: snapshot {os.path.basename(path)} not opened ({why}); importing its GLB again in the "
                  "background")
        self._import(job, prefs.signing_key_path(), rebuilt=True)

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
        worker.submit(task, PrepareTask(task.id, **image, **mesh).to_line())

    def _prepared(self, job: Job, image_sha) -> None:
        """The prepared input (and a retexture job's mesh) is on disk: history is asked, then the job queues
        (pump starts it). An image read here before has its hash already."""
        image_sha = image_sha if job.source else job.image_sha
        if not (is_sha(image_sha) and os.path.isfile(job.rgba_path)) \
                or (job.mesh_source and not os.path.isfile(job.mesh_path)):
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
                    self._prepared(job, _answered_sha(msg))
                elif msg["type"] == "verified":
                    self._verified(task, msg["found"])
                elif msg["type"] == "result":
                    job.built = checked_answer(job, msg)
                    try:
                        self._verify(job, job.built["snapshots"], prefs.signing_key(), rebuilt=True)
                    except (OSError, signing.SigningError) as exc:
                        job.fail(f"The snapshot signing key cannot be read: {exc}", protocol.ErrorCode.INTERNAL)
                elif msg["type"] == "error" and task.kind == "prepare":
                    code = protocol.ErrorCode.parse(msg.get("code"))
                    if code == protocol.ErrorCode.BAD_INPUT:
                        self._unreadable(job, str(msg.get("message") or "The image could not be read"))
                    else:
                        job.fail(f"Reading the image failed: {msg.get('message')}", code)
                        submit_io(discard_folder, job.output_dir)
                elif msg["type"] == "error":
                    text = str(msg.get("message"))
                    memory = any(sign in text for sign in OUT_OF_MEMORY)
                    job.fail(f"Import failed{f' ({_bound()})' if memory else ''}: {text}{KEPT}",
                             protocol.ErrorCode.parse(msg.get("code")))
                elif msg["type"] == protocol.EXIT:
                    tail = log_tail(task.worker.log_path).strip()
                    detail = f"\nLast lines of the background Blender's log:\n{tail}" if tail else ""
                    kept = KEPT if task.kind != "prepare" else ""
                    job.fail(f"The background Blender stopped unexpectedly (exit code {msg['code']}, {_bound()}){kept}"
                             f"{detail}", protocol.ErrorCode.WORKER_EXIT)
                    if task.kind == "prepare":  # nothing was sent: no entry stays
                        submit_io(discard_folder, job.output_dir)
                changed.append(job)
                if self.tasks.get(job_id) is not task:  # followed by another task (verify, rebuild)
                    break
            replaced = self.tasks.get(job_id) is not task
            if replaced or job.state != task.state or job.is_finished:
                if not replaced:
                    if job.state == CANCELLED and task.kind == "import":
                        task.worker.send(protocol.encode("cancel", id=task.id))  # finishing stops at its next stage
                    del self.tasks[job_id]
                if task.worker is not None:
                    self.last_used[task.worker] = time.monotonic()
        now = time.monotonic()
        self._past_deadline(now)
        for worker in list(self.workers):
            if not self.load(worker) and now - self.last_used.get(worker, now) > IDLE_SECONDS:
                self._retire(worker)
        return changed

    def _past_deadline(self, now: float) -> None:
        """Stop a background Blender whose task ran past the deadline (a picture or result that would take for
        ever, or a hang): its job fails with the reason; the others it held fail as it exits."""
        deadline = prefs.worker_deadline_seconds()
        for job_id, task in list(self.tasks.items()):
            if task.worker is None or now - task.started <= deadline:
                continue
            del self.tasks[job_id]
            task.worker.kill()
            what = "reading the picture" if task.kind == "prepare" else "importing the result"
            kept = "" if task.kind == "prepare" else "; the result stays in history: import it again from there"
            task.job.fail(f"The background Blender was stopped: {what} took longer than {deadline / 60:g} min "
                          f"(Import Deadline){kept}", protocol.ErrorCode.TIMEOUT)
            if task.kind == "prepare":
                submit_io(discard_folder, task.job.output_dir)

    def _retire(self, worker: WorkerProcess) -> None:
        worker.close_stdin()  # EOF: it exits
        self.workers.remove(worker)
        self.last_used.pop(worker, None)

    def stop(self) -> None:
        for worker in list(self.workers):
            self._retire(worker)
