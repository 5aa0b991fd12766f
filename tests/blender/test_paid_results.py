"""A paid result is never lost: a submitted hosted task stays resumable whatever its job ended in (cancel,
a killed worker, quitting Blender), and two Blender instances sharing one history folder never take
over, prune or delete each other's entries (entry locks)."""
import json
import os
import signal
import subprocess
import sys
import time

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod
from test_history import FAST, _resume_at_start, drawn, entries
from test_runware_operator import runware  # noqa: F401 (fixture)


def _until(condition, timeout=60.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def submitted(server, seed):
    """A Runware job whose task id is on disk, the task still running at the provider."""
    jobs, generation = mod("trellis_addon.queue"), mod("trellis_addon.request")
    server.never_finish = True
    settings = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": seed})
    job = jobs.manager.enqueue(generation.prepare_job(image=EXAMPLE_IMAGE, backend="runware", settings=settings))
    _until(lambda: (job.poll(), job.remote)[1])
    jobs.flush_records()
    return job


def drive(job):
    """A resumed job to its end (what resume's timer does)."""
    resume = mod("trellis_addon.resume")
    _until(lambda: (resume._drive(), job.is_finished)[1])
    mod("trellis_addon.queue").flush_records()
    return job


def job_json(folder):
    mod("trellis_addon.queue").flush_records()
    with open(os.path.join(folder, "job.json")) as f:
        return json.load(f)


def test_cancel_after_submit_keeps_a_fetchable_entry(runware):  # noqa: F811
    resume = mod("trellis_addon.resume")
    job = submitted(runware, 71)
    assert bpy.ops.trellis.cancel(job_id=job.id) == {"FINISHED"}
    assert job_json(job.output_dir)["state"] == "cancelled"
    [entry] = entries()
    assert entry.state == "pending" and entry.cancelled
    labels = drawn(entry)
    assert "Cancelled — may still be billed" in labels and "Fetch Result" in labels
    assert resume.resume_pending() == [], "a cancelled task is fetched on request only"
    runware.never_finish = False
    assert bpy.ops.trellis.history_resume(entry=entry.id) == {"FINISHED"}
    fetched = drive(resume._resumed[-1])
    assert fetched.state == "done", fetched.error
    assert runware.submits == 1 and runware.downloads == 1, "polled again, downloaded once, never re-submitted"
    [entry] = entries()
    assert entry.state == "ready" and entry.record["seeds"] == [71]


def test_killed_worker_after_submit_leaves_the_entry_pending(runware):  # noqa: F811
    job = submitted(runware, 72)
    job.worker.kill()
    _until(lambda: (job.poll(), job.is_finished)[1])
    assert job.state == "failed" and job.error_code.value == "worker_exit"
    [entry] = entries()
    assert entry.state == "pending" and not entry.cancelled and "Fetch Result" in drawn(entry)
    runware.never_finish = False
    [resumed] = mod("trellis_addon.resume").resume_pending()
    assert drive(resumed).state == "done", resumed.error
    assert runware.submits == 1
    assert entries()[0].state == "ready"


def test_quitting_blender_never_cancels_a_submitted_task(runware):  # noqa: F811
    jobs = mod("trellis_addon.queue")
    job = submitted(runware, 73)
    jobs.manager.stop_workers()  # what atexit does when Blender quits
    record = job_json(job.output_dir)
    assert record["state"] == "interrupted" and record["remote"]["task_id"] in runware.tasks
    [entry] = entries()
    assert entry.state == "pending" and not entry.cancelled
    runware.never_finish = False
    [resumed] = _resume_at_start()
    assert resumed.state == "done", resumed.error
    assert runware.submits == 1 and runware.downloads == 1
    assert entries()[0].state == "ready"


def test_shutdown_interrupts_submitted_and_cancels_unsubmitted_jobs(runware, monkeypatch):  # noqa: F811
    jobs, generation = mod("trellis_addon.queue"), mod("trellis_addon.request")
    job = submitted(runware, 74)
    settings = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 3})
    queued = jobs.Job(name="q", backend="preview", settings=settings, output_dir=generation.new_folder("q"),
                      rgba_path="")
    jobs.manager.add(queued)
    jobs.manager.shutdown()  # the add-on is disabled
    assert job_json(job.output_dir)["state"] == "interrupted"
    assert job_json(queued.output_dir)["state"] == "cancelled"
    assert not mod("trellis_addon.entry_lock").holds(job.output_dir), "the next Blender may resume it"


def test_a_task_the_provider_failed_ends_the_entry(runware):  # noqa: F811
    job = submitted(runware, 75)
    job.worker.kill()
    _until(lambda: (job.poll(), job.is_finished)[1])
    runware.task_error = {"code": "inferenceError", "message": "The model could not process the image."}
    [resumed] = mod("trellis_addon.resume").resume_pending()
    assert drive(resumed).state == "failed" and resumed.error_code.value == "remote_error"
    assert entries() == [], "failed at the provider: no longer pending"
    assert mod("trellis_addon.resume").resume_pending() == []


@pytest.mark.parametrize("state,code,expected", [
    ("running", None, "pending"), ("interrupted", None, "pending"), ("cancelled", None, "pending"),
    ("failed", "worker_exit", "pending"), ("failed", "timeout", "pending"), ("failed", "bad_output", "pending"),
    ("failed", "network", "pending"), ("failed", "remote_error", "other"), ("failed", "not_found", "other"),
])
def test_entry_state_of_a_submitted_task(scene, tmp_path, state, code, expected):
    h = mod("trellis_addon.history")
    folder = tmp_path / "entry"
    folder.mkdir()
    job = {"backend": "runware", "state": state, "error_code": code, "remote": {"task_id": "t-1"},
           "remote_tasks": [{"task_id": "t-1"}]}
    (folder / "job.json").write_text(json.dumps(job))
    assert h.read_entry(str(folder)).state == expected
    (folder / "job.json").write_text(json.dumps(dict(job, remote=None, remote_tasks=[])))
    assert h.read_entry(str(folder)).state == "other", "nothing submitted: nothing to resume"


LOCKER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("entry_lock", sys.argv[1])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
print(" ".join(str(lock.hold(folder)) for folder in sys.argv[2:]), flush=True)
time.sleep(600)
"""


def lock_elsewhere(*folders):
    """Another process (another Blender) holding the entries' locks."""
    path = mod("trellis_addon.entry_lock").__file__
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, path, *folders], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().split() == ["True"] * len(folders)
    return proc


def test_entries_locked_by_another_blender_are_left_alone(runware):  # noqa: F811
    lock, resume = mod("trellis_addon.entry_lock"), mod("trellis_addon.resume")
    for seed in (1, 2):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=seed, **FAST)
    newest, oldest = entries()
    job = submitted(runware, 76)  # the other Blender's running task
    job.worker.kill()
    _until(lambda: (job.poll(), job.is_finished)[1])
    lock.release(job.output_dir)
    pending = next(e for e in entries() if e.state == "pending")
    other = lock_elsewhere(pending.folder, oldest.folder)
    try:
        assert lock.owner(pending.folder)[0] == other.pid and lock.busy(pending.folder)
        assert resume.resume_pending() == [], "another Blender's task is not taken over"
        with pytest.raises(RuntimeError, match="Another Blender"):
            bpy.ops.trellis.history_delete(entry=oldest.id)
        assert mod("trellis_addon.history").history.prune(mod("trellis_addon.prefs").jobs_root(), 0) == [newest.id]
        assert os.path.isdir(oldest.folder) and os.path.isdir(pending.folder)
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    assert not lock.busy(pending.folder), "the lock of a dead process is stale"
    runware.never_finish = False
    [resumed] = resume.resume_pending()
    assert drive(resumed).state == "done" and runware.submits == 1
    assert bpy.ops.trellis.history_delete(entry=oldest.id) == {"FINISHED"} and not os.path.exists(oldest.folder)


def test_a_job_holds_its_entry_lock_until_it_ends(scene):
    lock, jobs, generation = mod("trellis_addon.entry_lock"), mod("trellis_addon.queue"), mod("trellis_addon.request")
    settings = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 4, "resolution": 512})
    job = generation.prepare_job(image=EXAMPLE_IMAGE, backend="preview", settings=settings)
    assert lock.holds(job.output_dir) and lock.owner(job.output_dir)[0] == os.getpid()
    assert not lock.busy(job.output_dir), "this process's own lock"
    job.cancel()
    jobs.flush_records()
    assert not lock.holds(job.output_dir) and lock.owner(job.output_dir) == (0, "")
