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

from . import protocol, providers, registry, schema


class Cancelled(Exception):
    pass


def _log(text: str) -> None:
    """A line for the worker log (stderr); never the protocol channel, never secrets."""
    print(text, file=sys.stderr, flush=True)


class JobError(Exception):
    """A failure with a message the user can act on."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


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

    def __init__(self, job: dict, channel: Channel, cancel_event: threading.Event):
        self.job = job
        self.id = job["id"]
        self.output_dir = job["output_dir"]
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


def write_result(output_dir: str, job_id: str, result: dict) -> None:
    """output_dir/result.json, atomically: what the job produced, with file names relative to the folder."""
    data = dict(result, id=job_id, files=[os.path.relpath(f, output_dir) for f in result["files"]],
                finished=time.time())
    tmp = os.path.join(output_dir, f".{RESULT_FILE}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, os.path.join(output_dir, RESULT_FILE))


def _take_protocol_channel():
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
        self.jobs: list[dict] = []
        self.cond = threading.Condition()
        self.running: dict[str, threading.Event] = {}  # job id -> its cancel flag
        self.closed = False

    def read_stdin(self) -> None:
        """Reader thread: queue jobs, flag cancels. "shutdown" lets queued work finish; EOF means
        the add-on is gone, so the running job is cancelled and the process never lingers."""
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                msg = protocol.decode(line)
            except ValueError as exc:
                print(f"ignored bad input line: {exc}", file=sys.stderr, flush=True)
                continue
            if msg["type"] == "cancel":
                with self.cond:
                    if msg.get("id") is None:
                        for event in self.running.values():
                            event.set()
                    elif msg["id"] in self.running:
                        self.running[msg["id"]].set()
                    elif any(j.get("id") == msg.get("id") for j in self.jobs):  # a queued one: drop it
                        self.jobs = [j for j in self.jobs if j.get("id") != msg.get("id")]
                        self.channel.send("cancelled", id=msg.get("id"))
            elif msg["type"] == "preload":
                threading.Thread(target=self.preload, args=(str(msg.get("backend", "")),), daemon=True).start()
            elif msg["type"] in ("job", "shutdown"):
                with self.cond:
                    if msg["type"] == "job":
                        self.jobs.append(msg)
                    else:
                        self.closed = True
                    self.cond.notify()
        with self.cond:
            self.jobs.clear()
            self.closed = True
            self.cond.notify()
            for event in self.running.values():
                event.set()
        watchdog = threading.Timer(5.0, os._exit, args=(3,))
        watchdog.daemon = True  # a job that ignores the cancel flag is cut off
        watchdog.start()

    @staticmethod
    def preload(backend_id: str) -> None:
        try:
            registry.load(backend_id)
        except Exception as exc:  # the job itself will report it
            _log(f"preload {backend_id}: {type(exc).__name__}: {exc}")

    def next_job(self, idle_exit: float | None = None) -> tuple[dict, threading.Event] | None:
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
            event = self.running[job.get("id", "?")] = threading.Event()
            return job, event

    def start_job(self, job: dict, cancel_event: threading.Event) -> threading.Thread | None:
        """Run the job: on its own thread when it asks for one (returned), else here and now."""
        if not job.get("threaded"):
            self.run_job(job, cancel_event)
            return None
        thread = threading.Thread(target=self.run_job, args=(job, cancel_event), name=f"job-{job.get('id')}")
        thread.start()
        return thread

    def run_job(self, job: dict, cancel_event: threading.Event) -> None:
        try:
            self._run_job(job, cancel_event)
        finally:
            with self.cond:
                self.running.pop(job.get("id", "?"), None)
                self.cond.notify_all()

    def _run_job(self, job: dict, cancel_event: threading.Event) -> None:
        job_id = job.get("id", "?")
        ctx = JobContext(job, self.channel, cancel_event)
        started = time.monotonic()
        _log(f"job {job_id}: backend {job.get('backend')}, settings {job.get('settings')}")
        try:
            backend = registry.load(job.get("backend", ""))
            job["settings"] = schema.validate(job.get("settings", {}))
            mode = job.setdefault("mode", "generate")
            if mode not in registry.BY_ID[job["backend"]].modes:
                raise JobError(protocol.BAD_SETTINGS, f"backend {job['backend']} cannot {mode} (it can: "
                                                      f"{', '.join(registry.BY_ID[job['backend']].modes)})")
            providers.check(job["backend"], job["settings"], mode)
            os.makedirs(job["output_dir"], exist_ok=True)
            result = backend.run(job, ctx)
            result.setdefault("cost", None)
            result.setdefault("info", {})
            result["info"]["seconds"] = round(time.monotonic() - started, 3)
            _log(f"job {job_id}: done in {result['info']['seconds']} s: {result['files']}")
            write_result(job["output_dir"], job_id, result)  # on disk before anyone is told: survives a crash
            self.channel.send("result", id=job_id, **result)
        except Cancelled:
            self.channel.send("cancelled", id=job_id)
        except schema.SettingError as exc:
            self.channel.send("error", id=job_id, code=protocol.BAD_SETTINGS, message=str(exc))
        except (KeyError, JobError) as exc:
            code = getattr(exc, "code", protocol.BAD_SETTINGS)
            self.channel.send("error", id=job_id, code=code, message=str(exc).strip("'\""))
        except Exception as exc:  # report, keep serving
            traceback.print_exc()
            self.channel.send("error", id=job_id, code=protocol.INTERNAL,
                              message=f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m backend", description="TRELLIS.2 for Blender worker")
    parser.add_argument("--idle-exit", type=float, default=0.0,
                        help="exit after this many seconds without a job (0: never)")
    args = parser.parse_args(argv)
    _log(f"TRELLIS worker pid {os.getpid()}, Python {sys.version.split()[0]}")
    channel = Channel(_take_protocol_channel())
    worker = Worker(channel)
    channel.send("hello", protocol=protocol.PROTOCOL_VERSION, pid=os.getpid(),
                 python=sys.version.split()[0], backends=[b.id for b in registry.BACKENDS])
    threading.Thread(target=worker.read_stdin, name="stdin", daemon=True).start()
    threads = []
    while True:
        taken = worker.next_job(args.idle_exit or None)
        if taken is None:
            for thread in threads:  # queued work ends first ("shutdown"); EOF has cancelled it
                thread.join()
            return 0
        threads = [t for t in threads if t.is_alive()] + [t for t in [worker.start_job(*taken)] if t]
