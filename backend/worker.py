"""The worker process: reads jobs from stdin, runs a backend, reports on the protocol channel.

Started by the add-on as ``python -m backend`` in the extension's root folder; see protocol.py.
Jobs run one after another, except those sent with ``"threaded": true`` (hosted APIs: they mostly wait
on the network), which run on their own threads beside the rest, each with its own cancel flag.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

from . import protocol, registry, schema
from .process import MAX_LINE, forget_credentials, input_lines
from .protocol import Cancelled, ErrorCode, Job, JobError


def _log(text: str) -> None:
    """A line for the worker log (stderr); never the protocol channel, never secrets."""
    print(text, file=sys.stderr, flush=True)


class Channel:
    """Writes protocol messages to the saved stdout; thread-safe."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, msg_type: str, **fields) -> None:
        line = protocol.encode(msg_type, **fields)
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


class JobContext:
    """What a backend gets: progress reporting, logging and the cancel flag."""

    def __init__(self, job: Job, channel: Channel, cancel_event: threading.Event):
        self.job = job
        self.id = job.id
        self.output_dir = job.output_dir
        self._channel = channel
        self._cancel = cancel_event
        self._stage = ""

    def progress(self, stage: str, step: int, total: int, fraction: float, text: str = "") -> None:
        if stage != self._stage:
            self._stage = stage
            _log(f"[{time.strftime('%H:%M:%S')}] job {self.id}: {text or stage}")
        self._channel.send("progress", id=self.id, stage=stage, step=int(step), total=int(total),
                           fraction=round(min(max(fraction, 0.0), 1.0), 4), text=text)

    def log(self, text: str, level: str = "info") -> None:
        _log(f"[{level}] {text}")
        self._channel.send("log", id=self.id, level=level, text=text)

    def remote_task(self, provider: str, task_id: str, **fields) -> None:
        """Announce a submitted remote task, so the add-on records it and never loses a paid result."""
        self._channel.send("remote_task", id=self.id, provider=provider, task_id=task_id, **fields)

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()


RESULT_FILE = "result.json"
HEARTBEAT_S = 2.0  # a heartbeat per running job at least this often (the add-on gives up after 60 s of silence)


def _field(msg: dict, name: str, kind: type, default=None):
    value = msg.get(name, default)
    if not isinstance(value, kind):
        raise JobError(ErrorCode.BAD_SETTINGS, f"job field {name!r} must be {kind.__name__}, got "
                                               f"{type(value).__name__}")
    return value


def decode_job(msg: dict) -> Job:
    """The job of a protocol message, checked once for every backend: the fields' types, the backend and
    its modes, the settings (schema, then the backend's own limits in this mode), the typed options.
    Raises JobError (BAD_SETTINGS / BAD_INPUT) or schema.SettingError."""
    job_id = _field(msg, "id", str)
    backend_id = _field(msg, "backend", str, "")
    try:
        info = registry.get(backend_id)
    except KeyError as exc:
        raise JobError(ErrorCode.BAD_SETTINGS, str(exc.args[0])) from None
    mode = _field(msg, "mode", str, "generate")
    if mode not in info.modes:
        raise JobError(ErrorCode.BAD_SETTINGS, f"backend {backend_id} cannot {mode} (it can: {', '.join(info.modes)})")
    inputs = _field(msg, "input", dict, {})
    if not isinstance(inputs.get("rgba"), str) or mode == "retexture" and not isinstance(inputs.get("mesh"), str):
        raise JobError(ErrorCode.BAD_INPUT, f"job input needs the prepared image path (rgba)"
                                            f"{' and the mesh path (mesh)' if mode == 'retexture' else ''}")
    settings = schema.validate(_field(msg, "settings", dict, {}))
    registry.check(backend_id, settings, mode)
    try:
        options = protocol.options_from(info.options_kind, msg.get("options"))
    except ValueError as exc:
        raise JobError(ErrorCode.BAD_SETTINGS, str(exc)) from None
    secrets = {str(k): str(v) for k, v in _field(msg, "secrets", dict, {}).items()}
    return Job(job_id, backend_id, mode, dict(inputs), settings, _field(msg, "output_dir", str), options, secrets,
               bool(msg.get("threaded")))


def write_result(output_dir: str, job_id: str, result: dict) -> None:
    """output_dir/result.json, atomically: what the job produced, with file names relative to the folder."""
    data = dict(result, id=job_id, files=[os.path.relpath(f, output_dir) for f in result["files"]],
                finished=time.time())
    tmp = os.path.join(output_dir, f".{RESULT_FILE}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, os.path.join(output_dir, RESULT_FILE))


def take_protocol_channel():
    """Keep the real stdout for the protocol and point fd 1 at stderr, so anything a library prints
    (Python or C level) lands in the log instead of corrupting the channel."""
    sys.stdout.flush()
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


class Worker:
    def __init__(self, channel: Channel):
        self.channel = channel
        self.jobs: list[Job] = []
        self.cond = threading.Condition()
        self.running: dict[str, threading.Event] = {}  # job id -> its cancel flag
        self.closed = False

    def read_stdin(self) -> None:
        """Reader thread: queue jobs, flag cancels. "shutdown" lets queued work finish; EOF means
        the add-on is gone, so the running job is cancelled and the process never lingers. A bad line
        is answered (a job) or logged, never fatal."""
        for line in input_lines():
            if line is None:
                _log(f"ignored an input line over {MAX_LINE} bytes")
                self.channel.send("error", id=None, code=ErrorCode.BAD_SETTINGS.value,
                                  message=f"an input line over {MAX_LINE >> 20} MiB was ignored")
                continue
            if not line.strip():
                continue
            try:
                self.take(protocol.decode(line))
            except ValueError as exc:
                _log(f"ignored bad input line: {exc}")
            except Exception:  # a bug must not stop the reader: cancels and EOF still have to arrive
                _log(f"ignored input line that failed: {traceback.format_exc()}")
        with self.cond:
            self.jobs.clear()
            self.closed = True
            self.cond.notify()
            for event in self.running.values():
                event.set()
        watchdog = threading.Timer(5.0, os._exit, args=(3,))
        watchdog.daemon = True  # a job that ignores the cancel flag is cut off
        watchdog.start()

    def take(self, msg: dict) -> None:
        kind = msg["type"]
        if kind == "cancel":
            self.cancel(msg)
        elif kind == "preload":
            threading.Thread(target=self.preload, args=(str(msg.get("backend", "")),), daemon=True).start()
        elif kind == "job":
            job = self.decode(msg)
            if job is not None:
                with self.cond:
                    self.jobs.append(job)
                    self.cond.notify()
        elif kind == "shutdown":
            with self.cond:
                self.closed = True
                self.cond.notify()

    def decode(self, msg: dict) -> Job | None:
        """decode_job, or None after answering the error (under the message's id when it has one)."""
        job_id = msg.get("id") if isinstance(msg.get("id"), str) else None
        try:
            return decode_job(msg)
        except schema.SettingError as exc:
            code, text = ErrorCode.BAD_SETTINGS, str(exc)
        except JobError as exc:
            code, text = exc.code, str(exc)
        except Exception as exc:  # e.g. an outside backend's module that does not import
            code, text = ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"
        _log(f"job {job_id}: refused: {text}")
        self.channel.send("error", id=job_id, code=code.value, message=text)
        return None

    def cancel(self, msg: dict) -> None:
        job_id = msg.get("id")
        if job_id is not None and not isinstance(job_id, str):
            _log(f"ignored cancel with a non-string id: {job_id!r}")
            return
        with self.cond:
            if job_id is None:
                for event in self.running.values():
                    event.set()
            elif job_id in self.running:
                self.running[job_id].set()
            elif any(j.id == job_id for j in self.jobs):  # a queued one: drop it
                self.jobs = [j for j in self.jobs if j.id != job_id]
                self.channel.send("cancelled", id=job_id)

    def heartbeat(self, every: float = HEARTBEAT_S) -> None:
        """Heartbeat thread: {"type": "heartbeat", "id"} for each running job every `every` seconds, so the
        add-on tells a worker that waits (polls, sleeps, downloads) from one that is stopped or hung."""
        while True:
            time.sleep(every)
            with self.cond:
                ids = list(self.running)
            for job_id in ids:
                self.channel.send("heartbeat", id=job_id)

    @staticmethod
    def preload(backend_id: str) -> None:
        try:
            registry.load(backend_id)
        except Exception as exc:  # the job itself will report it
            _log(f"preload {backend_id}: {type(exc).__name__}: {exc}")

    def next_job(self, idle_exit: float | None = None) -> tuple[Job, threading.Event] | None:
        """(the next job, its cancel flag); None when closed, or after idle_exit seconds with nothing
        to do (frees the GPU)."""
        deadline = None
        with self.cond:
            while not self.jobs and not self.closed:
                if self.running or not idle_exit:
                    deadline = None
                    self.cond.wait()  # woken by a new job, or a threaded job's end
                    continue
                deadline = deadline or time.monotonic() + idle_exit
                left = deadline - time.monotonic()
                if left <= 0:
                    _log(f"idle for {idle_exit:g} s: exiting to free memory")
                    return None
                self.cond.wait(left)
            if not self.jobs:
                return None
            job = self.jobs.pop(0)
            event = self.running[job.id] = threading.Event()
            return job, event

    def start_job(self, job: Job, cancel_event: threading.Event) -> threading.Thread | None:
        """Run the job: on its own thread when it asks for one (returned), else here and now."""
        if not job.threaded:
            self.run_job(job, cancel_event)
            return None
        thread = threading.Thread(target=self.run_job, args=(job, cancel_event), name=f"job-{job.id}")
        thread.start()
        return thread

    def run_job(self, job: Job, cancel_event: threading.Event) -> None:
        try:
            self._run_job(job, cancel_event)
        finally:
            with self.cond:
                self.running.pop(job.id, None)
                self.cond.notify_all()

    def _run_job(self, job: Job, cancel_event: threading.Event) -> None:
        ctx = JobContext(job, self.channel, cancel_event)
        started = time.monotonic()
        _log(f"job {job.id}: backend {job.backend} ({job.mode}), settings {job.settings}")
        try:
            backend = registry.load(job.backend)
            os.makedirs(job.output_dir, exist_ok=True)
            result = backend.run(job, ctx)
            result.setdefault("cost", None)
            result["cost_unit"] = registry.get(job.backend).cost_unit
            result.setdefault("info", {})
            result["info"]["seconds"] = round(time.monotonic() - started, 3)
            _log(f"job {job.id}: done in {result['info']['seconds']} s: {result['files']}")
            write_result(job.output_dir, job.id, result)  # on disk before anyone is told: survives a crash
            self.channel.send("result", id=job.id, **result)
        except Cancelled:
            self.channel.send("cancelled", id=job.id)
        except schema.SettingError as exc:
            self.channel.send("error", id=job.id, code=ErrorCode.BAD_SETTINGS.value, message=str(exc))
        except JobError as exc:
            self.channel.send("error", id=job.id, code=exc.code.value, message=str(exc))
        except Exception as exc:  # report, keep serving
            traceback.print_exc()
            self.channel.send("error", id=job.id, code=ErrorCode.INTERNAL.value, message=f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m backend", description="TRELLIS.2 for Blender worker")
    parser.add_argument("--idle-exit", type=float, default=0.0,
                        help="exit after this many seconds without a job (0: never)")
    args = parser.parse_args(argv)
    _log(f"TRELLIS worker pid {os.getpid()}, Python {sys.version.split()[0]}")
    forgotten = forget_credentials()
    if forgotten:
        _log(f"removed from the environment: {', '.join(forgotten)} (keys come with each job)")
    channel = Channel(take_protocol_channel())
    worker = Worker(channel)
    channel.send("hello", protocol=protocol.PROTOCOL_VERSION, pid=os.getpid(),
                 python=sys.version.split()[0], backends=[b.id for b in registry.BACKENDS])
    threading.Thread(target=worker.read_stdin, name="stdin", daemon=True).start()
    threading.Thread(target=worker.heartbeat, name="heartbeat", daemon=True).start()
    threads = []
    while True:
        taken = worker.next_job(args.idle_exit or None)
        if taken is None:
            for thread in threads:  # queued work ends first ("shutdown"); EOF has cancelled it
                thread.join()
            return 0
        threads = [t for t in threads if t.is_alive()] + [t for t in [worker.start_job(*taken)] if t]
