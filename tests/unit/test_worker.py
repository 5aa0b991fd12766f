"""The worker process and its JSON-lines protocol, run as the add-on runs it: `python -m backend`."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from backend import glb, protocol

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def disc_rgba(size=96):
    yy, xx = np.mgrid[:size, :size]
    inside = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = xx * 2
    rgba[..., 3] = inside * 255
    return rgba


def start_worker(env=None):
    return subprocess.Popen([sys.executable, "-s", "-E", "-u", "-m", "backend"], cwd=ROOT, stdin=subprocess.PIPE,
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


def job(tmp_path, **settings):
    rgba_path = str(tmp_path / "input_rgba.npy")
    np.save(rgba_path, disc_rgba())
    base = {"resolution": 512, "texture_size": 1024, "decimation_target": 100000, "seed": 7}
    return dict(id="j1", backend="preview", input={"rgba": rgba_path, "name": "disc"},
                settings=dict(base, **settings), output_dir=str(tmp_path / "out"))


def test_library_output_never_reaches_the_protocol_channel(tmp_path):
    code = ("import os, sys; from backend import worker; ch = worker.Channel(worker._take_protocol_channel()); "
            "print('python noise'); os.system('echo c-level noise'); ch.send('hello', x=1); print('more')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert [protocol.decode(line) for line in out.stdout.splitlines()] == [{"type": "hello", "x": 1}]
    assert "python noise" in out.stderr and "c-level noise" in out.stderr and "more" in out.stderr


def test_job_reports_progress_then_result(tmp_path):
    proc = start_worker()
    hello = read_until(proc, {"hello"})[-1]
    assert hello["protocol"] == protocol.PROTOCOL_VERSION and "preview" in hello["backends"]
    send(proc, "job", **job(tmp_path, number_results=2))
    messages = read_until(proc, {"result", "error"})
    result = messages[-1]
    assert result["type"] == "result", messages
    assert result["seeds"] == [7, 8] and len(result["files"]) == 2
    for path in result["files"]:
        glb.validate_glb(path)
    progress = [m for m in messages if m["type"] == "progress"]
    fractions = [m["fraction"] for m in progress]
    assert fractions == sorted(fractions) and fractions[-1] <= 1.0
    stages = list(dict.fromkeys(m["stage"] for m in progress))
    assert stages == ["mask", "shape", "texture", "export"]
    assert all(m["total"] > 0 and 0 <= m["step"] <= m["total"] for m in progress)
    proc.stdin.close()  # EOF after the job: clean exit
    assert proc.wait(10) == 0


@pytest.mark.parametrize("change,code,fragment", [
    ({"settings": {"resolution": 700}}, "bad_settings", "resolution: 700 is out of range"),
    ({"backend": "nope"}, "bad_settings", "unknown backend 'nope'"),
    ({"input": {"rgba": "/nonexistent/x.npy", "name": "x"}}, "bad_input", "cannot read the prepared image"),
])
def test_errors_are_one_line_and_the_worker_keeps_serving(tmp_path, change, code, fragment):
    proc = start_worker()
    bad = dict(job(tmp_path), **change)
    send(proc, "job", **bad)
    error = read_until(proc, {"error", "result"})[-1]
    assert error["type"] == "error" and error["code"] == code and fragment in error["message"]
    assert "\n" not in error["message"]
    send(proc, "job", **dict(job(tmp_path), id="j2"))
    assert read_until(proc, {"error", "result"})[-1]["type"] == "result"
    proc.stdin.close()
    assert proc.wait(10) == 0


def test_cancel_message_stops_the_job(tmp_path):
    proc = start_worker({"TRELLIS_PREVIEW_DELAY": "5"})
    send(proc, "job", **job(tmp_path))
    read_until(proc, {"progress"})
    started = time.monotonic()
    send(proc, "cancel", id="j1")
    assert read_until(proc, {"cancelled", "result", "error"})[-1]["type"] == "cancelled"
    assert time.monotonic() - started < 2
    proc.stdin.close()
    assert proc.wait(10) == 0


def test_worker_exits_when_the_addon_goes_away_mid_job(tmp_path):
    proc = start_worker({"TRELLIS_PREVIEW_DELAY": "30"})
    send(proc, "job", **job(tmp_path))
    read_until(proc, {"progress"})
    started = time.monotonic()
    proc.stdin.close()  # what the OS does when Blender dies
    proc.wait(10)
    assert time.monotonic() - started < 7
    assert not os.path.exists(os.path.join(str(tmp_path / "out"), "result_0.glb"))


def test_protocol_decode_rejects_untyped_lines():
    assert protocol.decode('{"type":"log","text":"x"}')["text"] == "x"
    for bad in ("[1]", '{"a":1}', "not json"):
        with pytest.raises(ValueError):
            protocol.decode(bad)
    assert json.loads(protocol.encode("x", a=1)) == {"type": "x", "a": 1}
