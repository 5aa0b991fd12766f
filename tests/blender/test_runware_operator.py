"""The Runware backend from the operator, in real Blender, against the local Runware server."""
import glob
import json
import os
import time

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, PKG, mod
from servers.runware_server import RunwareServer

KEY = "rw-blender-secret-9f8e7d6c5b4a"


@pytest.fixture()
def runware(scene, monkeypatch):
    monkeypatch.delenv("RUNWARE_API_KEY", raising=False)
    monkeypatch.delenv("TRELLIS_RUNWARE_URL", raising=False)
    prefs = bpy.context.preferences.addons[PKG].preferences
    bpy.context.preferences.system.use_online_access = True
    with RunwareServer(api_key=KEY) as server:
        server.polls_to_finish = 0
        prefs.runware_api_key, prefs.runware_url = KEY, server.url
        prefs.session_cap = 0.0
        yield server
    prefs.runware_api_key = prefs.runware_url = ""
    bpy.context.preferences.system.use_online_access = False


def generate(**kwargs):
    kwargs.setdefault("force_new", True)  # each call reaches the server (test_history covers the cache)
    return bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", seed=11, **kwargs)


def test_runware_result_lands_in_the_scene_with_its_cost(runware):
    cost_before = mod("trellis_addon.spending").session.total("USD")
    assert generate() == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "mushroom" and obj.users_collection[0].name == "TRELLIS"
    record = json.loads(obj["trellis2"])
    assert record["backend"] == "runware" and record["seed"] == 11 and record["cost"] == pytest.approx(0.0125)
    job = json.load(open(os.path.join(record["job_folder"], "job.json")))
    assert job["remote"]["task_id"] in runware.tasks and job["remote"]["provider"] == "runware"
    assert mod("trellis_addon.spending").session.total("USD") == pytest.approx(cost_before + 0.0125)


def test_four_results_side_by_side(runware):
    generate(number_results=4)
    objs = sorted(bpy.data.collections["TRELLIS"].objects, key=lambda o: o.location.x)
    assert [json.loads(o["trellis2"])["seed"] for o in objs] == [11, 12, 13, 14]
    xs = [o.location.x for o in objs]
    assert xs == sorted(xs) and len(set(round(x, 4) for x in xs)) == 4


def test_online_access_off_sends_nothing(runware):
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="Online access is off.*--online-mode"):
        generate()
    assert runware.requests == []


def test_key_from_environment_and_preferences_win(runware, monkeypatch):
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.runware_api_key = ""
    with pytest.raises(RuntimeError, match="No API key.*RUNWARE_API_KEY"):
        generate()
    monkeypatch.setenv("RUNWARE_API_KEY", KEY)
    assert generate() == {"FINISHED"}
    prefs.runware_api_key = "preferences-key-wins-000"
    with pytest.raises(RuntimeError, match="rejected the API key"):
        generate()
    assert runware.requests[-1]["auth"] == "Bearer preferences-key-wins-000"


def test_url_from_environment(runware, monkeypatch):
    bpy.context.preferences.addons[PKG].preferences.runware_url = ""
    monkeypatch.setenv("TRELLIS_RUNWARE_URL", runware.url)
    assert generate() == {"FINISHED"}
    assert runware.submits == 1


@pytest.mark.parametrize("status,fragment", [(402, "insufficient account balance"), (403, "HTTP 403"),
                                             (401, "rejected the API key")])
def test_errors_reach_the_script_as_one_line(runware, status, fragment):
    runware.submit_statuses = [status]
    with pytest.raises(RuntimeError) as info:
        generate()
    assert fragment in str(info.value) and KEY not in str(info.value)
    assert "TRELLIS" not in bpy.data.collections or not bpy.data.collections["TRELLIS"].objects


def test_session_cap_refuses_before_sending(runware):
    bpy.context.preferences.addons[PKG].preferences.session_cap = 0.01
    with pytest.raises(RuntimeError, match="Session spending cap"):
        generate()
    assert runware.requests == []


def test_key_never_lands_in_files_logs_or_command_line(runware, tmp_path):
    generate()
    job = mod("trellis_addon.queue").manager.jobs[-1]
    assert KEY not in " ".join(job.worker.proc.args)
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    assert KEY.encode() not in blend.read_bytes()
    for path in glob.glob(os.path.join(job.output_dir, "*")):
        with open(path, "rb") as f:
            assert KEY.encode() not in f.read(), path
    assert KEY not in bpy.context.view_layer.objects.active["trellis2"]


def test_cancel_mid_poll_leaves_no_process_and_no_object(runware):
    runware.never_finish = True
    generation, jobs = mod("trellis_addon.request"), mod("trellis_addon.queue")
    settings = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 3})
    job = jobs.manager.add(generation.prepare_job(image=EXAMPLE_IMAGE, backend="runware", settings=settings))
    job.start()
    end = time.monotonic() + 30
    while job.remote is None and time.monotonic() < end:
        job.poll()
        time.sleep(0.02)
    assert job.remote and job.remote["task_id"] in runware.tasks
    bpy.ops.trellis.cancel(job_id=job.id)
    job.worker.proc.wait(5)
    assert job.state == "cancelled" and job.worker.proc.returncode is not None
    assert "TRELLIS" not in bpy.data.collections or not bpy.data.collections["TRELLIS"].objects
    jobs.flush_records()
    record = json.load(open(os.path.join(job.output_dir, "job.json")))
    assert record["state"] == "cancelled" and record["remote"]["task_id"] == job.remote["task_id"]


def test_truncated_download_is_an_error_not_an_importer_crash(runware):
    runware.truncate_glb = True
    with pytest.raises(RuntimeError, match=r"_0\.glb is not a complete GLB"):
        generate()
    assert "TRELLIS" not in bpy.data.collections or not bpy.data.collections["TRELLIS"].objects


def test_hosted_jobs_share_one_worker_and_cancel_alone(runware):
    """Hosted jobs run on threads of one pooled worker (no process start each); an offline job beside
    them gets a worker of its own; cancelling one hosted job leaves the others and the worker running."""
    runware.task_seconds = 1.5
    generation, jobs = mod("trellis_addon.request"), mod("trellis_addon.queue")
    settings = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 3})

    def queued(backend, seed):
        job = generation.prepare_job(image=EXAMPLE_IMAGE, backend=backend, settings=dict(settings, seed=seed),
                                     force_new=True)
        return mod("trellis_addon.queue").manager.enqueue(job, max_parallel=4)

    hosted = [queued("runware", seed) for seed in (1, 2, 3)]
    offline = queued("preview", 4)

    def run_until(condition, timeout=60):
        end = time.monotonic() + timeout
        while not condition() and time.monotonic() < end:
            jobs.manager.poll_all(4)
            time.sleep(0.02)

    run_until(lambda: all(j.remote for j in hosted))
    assert len(runware.tasks) == 3, "all three submitted at once"
    assert len({j.worker for j in hosted}) == 1 and offline.worker not in {j.worker for j in hosted}
    shared = hosted[0].worker
    bpy.ops.trellis.cancel(job_id=hosted[1].id)
    run_until(lambda: all(j.state == jobs.IMPORTING or j.is_finished for j in hosted + [offline]))
    assert [j.state for j in hosted] == [jobs.IMPORTING, jobs.CANCELLED, jobs.IMPORTING]
    assert offline.state == jobs.IMPORTING and shared.alive and not shared.busy
    for job in hosted + [offline]:
        if not job.is_finished:
            job.set_finished(jobs.DONE, "checked")
