"""What the worker tests share: the worker process started as the add-on starts it (`python -m backend`),
protocol lines to and from it, a test image, and one hosted job run end to end."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from backend import protocol, schema
from backend.providers import mapping, runware

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Hosted options that make polls and retries fast.
FAST = {"poll_first": 0.05, "poll_factor": 1.5, "poll_cap": 0.2, "retry_base": 0.05, "retry_cap": 0.2}
ENDS = {"result", "error", "cancelled"}


def disc_rgba(size=96):
    yy, xx = np.mgrid[:size, :size]
    inside = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = xx * 2
    rgba[..., 3] = inside * 255
    return rgba


def save_rgba(tmp_path, rgba=None) -> str:
    """The prepared input image as the add-on writes it: tmp_path/input_rgba.npy."""
    path = str(tmp_path / "input_rgba.npy")
    np.save(path, disc_rgba() if rgba is None else rgba)
    return path


def start_worker(env=None, python=sys.executable, args=(), isolated=True):
    flags = ["-s", "-E", "-u"] if isolated else ["-s", "-u"]
    return subprocess.Popen([python, *flags, "-m", "backend", *args], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})))


def send(proc, msg_type, **fields):
    proc.stdin.write(protocol.encode(msg_type, **fields).encode())
    proc.stdin.flush()


def read_until(proc, types, timeout=60):
    """Protocol messages up to and including the first of `types`."""
    messages, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        assert line, f"worker closed its channel; stderr: {proc.stderr.read().decode()[-2000:]}"
        messages.append(protocol.decode(line))
        if messages[-1]["type"] in types:
            return messages
    raise AssertionError(f"no {types} within {timeout} s: {messages}")


def close(proc, timeout=10) -> str:
    """EOF to the worker, which must exit cleanly; its stderr."""
    proc.stdin.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout) == 0
    return stderr


def run_job(job: dict, env=None, timeout=60):
    """(protocol messages up to the job's end, worker stderr) of one job; the worker must exit cleanly."""
    proc = start_worker(env)
    send(proc, "job", **job)
    messages = read_until(proc, ENDS, timeout)
    return messages, close(proc)


def first_error(job: dict):
    """The last message of a job expected to fail before anything runs (the worker is closed after)."""
    proc = start_worker()
    send(proc, "job", **job)
    last = read_until(proc, ENDS | {"result"})[-1]
    close(proc)
    return last


def cancel_mid_poll(job: dict, limit=1.0):
    """Start the job, cancel it once its remote task is announced: it must end cancelled within `limit` s."""
    proc = start_worker()
    send(proc, "job", **job)
    read_until(proc, {"remote_task"})
    started = time.monotonic()
    send(proc, "cancel", id=job["id"])
    assert read_until(proc, ENDS)[-1]["type"] == "cancelled"
    assert time.monotonic() - started < limit
    close(proc)


def runware_edge_settings():
    """Every parameter at each of its edges (or choices), stages on and off, all stages at once; the values
    Runware does not take (the face budget above 1 000 000) are checked to be refused, not yielded."""
    limits = runware.MAPPINGS["generate"]
    for param in schema.PARAMS:
        values = param.choice_values() or ((True, False) if param.kind == "bool" else (param.min, param.max))
        for value in values:
            settings = schema.validate({param.name: value})
            if param.stage:
                settings[f"{param.stage}_override"] = True
            if param.name == "decimation_target" and value > limits.by_param[param.name].max:
                with pytest.raises(mapping.ProviderLimitError):  # refused before anything is built
                    limits.check(settings)
                continue
            yield settings
    yield schema.validate({stage.override: True for stage in schema.STAGES})
    yield schema.validate({stage.override: False for stage in schema.STAGES})
