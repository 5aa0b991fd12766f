"""The add-on's side of trusting nothing from outside: a cost that is no number counts as the estimate
(the session's total stays a number and the cap keeps refusing), workers never see a key in their
environment, and a worker that falls silent fails its job instead of hanging Blender."""
import math
import os
import signal
import time

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod
from test_runware_operator import KEY, generate, runware  # noqa: F401 (fixture)


@pytest.mark.parametrize("cost", [float("nan"), float("inf"), -3.0, "0.01", 1e12])
def test_a_cost_that_is_no_price_counts_as_the_estimate(runware, cost):  # noqa: F811
    runware.cost = cost
    spending = mod("trellis_addon.spending").session
    before = spending.total("USD")
    assert generate(resolution=1024) == {"FINISHED"}
    job = mod("trellis_addon.queue").manager.jobs[-1]
    assert job.cost is None, "unknown, not trusted"
    spent = spending.total("USD")
    assert math.isfinite(spent) and spent == pytest.approx(before + 0.03), "the price list's estimate counts"
    assert mod("trellis_addon.queue").job.sane_cost(cost) is None


def test_workers_never_inherit_a_key_from_the_environment(scene, monkeypatch):
    for name in ("RUNWARE_API_KEY", "SCENARIO_API_SECRET"):
        monkeypatch.setenv(name, f"{name.lower()}-from-env-1234")
    queue = mod("trellis_addon.queue")
    worker = queue.WorkerProcess(mod("trellis_addon.queue.manager").pool_spec()).start()
    try:
        with open(f"/proc/{worker.proc.pid}/environ", "rb") as f:
            environ = f.read().decode("utf-8", "replace")
        assert "from-env-1234" not in environ and "RUNWARE_API_KEY=" not in environ
    finally:
        worker.close_stdin()
        worker.wait_exit(5)


def test_a_silent_worker_fails_its_job(runware, monkeypatch):  # noqa: F811
    """A SIGSTOP'd hosted worker sends nothing: after SILENT_SECONDS the job fails and the process is ended;
    its submitted task stays in History to be fetched."""
    queue, request = mod("trellis_addon.queue"), mod("trellis_addon.request")
    monkeypatch.setattr(queue.job, "SILENT_SECONDS", 3.0)
    runware.polls_to_finish = 1000  # it would poll for ever
    settings = request.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 5})
    job = queue.manager.enqueue(request.prepare_job(image=EXAMPLE_IMAGE, backend="runware", settings=settings,
                                                    force_new=True))
    end = time.monotonic() + 30
    while not (job.beating and job.remote) and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.05)
    assert job.beating and job.remote, "heartbeats and the submitted task arrived"
    pid = job.worker.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        while not job.is_finished and time.monotonic() < stopped + 20:
            queue.manager.poll_all()
            time.sleep(0.05)
        assert job.state == "failed" and "stopped answering" in job.error
        assert time.monotonic() - stopped < 3.0 + 6.0, "within the silence limit (+ one heartbeat period)"
        queue.flush_records()
        history = mod("trellis_addon.history")
        history.history.invalidate()
        assert history.read_entry(job.output_dir).state == history.PENDING, "the paid task can still be fetched"
    finally:
        os.kill(pid, signal.SIGCONT)


def test_the_download_cap_preference_stops_a_large_result(scene, monkeypatch):
    from servers.runware_server import RunwareServer
    prefs = bpy.context.preferences.addons[mod("trellis_addon.prefs").base_package].preferences
    bpy.context.preferences.system.use_online_access = True
    with RunwareServer(api_key=KEY, glb=b"glTF" + b"\0" * (3 * 1024 * 1024)) as server:
        server.polls_to_finish = 0
        prefs.runware_api_key, prefs.runware_url, prefs.session_cap = KEY, server.url, 0.0
        prefs.max_download_mb = 1
        try:
            with pytest.raises(RuntimeError, match="1 MiB|1048576|download"):
                generate()
        finally:
            prefs.max_download_mb = 1024
            prefs.runware_api_key = prefs.runware_url = ""
            bpy.context.preferences.system.use_online_access = False
    job = mod("trellis_addon.queue").manager.jobs[-1]
    assert job.state == "failed" and job.error_code.value == "bad_output"
    assert not [n for n in os.listdir(job.output_dir) if n.endswith((".glb", ".part"))], "nothing kept"


def outside_glb(path, secret) -> None:
    """A GLB whose only buffer is the file `secret` (36 bytes, outside the GLB): a triangle."""
    import json as json_module
    import struct
    secret.write_bytes(b"\0" * 36)
    doc = {"asset": {"version": "2.0"}, "buffers": [{"uri": str(secret), "byteLength": 36}],
           "bufferViews": [{"buffer": 0, "byteLength": 36}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [0, 0, 0]}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}], "nodes": [{"mesh": 0}],
           "scenes": [{"nodes": [0]}], "scene": 0}
    text = json_module.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    data = b"glTF" + struct.pack("<II", 2, 12 + 8 + len(text)) + struct.pack("<II", len(text), 0x4E4F534A) + text
    path.write_bytes(data)


def test_a_history_glb_that_names_an_outside_file_is_not_imported(scene, tmp_path):
    """A GLB in a history entry edited to point its buffer at a file outside: refused before Blender's
    importer reads anything."""
    queue, results = mod("trellis_addon.queue"), mod("trellis_addon.results")
    folder = tmp_path / "entry"
    folder.mkdir()
    path = folder / "result_0.glb"
    outside_glb(path, tmp_path / "secret.bin")
    job = queue.Job(name="evil", backend="preview", settings={}, output_dir=str(folder), rgba_path="",
                    result={"files": [str(path)], "seeds": [1]}, state=queue.IMPORTING)
    before = set(bpy.data.objects)
    with pytest.raises(mod("trellis_addon.request").RequestError, match="result_0.glb"):
        results.import_job(bpy.context, job)
    assert set(bpy.data.objects) == before and job.state == "failed"
