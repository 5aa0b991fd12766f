"""The worker process and its JSON-lines protocol, run as the add-on runs it: `python -m backend`."""
import json
import os
import subprocess
import sys
import time

import pytest

from backend import glb, protocol
from workerkit import ROOT, close, read_until, save_rgba, send, start_worker

def job(tmp_path, **settings):
    rgba_path = save_rgba(tmp_path)
    base = {"resolution": 512, "texture_size": 1024, "decimation_target": 100000, "seed": 7}
    return dict(id="j1", backend="preview", input={"rgba": rgba_path, "name": "disc"},
                settings=dict(base, **settings), output_dir=str(tmp_path / "out"))


def test_library_output_never_reaches_the_protocol_channel(tmp_path):
    code = ("import os, sys; from backend import worker; ch = worker.Channel(worker.take_protocol_channel()); "
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
    assert result["cost_unit"] == "USD", "every result names its cost unit"
    close(proc)  # EOF after the job: clean exit


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
    close(proc)


@pytest.mark.parametrize("change,fragment", [
    ({"id": None}, "job field 'id' must be str"),
    ({"id": 7}, "job field 'id' must be str, got int"),
    ({"output_dir": None}, "job field 'output_dir' must be str"),
    ({"settings": [1]}, "job field 'settings' must be dict, got list"),
    ({"input": "x.npy"}, "job field 'input' must be dict"),
    ({"options": {"poll_timeout": 3}}, "unknown option 'poll_timeout'"),
    ({"mode": "retexture"}, "backend preview cannot retexture"),
])
def test_malformed_job_lines_are_answered_and_the_worker_keeps_reading(tmp_path, change, fragment):
    proc = start_worker()
    bad = {k: v for k, v in dict(job(tmp_path), **change).items() if v is not None}
    send(proc, "job", **bad)
    error = read_until(proc, {"error", "result"})[-1]
    assert error["type"] == "error" and error["code"] == "bad_settings" and fragment in error["message"], error
    assert error["id"] == (bad["id"] if isinstance(bad.get("id"), str) else None)
    send(proc, "cancel", id=["not", "a", "string"])  # logged and ignored
    send(proc, "cancel", id={"x": 1})
    send(proc, "job", **dict(job(tmp_path), id="j2"))
    assert read_until(proc, {"error", "result"})[-1]["type"] == "result"
    assert "ignored cancel with a non-string id" in close(proc)


def test_cancel_message_stops_the_job(tmp_path):
    proc = start_worker({"TRELLIS_PREVIEW_DELAY": "5"})
    send(proc, "job", **job(tmp_path))
    read_until(proc, {"progress"})
    started = time.monotonic()
    send(proc, "cancel", id="j1")
    assert read_until(proc, {"cancelled", "result", "error"})[-1]["type"] == "cancelled"
    assert time.monotonic() - started < 2
    close(proc)


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
