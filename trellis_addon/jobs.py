"""Jobs and the worker processes that run them.

A reader thread per job turns the worker's protocol lines into a queue; Blender's main thread only
drains that queue (Job.poll), so it never blocks on a pipe. Files are written by a background thread.
"""
from __future__ import annotations

import atexit
import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from ..backend import protocol, registry
from . import history

EXTENSION_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_TAIL_LINES = 12
KILL_GRACE_SECONDS = 2.0
CANCEL_GRACE_SECONDS = 10.0  # a persistent worker gets this long to stop a job before it is killed
POOL_IDLE_SECONDS = 60.0  # a warm worker for hosted/offline jobs exits after this long without a job
SHARED_JOBS_PER_WORKER = 8  # hosted jobs one pooled worker runs at once, each on its own thread

# Job states
QUEUED, STARTING, RUNNING, IMPORTING, DONE, FAILED, CANCELLED = (
    "queued", "starting", "running", "importing", "done", "failed", "cancelled")
LOCAL_BACKENDS = ("local",)  # one GPU: these run one at a time; others up to JobManager.max_parallel
FINISHED_STATES = (DONE, FAILED, CANCELLED)

_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trellis-io")


def submit_io(fn, *args):
    """Run fn(*args) on the background file thread (never on Blender's main thread); a Future, or
    None when it ran at once (shutting down)."""
    try:
        return _io.submit(fn, *args)
    except RuntimeError:  # shutting down
        fn(*args)
        return None


def flush_records(timeout: float = 10.0) -> None:
    """Wait until every queued record write is on disk (blocking runs and tests)."""
    try:
        _io.submit(lambda: None).result(timeout)
    except RuntimeError:
        pass  # executor already shut down: nothing queued


def _log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class WorkerProcess:
    """One `python -m backend` process in its own process group. A reader thread routes its protocol
    messages to the jobs it serves, by job id. Per-job workers end when their job does; a persistent
    worker (local GPU) serves job after job with the model kept loaded."""

    def __init__(self, *, python: str | None = None, env: dict | None = None, isolated: bool = True,
                 log_path: str, persistent: bool = False, idle_exit: float = 0.0, key=None):
        self.python = python or sys.executable  # Blender's own Python unless told otherwise
        self.env = dict(os.environ, PYTHONIOENCODING="utf-8", **(env or {}))
        self.isolated, self.log_path, self.persistent, self.key = isolated, log_path, persistent, key
        self.idle_exit = idle_exit
        self.jobs: dict[str, Job] = {}
        self.busy: set[str] = set()
        self.idle_since = time.monotonic()
        self.proc: subprocess.Popen | None = None
        self.stopping = False  # stdin closed or killed: takes no more jobs
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        flags = ["-s", "-E"] if self.isolated else ["-s"]  # -E drops PYTHONPATH: not for TRELLIS.2 checkouts
        extra = ["--idle-exit", f"{self.idle_exit:g}"] if self.idle_exit else []
        return [self.python, *flags, "-u", "-m", "backend", *extra]

    def start(self) -> "WorkerProcess":
        popen_extra = ({"start_new_session": True} if os.name == "posix"
                       else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP})
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=EXTENSION_ROOT, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, env=self.env, **popen_extra)
        self.reader = threading.Thread(target=self._read, name="trellis-worker", daemon=True)
        self.reader.start()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def submit(self, job: "Job", line: str) -> None:
        with self._lock:
            self.jobs[job.id] = job
            self.busy.add(job.id)
            self.idle_since = None
        self.send(line)

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line.encode("utf-8"))
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the worker is gone; the reader thread reports how it ended

    def close_stdin(self) -> None:
        self.stopping = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                msg = protocol.decode(raw)
            except ValueError:
                msg = {"type": "log", "level": "warning", "text": raw.decode("utf-8", "replace")}
            with self._lock:
                targets = [self.jobs[msg["id"]]] if msg.get("id") in self.jobs else list(self.jobs.values())
                if msg["type"] in ("result", "error", "cancelled"):
                    self.busy.discard(msg.get("id"))
                    self.jobs.pop(msg.get("id"), None)  # done with it: later exits do not concern it
                    if not self.busy:
                        self.idle_since = time.monotonic()
            for job in targets:
                job._queue.put(msg)
        code = self.proc.wait()
        exit_msg = {"type": "exit", "code": code, "log_tail": _log_tail(self.log_path)}
        with self._lock:
            targets = list(self.jobs.values())
        for job in targets:
            job._queue.put(exit_msg)

    def stop_job(self, job_id: str) -> None:
        """Cancel one job. A persistent worker is asked first (the model stays loaded) and killed only
        if it does not stop within the grace period; a per-job worker is stopped at once."""
        if not self.alive:
            return
        if not self.persistent:
            self.kill()
            return
        if job_id not in self.busy:
            return  # already answered: nothing to stop
        self.send(protocol.encode("cancel", id=job_id))

        def enforce():
            end = time.monotonic() + CANCEL_GRACE_SECONDS
            while time.monotonic() < end and job_id in self.busy and self.alive:
                time.sleep(0.05)
            if job_id in self.busy:
                self.kill()
        threading.Thread(target=enforce, daemon=True).start()

    def kill(self) -> None:
        """Stop the whole process group: TERM, then KILL after a grace period."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self.close_stdin()
        _signal_group(proc, getattr(signal, "SIGTERM", None))

        def finish_off():
            try:
                proc.wait(KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(proc, getattr(signal, "SIGKILL", None))
        threading.Thread(target=finish_off, daemon=True).start()


class Job:
    def __init__(self, *, name: str, backend: str, settings: dict, rgba_path: str, output_dir: str,
                 image_ref: str, target_size: float = 0.0, options: dict | None = None,
                 secrets: dict | None = None, mode: str = "generate", mesh_path: str | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.name = name
        self.backend = backend
        self.settings = settings
        self.rgba_path = rgba_path
        self.output_dir = output_dir
        self.image_ref = image_ref
        self.target_size = target_size
        self.options = options or {}
        self._secrets = secrets or {}  # sent to the worker over its stdin only; never recorded
        self.mode, self.mesh_path = mode, mesh_path  # "retexture": mesh_path is the GLB to re-texture
        self.remote: dict | None = None  # the latest submitted remote task, recorded at once
        self.remote_tasks: list[dict] = []  # every one (a hosted job per result)
        self.log_path = os.path.join(output_dir, "worker.log")
        self.state = QUEUED
        self.stage = ""
        self.text = "Queued"
        self.step = self.total = 0
        self.fraction = 0.0
        self.created = time.time()
        self.started = time.monotonic()
        self.finished: float | None = None
        self.result: dict | None = None
        self.error: str | None = None
        self.objects: list[str] = []
        self.messages = collections.deque(maxlen=50)
        self.worker: WorkerProcess | None = None
        self.launch = None  # callable returning the WorkerProcess to use (None: one of its own)
        self.anchor = ""  # name of the object the result is placed next to ("" : the 3D cursor)
        self.image_sha = self.cache_key = ""  # see history.py
        self.from_cache = ""  # id of the history entry that answered this request
        self._queue: queue.Queue = queue.Queue()

    # --- process -------------------------------------------------------------------------------
    @property
    def proc(self) -> subprocess.Popen | None:
        return self.worker.proc if self.worker else None

    def start(self, worker: WorkerProcess | None = None) -> None:
        """Send the job to a worker: the given persistent one, or a new one of its own."""
        os.makedirs(self.output_dir, exist_ok=True)
        self.state, self.text, self.started = STARTING, "Starting worker", time.monotonic()
        self.worker = worker or WorkerProcess(log_path=self.log_path).start()
        self.log_path = self.worker.log_path
        job_input = {"rgba": self.rgba_path, "name": self.name}
        if self.mesh_path:
            job_input["mesh"] = self.mesh_path
        self.worker.submit(self, protocol.encode(
            "job", id=self.id, backend=self.backend, mode=self.mode, input=job_input, settings=self.settings,
            output_dir=self.output_dir, options=self.options, secrets=self._secrets, threaded=self.shares_worker))
        self.save_record()

    def _release_worker(self) -> None:
        if self.worker and not self.worker.persistent:
            self.worker.close_stdin()  # a per-job worker exits once its stdin closes

    def kill(self) -> None:
        if self.worker:
            self.worker.stop_job(self.id)

    # --- state ---------------------------------------------------------------------------------
    @property
    def cost(self) -> float | None:
        return (self.result or {}).get("cost")

    @property
    def is_local(self) -> bool:
        return self.backend in LOCAL_BACKENDS

    @property
    def shares_worker(self) -> bool:
        """Hosted jobs mostly wait on the network: several run on threads of one worker process."""
        info = registry.BY_ID.get(self.backend)
        return bool(info and info.needs_network)

    @property
    def is_quote(self) -> bool:
        """A cost quote (Scenario's dry run): nothing is generated, nothing is spent."""
        return bool(self.options.get("quote_only"))

    @property
    def cost_unit(self) -> str:
        return (self.result or {}).get("cost_unit") or "USD"

    def cost_text(self) -> str:
        """The cost as the panel shows it: "$0.0125" or "12 CU"."""
        if self.cost is None:
            return ""
        return f"${self.cost:.4f}" if self.cost_unit == "USD" else f"{self.cost:g} {self.cost_unit}"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def elapsed(self) -> float:
        if self.state == QUEUED:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def poll(self) -> bool:
        """Apply queued worker messages; True if anything changed. Never blocks."""
        changed = False
        while True:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                return changed
            changed = True
            self._apply(msg)

    def _apply(self, msg: dict) -> None:
        kind = msg["type"]
        if self.is_finished and kind != "exit":
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
            self.remote_tasks.append(self.remote)
            self.save_record()  # a paid task id is on disk before anything else can go wrong
        elif kind == "result":
            history.history.invalidate()  # result.json is on disk
            self.result = msg
            if self.cost_unit != "USD" and msg.get("cost") is not None:  # for the credit cap's estimates
                count = len(msg.get("seeds") or []) or (msg.get("info") or {}).get("number_results") or 1
                manager.credit_prices[(self.backend, self.mode, self.settings.get("resolution"))] = (
                    float(msg["cost"]) / count)
            if self.is_quote:
                pass  # a price, not a spend
            elif self.cost_unit == "USD":
                manager.session_cost += float(msg.get("cost") or 0.0)
            else:  # Scenario's creative units: never mixed into the USD spending guard
                manager.session_credits[self.cost_unit] = (manager.session_credits.get(self.cost_unit, 0.0)
                                                           + float(msg.get("cost") or 0.0))
            self.state, self.fraction, self.text = IMPORTING, 1.0, "Importing"
            self._release_worker()
        elif kind == "error":
            self.fail(msg.get("message", "unknown error"))
        elif kind == "cancelled":
            self.set_finished(CANCELLED, "Cancelled")
        elif kind == "exit" and self.state in (STARTING, RUNNING):
            tail = msg.get("log_tail", "").strip()
            detail = f"\nLast lines of {self.log_path}:\n{tail}" if tail else ""
            self.fail(f"Worker stopped unexpectedly (exit code {msg['code']}){detail}")

    def fail(self, message: str) -> None:
        self.error = message
        self.set_finished(FAILED, message.splitlines()[0])
        self.kill()

    def cancel(self) -> None:
        if not self.is_finished:
            self.started = self.started if self.worker else time.monotonic()
            self.set_finished(CANCELLED, "Cancelled")
            self.kill()

    def set_finished(self, state: str, text: str) -> None:
        history.history.invalidate()
        self.state, self.text = state, text
        self.finished = time.monotonic()
        self.finished_wall = time.time()
        self.save_record()

    # --- record --------------------------------------------------------------------------------
    def record(self) -> dict:
        result = self.result or {}
        return {
            "id": self.id, "name": self.name, "image": self.image_ref, "backend": self.backend, "mode": self.mode,
            "settings": self.settings, "state": self.state, "error": self.error,
            "created": self.created, "seconds": round(self.elapsed, 3),
            "files": result.get("files", []), "seeds": result.get("seeds", []), "cost": result.get("cost"),
            "cost_unit": self.cost_unit if result else None, "target_size": self.target_size,
            "remote": self.remote, "remote_tasks": self.remote_tasks, "objects": self.objects, "log": self.log_path,
        }

    def save_record(self) -> None:
        if self.from_cache:
            return  # its folder belongs to the history entry that answered it
        path = os.path.join(self.output_dir, "job.json")
        try:
            _io.submit(history.write_json_atomic, path, self.record())
        except RuntimeError:  # interpreter shutting down: write now
            history.write_json_atomic(path, self.record())


def _signal_group(proc: subprocess.Popen, sig) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


class JobManager:
    def __init__(self):
        self.jobs: list[Job] = []
        self.session_cost = 0.0  # USD reported by hosted backends this session
        self.session_credits: dict[str, float] = {}  # other cost units (Scenario's "CU") this session
        self.credit_prices: dict[tuple, float] = {}  # (backend, mode, resolution) -> last price per result
        self.modal_timings: list[float] = []  # seconds per modal callback, last modal job
        self._persistent: WorkerProcess | None = None
        self._pool: list[WorkerProcess] = []  # warm workers for offline jobs (one at a time) and hosted ones

    max_parallel = 3  # hosted and offline jobs running at once (preference); local ones run one at a time

    def add(self, job: Job, launch=None) -> Job:
        """Queue a prepared job; pump() starts it when a slot is free."""
        job.launch = launch
        self.jobs.append(job)
        finished = [j for j in self.jobs if j.is_finished]
        for old in finished[:-20]:  # the panel shows recent finished jobs only
            self.jobs.remove(old)
        return job

    def active(self) -> list[Job]:
        return [j for j in self.jobs if not j.is_finished]

    def running(self) -> list[Job]:
        return [j for j in self.jobs if j.state in (STARTING, RUNNING)]

    def pump(self, max_parallel: int | None = None) -> list[Job]:
        """Start queued jobs, oldest first, while slots are free: one local job at a time, up to
        max_parallel others. Returns the jobs started. Never blocks on a worker."""
        limit = max(1, max_parallel or self.max_parallel)
        self.reap_idle()
        running = self.running()
        local_busy = any(j.is_local for j in running)
        others = sum(not j.is_local for j in running)
        started = []
        for job in [j for j in self.jobs if j.state == QUEUED]:
            if job.is_local:
                if local_busy:
                    continue
                local_busy = True
            else:
                if others >= limit:
                    continue
                others += 1
            try:
                job.start(job.launch() if job.launch else None)
            except Exception as exc:  # a worker that cannot start fails its job, not the queue
                job.fail(f"Could not start the worker: {exc}")
                continue
            started.append(job)
        return started

    def poll_all(self, max_parallel: int | None = None) -> list[Job]:
        """Apply every job's messages, then pump(): a slot freed now is refilled at once. The jobs that
        changed."""
        changed = [j for j in self.jobs if j.poll()]
        self.pump(max_parallel)
        return changed

    def get(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    def cancel_all(self) -> None:
        for job in self.active():
            job.cancel()

    def persistent_worker(self, key, make) -> WorkerProcess:
        """The warm worker for `key` (backend and its configuration), started by make() when there is
        none, it died, or the configuration changed."""
        worker = self._persistent
        if worker is None or not worker.alive or worker.key != key:
            if worker is not None and worker.alive:
                worker.close_stdin()  # configuration changed: the old one exits
            self._persistent = worker = make().start()
        return worker

    def pooled_worker(self, key, make, job: Job | None = None) -> WorkerProcess:
        """A warm worker for `key`, or a new one: no process start and imports per job. A job that
        shares_worker joins one already running such jobs (up to SHARED_JOBS_PER_WORKER); any other
        gets an idle worker to itself."""
        self._pool = [w for w in self._pool if w.alive]
        candidates = [w for w in self._pool if w.key == key and not w.stopping]
        if job is not None and job.shares_worker:
            for worker in candidates:
                with worker._lock:
                    sharing = [worker.jobs.get(i) for i in worker.busy]
                if 0 < len(sharing) < SHARED_JOBS_PER_WORKER and all(j and j.shares_worker for j in sharing):
                    return worker
        for worker in candidates:
            if not worker.busy:
                return worker
        worker = make().start()
        self._pool.append(worker)
        return worker

    def reap_idle(self, seconds: float = POOL_IDLE_SECONDS) -> None:
        """Let pooled workers that waited `seconds` without a job exit (EOF), before any new job."""
        now = time.monotonic()
        for worker in list(self._pool):
            if not worker.alive or (worker.idle_since is not None and now - worker.idle_since > seconds):
                worker.close_stdin()
                self._pool.remove(worker)

    def unload(self) -> bool:
        """Stop the warm worker (frees GPU memory); True if one was running."""
        worker, self._persistent = self._persistent, None
        if worker is None or not worker.alive:
            return False
        worker.close_stdin()  # EOF: it cancels what it runs and exits
        return True

    def shutdown(self) -> None:
        self.cancel_all()
        self.unload()
        self.reap_idle(seconds=-1.0)

    def stop_workers(self, timeout: float = 5.0) -> None:
        """At exit: cancel what runs, let every warm worker exit (EOF) and wait for it and its reader
        thread, so no thread reads a pipe while the interpreter is torn down (bpy 4.2 crashed)."""
        workers = [w for w in [self._persistent, *self._pool] if w is not None]
        self.shutdown()
        end = time.monotonic() + timeout
        for worker in workers:
            worker.close_stdin()
            try:
                worker.proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
            reader = getattr(worker, "reader", None)
            if reader is not None:
                reader.join(max(0.1, end - time.monotonic()))
        self.jobs.clear()


manager = JobManager()
atexit.register(manager.stop_workers)  # every process: UI, scripts, `blender -c trellis`
