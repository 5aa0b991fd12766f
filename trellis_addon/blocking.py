"""Waiting for jobs where Blender may block (scripts, background mode, the command line): progress lines,
Ctrl-C, and how another operator should call trellis.generate."""
from __future__ import annotations

import contextlib
import signal
import time

import bpy

from .queue import IMPORTING, QUEUED, Job, manager


def progress_line(job: Job) -> str:
    if job.state == QUEUED:
        return f"TRELLIS {job.name}: queued ({manager.queued_ahead(job)} ahead, {len(manager.running())} running)"
    step = f" {job.step}/{job.total}" if job.total else ""
    return f"TRELLIS {job.name}: {job.fraction * 100:5.1f}% {job.text}{step} [{job.elapsed:.1f}s]"


def wait(job: Job, max_parallel: int | None = None) -> None:
    """Block until the job is ready to import or finished, printing a line when its step changes.
    KeyboardInterrupt propagates."""
    last = ""
    while not (job.state == IMPORTING or job.is_finished):
        check_interrupt()
        manager.poll_all(max_parallel)
        line = progress_line(job)
        if line.split("[")[0] != last.split("[")[0]:
            print(line, flush=True)
            last = line
        time.sleep(0.05)


_PRESSED = []  # a Ctrl-C while ctrl_c_interrupts is on (for check_interrupt)


def _raise_interrupt(signum, frame):
    _PRESSED.append(signum)
    raise KeyboardInterrupt


def check_interrupt() -> None:
    """Raise KeyboardInterrupt again where a Ctrl-C was pressed: raised inside a weakref callback or a
    destructor (the garbage collector runs them anywhere), Python only prints it and goes on."""
    if _PRESSED:
        raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_interrupts():
    """While Blender blocks on jobs, Ctrl-C raises KeyboardInterrupt. `blender -b` handles SIGINT itself
    (a first press only flags a break), which would let a job or a batch run on."""
    try:
        previous = signal.signal(signal.SIGINT, _raise_interrupt)
    except (ValueError, OSError):  # not the main thread: leave it alone
        previous = False
    _PRESSED.clear()
    try:
        yield
    finally:
        _PRESSED.clear()
        if previous is not False:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def operator_mode() -> str:
    """How to call trellis.generate from another operator: modal with a window, blocking without."""
    return "EXEC_DEFAULT" if bpy.app.background or bpy.context.window is None else "INVOKE_DEFAULT"
