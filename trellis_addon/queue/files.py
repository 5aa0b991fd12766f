"""The add-on's file thread: record writes, scans and deletions happen here, never on Blender's main
thread."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trellis-io")


def submit_io(fn, *args):
    """Run fn(*args) on the file thread; a Future, or None when it ran at once (shutting down)."""
    try:
        return _io.submit(fn, *args)
    except RuntimeError:  # shutting down
        fn(*args)
        return None


def flush_records(timeout: float = 10.0) -> None:
    """Wait until everything queued on the file thread is done (blocking runs and tests)."""
    try:
        _io.submit(lambda: None).result(timeout)
    except RuntimeError:
        pass  # executor already shut down: nothing queued
