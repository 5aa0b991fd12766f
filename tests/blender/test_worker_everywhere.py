"""A provider's GLB and the user's picture are parsed in a background Blender in every mode, scripts and the
CLI included (the builder's default), never in the process the user works in; that Blender has a memory bound
and each of its tasks a deadline: past either, the job fails with the reason and its result stays in history,
to be imported again."""
import os

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod

SETTINGS = dict(backend="preview", resolution=512, texture_size=1024, decimation_target=100000)


@pytest.fixture()
def default_builder(scene):
    """The builder as a script or the CLI has it (the tests' own default is the fallback); stopped after."""
    builder = mod("trellis_addon.queue").manager.builder
    builder.enabled, builder.unavailable = None, ""
    yield builder
    builder.stop()
    builder.enabled, builder.unavailable, builder.size = False, "", 1


def tasks_done(builder) -> str:
    with open(builder.worker.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_a_script_run_reads_and_imports_in_a_background_blender(default_builder):
    assert bpy.app.background and default_builder.on, "on in a background run, as in the UI"
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=51, **SETTINGS) == {"FINISHED"}
    job = mod("trellis_addon.queue").manager.jobs[-1]
    assert job.state == "done" and job.built["verified"], job.error
    log = tasks_done(default_builder)
    assert f"task {job.id}-prepare (prepare) done" in log and f"task {job.id}-import (import) done" in log
    obj = bpy.context.view_layer.objects.active
    assert obj is not None and len(obj.data.polygons) > 1000


def dense_job(tmp_path, faces: int):
    """A job whose (valid, dense) result GLB waits to be imported, as a finished hosted job's does."""
    from backend import glb, png
    from servers import meshes
    queue, request = mod("trellis_addon.queue"), mod("trellis_addon.request")
    folder = tmp_path / "dense"
    folder.mkdir()
    path = str(folder / "result_0.glb")
    meshes.dense_glb(glb, png, path, faces, 256)
    settings = request.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 1})
    job = queue.manager.add(queue.Job(name="dense", backend="preview", settings=settings, output_dir=str(folder),
                                      rgba_path="", result={"files": [path], "seeds": [1], "cost": 0.0},
                                      state=queue.IMPORTING))
    return job, path


def until_done(job, seconds: float = 120.0) -> None:
    import time
    queue = mod("trellis_addon.queue")
    end = time.monotonic() + seconds
    while job.state in ("building", "preparing") and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.02)


def test_a_task_past_its_deadline_is_stopped_and_the_result_kept(default_builder, tmp_path, monkeypatch):
    monkeypatch.setattr(mod("trellis_addon.prefs"), "worker_deadline_seconds", lambda: 0.3)
    job, path = dense_job(tmp_path, 300_000)
    assert job.state == "building"
    until_done(job)
    assert job.state == "failed" and job.error_code == "timeout", (job.state, job.error)
    assert "took longer than" in job.error and "stays in history" in job.error
    assert os.path.isfile(path) and not bpy.data.objects, "nothing imported here; the GLB kept"
    monkeypatch.undo()
    again, _ = dense_job_again(job)
    until_done(again)
    assert again.state == "importing", again.error


def dense_job_again(job):
    queue = mod("trellis_addon.queue")
    again = queue.manager.add(queue.Job(name="dense", backend="preview", settings=job.settings,
                                        output_dir=job.output_dir, rgba_path="", result=dict(job.result),
                                        state=queue.IMPORTING))
    return again, job.result["files"][0]


def settled_size(pid: int) -> int:
    """The process's address space once it stops growing (a background Blender waiting for its first task)."""
    import time
    sizes = []
    while len(sizes) < 10 or sizes[-1] != sizes[-10]:
        with open(f"/proc/{pid}/status") as f:
            sizes.append(next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize")))
        time.sleep(0.1)
    return sizes[-1]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the worker's size from /proc")
def test_a_background_blender_past_its_memory_bound_fails_the_job_and_keeps_the_result(default_builder, tmp_path,
                                                                                       monkeypatch):
    """The bound: what a waiting background Blender takes, and 64 MiB more; a 400k-face result needs more."""
    bound = settled_size(default_builder._worker().proc.pid) + (64 << 20)
    default_builder.stop()
    monkeypatch.setattr(mod("trellis_addon.prefs"), "worker_memory_bytes", lambda: bound)
    job, path = dense_job(tmp_path, 400_000)
    until_done(job, 300)
    assert job.state == "failed" and "stays in history" in job.error, (job.state, job.error)
    assert f"memory bound {bound / (1 << 30):.1f} GB" in job.error, job.error
    assert os.path.isfile(path) and not bpy.data.objects
    default_builder.stop()
    monkeypatch.undo()
    again, _ = dense_job_again(job)
    until_done(again, 300)
    assert again.state == "importing", again.error
