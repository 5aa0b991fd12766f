"""Worker processes: one kind of worker is a WorkerSpec (its command line, environment and log), so a
Python worker (`python -m backend`) and, later, a background Blender speak the same JSON-lines
protocol through the same WorkerProcess.

A reader thread per process routes protocol messages to the jobs it serves, by job id; Blender's main
thread only drains each job's queue.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from ...backend import protocol, registry
from ..paths import EXTENSION_ROOT

LOG_TAIL_LINES = 12
LOG_MAX_BYTES = 5 * 1024 * 1024  # a worker log over this is moved to LOG.1 when a worker starts
KILL_GRACE_SECONDS = 2.0
CANCEL_GRACE_SECONDS = 10.0  # a persistent worker gets this long to stop a job before it is killed


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one kind of worker. Two workers with the same key are interchangeable."""
    key: tuple
    command: tuple
    log_path: str
    env: dict = field(default_factory=dict)  # added to the add-on's environment
    persistent: bool = True  # serves job after job (False: one job, then its stdin closes)
    cwd: str = EXTENSION_ROOT


def python_worker(*, log_path: str, python: str | None = None, env: dict | None = None, isolated: bool = True,
                  idle_exit: float = 0.0, persistent: bool = True, key: tuple = ()) -> WorkerSpec:
    """`python -m backend` in the extension's folder: Blender's own Python unless told otherwise."""
    python = python or sys.executable
    flags = ("-s", "-E") if isolated else ("-s",)  # -E drops PYTHONPATH: not for TRELLIS.2 checkouts
    extra = ("--idle-exit", f"{idle_exit:g}") if idle_exit else ()
    return WorkerSpec(key=key or (python, isolated, idle_exit), command=(python, *flags, "-u", "-m", "backend", *extra),
                      log_path=log_path, env=dict(env or {}), persistent=persistent)


def rotate_log(path: str, max_bytes: int = LOG_MAX_BYTES) -> bool:
    """Move a log over max_bytes to path + ".1" (replacing the older one); True if moved. A worker still
    writing to it goes on in the .1 file (Windows keeps an open log where it is)."""
    try:
        if os.path.getsize(path) <= max_bytes:
            return False
        os.replace(path, path + ".1")
        return True
    except OSError:
        return False


def credential_variables() -> set[str]:
    """The environment variables that may hold a key (every registry credential's)."""
    return {c.env for b in registry.BACKENDS for c in b.credentials}


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class WorkerProcess:
    """One worker process in its own process group, serving the jobs submitted to it."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.key, self.persistent, self.log_path = spec.key, spec.persistent, spec.log_path
        self.jobs: dict = {}  # job id -> Job (anything with .id and .deliver(msg))
        self.busy: set[str] = set()
        self.idle_since: float | None = time.monotonic()
        self.proc: subprocess.Popen | None = None
        self.stopping = False  # stdin closed or killed: takes no more jobs
        self.lock = threading.Lock()

    def start(self) -> "WorkerProcess":
        popen_extra = ({"start_new_session": True} if os.name == "posix"
                       else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP})
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        rotate_log(self.log_path)
        env = dict(os.environ, PYTHONIOENCODING="utf-8", **self.spec.env)
        for name in credential_variables():  # keys reach workers over stdin only
            env.pop(name, None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(list(self.spec.command), cwd=self.spec.cwd, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, env=env, **popen_extra)
        self.reader = threading.Thread(target=self._read, name="trellis-worker", daemon=True)
        self.reader.start()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def serving(self) -> list:
        with self.lock:
            return [self.jobs[i] for i in self.busy if i in self.jobs]

    def submit(self, job, line: str) -> None:
        with self.lock:
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
            with self.lock:
                targets = [self.jobs[msg["id"]]] if msg.get("id") in self.jobs else list(self.jobs.values())
                if msg["type"] in protocol.FINAL:
                    self.busy.discard(msg.get("id"))
                    self.jobs.pop(msg.get("id"), None)  # done with it: later exits do not concern it
                    if not self.busy:
                        self.idle_since = time.monotonic()
            for job in targets:
                job.deliver(msg)
        code = self.proc.wait()
        exit_msg = {"type": protocol.EXIT, "code": code, "log_tail": log_tail(self.log_path)}
        with self.lock:
            targets = list(self.jobs.values())
        for job in targets:
            job.deliver(exit_msg)

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

    def wait_exit(self, timeout: float) -> None:
        """After close_stdin: wait for the process and its reader thread (killed when it overstays)."""
        end = time.monotonic() + timeout
        try:
            self.proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.join(max(0.1, end - time.monotonic()))


def _signal_group(proc: subprocess.Popen, sig) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass
