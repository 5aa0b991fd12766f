"""The local GPU backend from Blender: a warm worker shared by jobs, unload, cancel, a killed worker.
The "TRELLIS.2 environment" is this Python with the stand-in modules of tests/standins on its path."""
import json
import os
import signal
import sys
import time

import bpy
import pytest

from test_jobs import assert_process_gone
from conftest import EXAMPLE_IMAGE, PKG, ROOT, mod

FAST = dict(backend="local", resolution=512, seed=9, force_new=True)  # every job runs: no history answers


@pytest.fixture()
def local(scene, tmp_path, monkeypatch):
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("TRELLIS_STANDIN_LOG", str(calls))
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.local_python, prefs.local_repo = sys.executable, os.path.join(ROOT, "tests", "standins")
    prefs.local_keep_minutes = 10.0
    mod("trellis_addon.queue").manager.unload()

    def count(name):
        return sum(1 for line in open(calls) if json.loads(line)["call"] == name) if calls.exists() else 0
    yield count
    mod("trellis_addon.queue").manager.unload()
    prefs.local_python = prefs.local_repo = ""


def worker_pid():
    worker = mod("trellis_addon.queue").manager._persistent
    return worker.proc.pid if worker and worker.alive else None


def test_three_jobs_one_model_load(local):
    for _ in range(3):
        assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, **FAST) == {"FINISHED"}
    assert local("from_pretrained") == 1 and local("pipeline.run") == 3
    assert len(bpy.data.collections["TRELLIS"].objects) == 3
    record = json.loads(bpy.context.view_layer.objects.active["trellis2"])
    assert record["backend"] == "local" and record["cost"] is None


def test_unload_frees_the_worker_and_the_next_job_loads_again(local):
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, **FAST)
    pid = worker_pid()
    assert pid and bpy.ops.trellis.unload_model() == {"FINISHED"}
    assert_process_gone(pid, timeout=10)
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, **FAST)
    assert local("from_pretrained") == 2 and worker_pid() not in (None, pid)


def sampling_local_job(monkeypatch):
    """A slow local job on the warm worker, followed until it samples; (job, a 30 s deadline)."""
    monkeypatch.setenv("TRELLIS_STANDIN_STEP_SECONDS", "0.3")
    request, queue = mod("trellis_addon.request"), mod("trellis_addon.queue")
    settings = request.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 1, "resolution": 512})
    job = queue.manager.add(request.prepare_job(image=EXAMPLE_IMAGE, backend="local", settings=settings))
    job.start(queue.manager.worker_for(job))
    end = time.monotonic() + 30
    while job.stage != "sparse_structure" and time.monotonic() < end:
        job.poll()
        time.sleep(0.02)
    return job, end


def test_cancel_keeps_the_warm_worker(local, monkeypatch):
    job, end = sampling_local_job(monkeypatch)
    pid = worker_pid()
    bpy.ops.trellis.cancel(job_id=job.id)
    assert job.state == "cancelled"
    time.sleep(1.0)
    assert worker_pid() == pid, "the model stays loaded after a cancel"
    assert job.id not in job.worker.busy, "the worker acknowledged the cancel"
    monkeypatch.setenv("TRELLIS_STANDIN_STEP_SECONDS", "0")
    assert "TRELLIS" not in bpy.data.collections or not bpy.data.collections["TRELLIS"].objects


def test_killed_worker_fails_the_job_and_the_next_starts_fresh(local, monkeypatch):
    job, end = sampling_local_job(monkeypatch)
    pid = worker_pid()
    os.kill(pid, signal.SIGKILL)
    while not job.is_finished and time.monotonic() < end:
        job.poll()
        time.sleep(0.02)
    assert job.state == "failed" and "Worker stopped unexpectedly (exit code -9)" in job.error
    assert "local-worker.log" in job.error
    monkeypatch.setenv("TRELLIS_STANDIN_STEP_SECONDS", "0")
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, **FAST) == {"FINISHED"}
    assert worker_pid() not in (None, pid)


def test_no_python_configured_is_a_clear_error(local, monkeypatch):
    monkeypatch.delenv("TRELLIS2_PYTHON", raising=False)
    bpy.context.preferences.addons[PKG].preferences.local_python = ""
    with pytest.raises(RuntimeError, match="Set the TRELLIS.2 Python in the add-on preferences"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, **FAST)


def test_python_from_environment(local, monkeypatch):
    bpy.context.preferences.addons[PKG].preferences.local_python = ""
    monkeypatch.setenv("TRELLIS2_PYTHON", sys.executable)
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, **FAST) == {"FINISHED"}


def test_check_local_setup_reports_a_checklist(local):
    doctor = mod("trellis_addon.doctor")
    assert bpy.ops.trellis.check_local_setup() == {"FINISHED"}
    end = time.monotonic() + 60
    while doctor.state["running"] and time.monotonic() < end:
        time.sleep(0.05)
    report = doctor.state["report"]
    assert report and report["ready"] is False, doctor.state  # the stand-in environment lacks cumesh & co
    names = {c["name"]: c["ok"] for c in report["checks"]}
    assert names["torch"] and names["trellis2"] and not names["cumesh"]
