"""What the worker process takes from its surroundings, and how: stdin lines read with a length limit, and
an environment without the keys (they come over stdin, with each job)."""
from __future__ import annotations

import os

from . import registry

MAX_LINE = 4 * 1024 * 1024  # a longer input line is refused unread


def input_lines(fd: int = 0, limit: int = MAX_LINE):
    """The lines of stdin, read with os.read (no buffered object a daemon thread could hold at exit); None
    in place of a line over `limit` bytes, which is skipped without being kept."""
    buf, skipping = b"", False
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            if buf and not skipping:
                yield buf
            return
        start, buf = len(buf), buf + chunk
        while True:
            end = buf.find(b"\n", max(start - 1, 0) if not skipping else 0)
            if end < 0:
                if len(buf) > limit and not skipping:
                    skipping, buf = True, b""
                    yield None
                elif skipping:
                    buf = b""
                break
            line, buf, start = buf[:end + 1], buf[end + 1:], 0
            if skipping:
                skipping = False
                continue
            yield line


def forget_credentials() -> list[str]:
    """Delete every registry credential's environment variable (RUNWARE_API_KEY, SCENARIO_API_SECRET, ...,
    and those of backends registered from outside) from os.environ: keys reach workers over stdin only, and
    backend code (the local backend runs third-party Python) must not find them. os.environ deletion also
    unsets them for C code and child processes; /proc/<pid>/environ keeps the environment the process
    was started with, which the add-on strips. Returns the names deleted."""
    names = sorted({c.env for info in registry.BACKENDS for c in info.credentials if c.env in os.environ})
    for name in names:
        del os.environ[name]
    return names
