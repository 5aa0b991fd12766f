"""A job's state machine: built complete (nothing is patched onto it afterwards), fed the worker's
protocol messages by the reader thread (deliver), applied on Blender's main thread (poll)."""
from __future__ import annotations

import collections
import math
import os
import queue
import shutil
import time
import uuid

from ...backend import protocol, registry
from .. import entry_lock, history
from ..record import Record
from . import files
from .process import WorkerProcess, python_worker

# Job states
QUEUED, STARTING, RUNNING, IMPORTING, DONE, FAILED, CANCELLED = (
    "queued", "starting", "running", "importing", "done", "failed", "cancelled")
BUILDING = "building"  # the result is being imported by a background Blender; IMPORTING follows
PREPARING = "preparing"  # a background Blender reads the image and writes the prepared input; QUEUED follows
FINISHED_STATES = (DONE, FAILED, CANCELLED)
RESULT_LISTENERS: list = []  # fn(job) for each result message (the spending tally)
SILENT_SECONDS = protocol.HEARTBEAT_TIMEOUT  # a running job whose worker beats, then falls silent, has failed


MAX_COST = 100000.0  # per job, in any unit: more is no price a provider means


def sane_cost(value) -> float | None:
    """A reported cost, or None ("unknown": the estimate counts) for NaN, infinities, negatives, absurd
    amounts and anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= MAX_COST else None


class Job:
    def __init__(self, *, name: str, backend: str, settings: dict, output_dir: str, rgba_path: str,
                 image_ref: str = "", mode: str = "generate", mesh_path: str = "", target_size: float = 0.0,
                 anchor: str = "", options: dict | None = None, secrets: dict | None = None, model: str = "",
                 image_sha: str = "", cache_key: str = "", from_cache: str = "", result: dict | None = None,
                 created: float | None = None, remote: dict | None = None, remote_tasks: list | None = None,
                 state: str = QUEUED, source: dict | None = None, cacheable: bool = False,
                 finish: dict | None = None, asset_library: str = "", mesh_source: str = ""):
        self.id = uuid.uuid4().hex[:12]
        self.name, self.backend, self.mode, self.settings = name, backend, mode, settings
        self.output_dir, self.rgba_path, self.mesh_path, self.image_ref = output_dir, rgba_path, mesh_path, image_ref
        self.target_size = target_size
        self.finish = finish  # validated finish settings (schema.validate_finish); None: imported as it comes
        self.asset_library = asset_library  # folder each finished result is also saved to ("": none)
        self.qa: list[dict] = []  # per result, once imported (Record.qa)
        self.built: dict = {}  # the background Blender's import answer (snapshots, qa, library files)
        self.landings: dict = {}  # {result GLB: landing.Landing}, made by the modal operator's ticks ahead
        self.library_files: list[str] = []  # the asset library .blend files written for it
        self.finish_plan: tuple | None = None  # (result files, finishing.specs of them): made once
        self.parts: list[list[str]] = []  # per result, once imported: its objects' names, LODs and low-poly too
        self.anchor = anchor  # name of the object the result is placed next to ("": the 3D cursor)
        self.options = options or {}
        self._secrets = secrets or {}  # sent to the worker over its stdin only; never recorded
        self.model, self.image_sha, self.cache_key = model, image_sha, cache_key  # see history.py
        self.from_cache = from_cache  # id of the history entry that answered this request
        self.remote = remote  # the latest submitted remote task, recorded at once
        self.remote_tasks: list[dict] = list(remote_tasks or ([remote] if remote else []))  # every one
        self.source = source  # PREPARING: the file a background Blender reads ({"path", "colorspace", "alpha_mode"})
        self.mesh_source = mesh_source  # PREPARING: the .blend a background Blender exports as mesh_path (retexture)
        self.cacheable = cacheable  # once prepared, history may answer it (no random seed, not forced)
        self.interrupted = False  # Blender stopped while its submitted task ran: resumed on the next start
        self.log_path = os.path.join(output_dir, "worker.log")
        self.state = state
        self.text = {IMPORTING: "From cache" if from_cache else "Importing",
                     PREPARING: "Reading the image in the background" if source
                     else "Exporting the mesh in the background"}.get(state, "Queued")
        self.stage = ""
        self.step = self.total = 0
        self.fraction = 1.0 if state == IMPORTING else 0.0
        self.created = time.time() if created is None else created
        self.started = time.monotonic()
        self.finished: float | None = None
        self.result = result
        self.error: str | None = None
        self.error_code: protocol.ErrorCode | None = None
        self.objects: list[str] = []
        self.messages = collections.deque(maxlen=50)
        self.worker = None  # the WorkerProcess serving it
        self.heard, self.beating = time.monotonic(), False  # last message from the worker; it sends heartbeats
        self.build_wanted = None  # set by the queue: fn(job) -> import this result in a background Blender?
        self._queue: queue.Queue = queue.Queue()

    @property
    def info(self) -> registry.BackendInfo:
        return registry.get(self.backend)

    # --- process -------------------------------------------------------------------------------
    def start(self, worker: WorkerProcess | None = None) -> None:
        """Send the job to a started worker, or to one of its own (ends with the job)."""
        os.makedirs(self.output_dir, exist_ok=True)
        self.state, self.text, self.started = STARTING, "Starting worker", time.monotonic()
        self.worker = worker or WorkerProcess(python_worker(log_path=self.log_path, persistent=False)).start()
        worker = self.worker
        self.log_path = worker.log_path
        job_input = {"rgba": self.rgba_path, "name": self.name}
        if self.mesh_path:
            job_input["mesh"] = self.mesh_path
        worker.submit(self, protocol.encode(
            "job", id=self.id, backend=self.backend, mode=self.mode, input=job_input, settings=self.settings,
            output_dir=self.output_dir, options=self.options, secrets=self._secrets, threaded=self.shares_worker))
        self.save_record()

    def deliver(self, msg: dict) -> None:
        """From the worker's reader thread: queued for poll() on the main thread."""
        self._queue.put(msg)

    def kill(self) -> None:
        if self.worker:
            self.worker.stop_job(self.id)

    # --- state ---------------------------------------------------------------------------------
    @property
    def cost(self) -> float | None:
        return (self.result or {}).get("cost")

    @property
    def cost_unit(self) -> str:
        return (self.result or {}).get("cost_unit") or self.info.cost_unit

    @property
    def on_gpu(self) -> bool:
        """One GPU: such jobs run one at a time."""
        return self.info.worker == registry.GPU

    @property
    def shares_worker(self) -> bool:
        """Hosted jobs mostly wait on the network: several run on threads of one worker process."""
        return self.info.worker == registry.SHARED

    @property
    def is_quote(self) -> bool:
        """A cost quote (Scenario's dry run): nothing is generated, nothing is spent."""
        return bool(self.options.get("quote_only"))

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def elapsed(self) -> float:
        if self.state == QUEUED:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def poll(self) -> bool:
        """Apply queued worker messages; True if anything a user sees changed. Never blocks. A worker that
        sends heartbeats and then falls silent (stopped, hung) fails the job after SILENT_SECONDS."""
        changed = False
        while True:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                break
            self.heard = time.monotonic()
            if msg["type"] == "heartbeat":
                self.beating = True
                continue
            changed = True
            self._apply(msg)
        if self.beating and self.state == RUNNING and time.monotonic() - self.heard > SILENT_SECONDS:
            self.fail(f"The worker stopped answering (no message for {SILENT_SECONDS:g} s) and was ended",
                      protocol.ErrorCode.WORKER_EXIT)
            changed = True
        return changed

    def _apply(self, msg: dict) -> None:
        kind = msg["type"]
        if self.is_finished and kind != protocol.EXIT:
            return
        if kind == "hello":
            self.state, self.text = RUNNING, "Worker started"
        elif kind == "progress":
            self.state = RUNNING
            self.stage, self.step, self.total = msg.get("stage", ""), msg.get("step", 0), msg.get("total", 0)
            self.fraction = float(msg.get("fraction", self.fraction))
            self.text = msg.get("text") or self.stage
        elif kind == "log":
            self.messages.append(msg.get("text", ""))
        elif kind == "remote_task":
            self.remote = {k: v for k, v in msg.items() if k not in ("type", "id")}
            same = [t for t in self.remote_tasks if t.get("task_id") == self.remote.get("task_id")]
            self.remote_tasks = [self.remote if t in same else t for t in self.remote_tasks]  # a resumed one
            if not same:
                self.remote_tasks.append(self.remote)
            self.save_record()  # a paid task id is on disk before anything else can go wrong
        elif kind == "result":
            history.history.invalidate(self.output_dir)  # result.json is on disk
            self.result = dict(msg, cost=sane_cost(msg.get("cost")))
            for listener in RESULT_LISTENERS:
                listener(self)
            self.state, self.fraction, self.text = IMPORTING, 1.0, "Importing"
            if self.build_wanted is not None and self.build_wanted(self):
                self.state, self.text = BUILDING, "Importing in the background"
            if self.worker and not self.worker.persistent:
                self.worker.close_stdin()  # a per-job worker exits once its stdin closes
        elif kind == "error":
            self.fail(msg.get("message", "unknown error"), protocol.ErrorCode.parse(msg.get("code")))
        elif kind == "cancelled":
            self.set_finished(CANCELLED, "Cancelled")
        elif kind == protocol.EXIT and self.state in (STARTING, RUNNING):
            tail = msg.get("log_tail", "").strip()
            detail = f"\nLast lines of {self.log_path}:\n{tail}" if tail else ""
            self.fail(f"Worker stopped unexpectedly (exit code {msg['code']}){detail}", protocol.ErrorCode.WORKER_EXIT)

    def fail(self, message: str, code: protocol.ErrorCode = protocol.ErrorCode.INTERNAL) -> None:
        self.error, self.error_code = message, code
        self.set_finished(FAILED, message.splitlines()[0])
        self.kill()

    def cancel(self) -> None:
        if not self.is_finished:
            self.started = self.started if self.worker else time.monotonic()
            self.set_finished(CANCELLED, "Cancelled")
            self.kill()

    def interrupt(self) -> None:
        """Blender stops (quit, add-on disabled): a submitted hosted task is left running and its job.json
        says "interrupted" (the next start polls it again, never submits again); anything else is
        cancelled."""
        if self.is_finished:
            return
        if not self.has_paid_task:
            self.cancel()
            return
        self.interrupted = True
        self.set_finished(CANCELLED, "Interrupted: resumed on the next start")
        self.kill()

    @property
    def has_paid_task(self) -> bool:
        """A hosted task was submitted and its result is not here yet."""
        return bool(self.remote_tasks) and self.info.needs_network and self.result is None

    def set_finished(self, state: str, text: str) -> None:
        history.history.invalidate(self.output_dir)
        self.state, self.text = state, text
        self.finished = time.monotonic()
        self.save_record()
        code = self.error_code.value if self.error_code else None
        failed_there = state == FAILED and code in history.PROVIDER_FINAL  # the entry is no longer pending
        if not self.from_cache and (not self.has_paid_task or failed_there):
            files.submit_io(entry_lock.release, self.output_dir)  # after the record write queued before it

    def answer_from(self, entry: history.Entry) -> None:
        """History holds this very request (found once the input was prepared): its result is imported at no
        cost, and the folder made for this job goes."""
        own = self.output_dir
        for name, value in cached_answer(entry).items():
            setattr(self, name, value)
        self.log_path = os.path.join(self.output_dir, "worker.log")
        self.text, self.fraction = "From cache", 1.0
        files.submit_io(discard_folder, own)

    # --- record --------------------------------------------------------------------------------
    def record(self) -> Record:
        """What the job sent and got: files relative to its folder."""
        result = self.result or {}
        return Record(
            id=self.id, name=self.name, image=self.image_ref, backend=self.backend, mode=self.mode, model=self.model,
            settings=self.settings, state="interrupted" if self.interrupted else self.state, error=self.error,
            error_code=self.error_code.value if self.error_code else None, created=self.created,
            seconds=round(self.elapsed, 3),
            files=[os.path.relpath(f, self.output_dir) for f in result.get("files", [])],
            seeds=list(result.get("seeds", [])), cost=result.get("cost"), cost_unit=self.cost_unit if result else None,
            target_size=self.target_size, remote=self.remote, remote_tasks=self.remote_tasks, objects=self.objects,
            log=self.log_path, image_hash=self.image_sha, cache_key=self.cache_key, info=result.get("info", {}),
            from_cache=bool(self.from_cache), finish=dict(self.finish or {}), qa=list(self.qa))

    def save_record(self) -> None:
        """job.json, on the file thread."""
        if self.from_cache:
            return  # its folder belongs to the history entry that answered it
        files.submit_io(history.write_json_atomic, os.path.join(self.output_dir, history.JOB),
                        self.record().to_json())


def cached_answer(entry: history.Entry) -> dict:
    """Job keywords for a request history already answered: its folder, input and files; no cost."""
    return dict(output_dir=entry.folder, rgba_path=os.path.join(entry.folder, history.INPUT), from_cache=entry.id,
                state=IMPORTING, result={"files": entry.files, "seeds": entry.record.get("seeds", []), "cost": 0.0})


def discard_folder(folder: str) -> None:
    """A job folder that never sent anything (its input was unreadable, or history answered it): gone."""
    entry_lock.release(folder)
    shutil.rmtree(folder, ignore_errors=True)
    history.history.invalidate(folder)
