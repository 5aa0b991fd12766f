"""The Runware backend through the real worker process against a local server following the docs."""
import os
import time

import jsonschema
import numpy as np
import pytest

from backend import schema
from backend.providers import runware
from servers.runware_server import RunwareServer, request_item_schema
from workerkit import FAST, cancel_mid_poll, close, read_until, run_job, runware_edge_settings, save_rgba, send, \
    start_worker

KEY = "rw-secret-key-0123456789abcdef"


@pytest.fixture()
def server():
    with RunwareServer(api_key=KEY) as srv:
        yield srv


def job(tmp_path, server, rgba=None, key=KEY, options=None, **settings):
    return dict(id="rw1", backend="runware", input={"rgba": save_rgba(tmp_path, rgba), "name": "disc"},
                settings=dict({"seed": 42}, **settings), output_dir=str(tmp_path / "out"),
                options=dict(FAST, base_url=server.url, **(options or {})), secrets={"api_key": key})


def run(tmp_path, server, **kwargs):
    return run_job(job(tmp_path, server, **kwargs))


def test_success_with_one_result(tmp_path, server):
    messages, log = run(tmp_path, server)
    result = messages[-1]
    assert result["type"] == "result", messages
    assert result["seeds"] == [42] and result["cost"] == pytest.approx(0.0125)
    assert [os.path.basename(f) for f in result["files"]] == ["result_0.glb"]
    task = next(m for m in messages if m["type"] == "remote_task")
    assert task["provider"] == "runware" and task["task_id"] in server.tasks
    stages = [m["stage"] for m in messages if m["type"] == "progress"]
    assert "remote" in stages and stages[-1] == "download"
    sent = server.tasks[task["task_id"]]["task"]
    assert sent["deliveryMethod"] == "async" and sent["includeCost"] is True and sent["numberResults"] == 1
    assert sent["settings"] == {"resolution": 1024, "textureSize": 2048, "decimationTarget": 500000, "remesh": True}
    assert sent["inputs"]["image"].startswith("data:image/png;base64,")
    assert all(r["auth"] == f"Bearer {KEY}" for r in server.requests)
    assert KEY not in log and all(KEY not in str(m) for m in messages)


def test_four_results_and_sampler_overrides(tmp_path, server):
    messages, _ = run(tmp_path, server, number_results=4, tex_slat_override=True, tex_slat_steps=30)
    result = messages[-1]
    assert result["type"] == "result" and len(result["files"]) == 4 and result["seeds"] == [42, 43, 44, 45]
    assert result["cost"] == pytest.approx(4 * 0.0125)
    sent = next(iter(server.tasks.values()))["task"]
    assert sent["settings"]["texSlat"] == {"steps": 30, "guidanceStrength": 1.0, "guidanceRescale": 0.0,
                                           "rescaleT": 3.0}
    assert "shapeSlat" not in sent["settings"]


@pytest.mark.parametrize("status,body,fragment", [
    (400, {"errors": [{"code": "invalidParameter", "message": "Invalid value.", "parameter": "settings.resolution"}]},
     "rejected the request (parameter settings.resolution): Invalid value"),
    (401, None, "rejected the API key (HTTP 401)"),
    (402, None, "insufficient account balance (HTTP 402)"),
    (403, None, "may not use TRELLIS.2 (HTTP 403)"),
])
def test_client_errors_are_one_clear_line_without_retry(tmp_path, server, status, body, fragment):
    server.submit_statuses = [status]
    server.error_body = body
    messages, _ = run(tmp_path, server)
    error = messages[-1]
    assert error["type"] == "error" and fragment in error["message"] and "\n" not in error["message"]
    assert server.submits == 0 and [r["types"] for r in server.requests] == [["3dInference"]], "no retry"


def test_wrong_key_is_reported_and_never_echoed(tmp_path, server):
    messages, log = run(tmp_path, server, key="wrong-key-zzzzzzzzzzzz")
    assert "HTTP 401" in messages[-1]["message"]
    assert "wrong-key" not in log and all("wrong-key" not in str(m) for m in messages)


def test_task_error_item(tmp_path, server):
    server.task_error = {"code": "inferenceError", "message": "The model could not process the image."}
    messages, _ = run(tmp_path, server)
    assert messages[-1]["type"] == "error"
    assert messages[-1]["message"] == "Runware task failed (inferenceError): The model could not process the image"


def test_429_then_success_shows_the_retry(tmp_path, server):
    server.submit_statuses = [429]
    messages, _ = run(tmp_path, server)
    assert messages[-1]["type"] == "result"
    assert any("Runware busy (HTTP 429), retrying in" in m.get("text", "") for m in messages)
    assert server.submits == 1


def test_503_storm_ends_in_a_clear_error(tmp_path, server):
    server.submit_statuses = [503] * 10
    messages, _ = run(tmp_path, server, options={"retry_tries": 3})
    assert messages[-1]["message"] == "Runware is unavailable (HTTP 503) after 3 tries; try again later"
    assert len(server.requests) == 3


def test_transient_poll_failures_keep_the_same_task(tmp_path, server):
    server.poll_statuses = [500, 503, 502]
    messages, _ = run(tmp_path, server)
    assert messages[-1]["type"] == "result"
    assert server.submits == 1 and len(server.tasks) == 1


def test_truncated_glb_names_the_file(tmp_path, server):
    server.truncate_glb = True
    messages, _ = run(tmp_path, server)
    message = messages[-1]["message"]
    assert messages[-1]["code"] == "bad_output" and "_0.glb is not a complete GLB" in message and "truncated" in message


def test_poll_timeout(tmp_path, server):
    server.never_finish = True
    messages, _ = run(tmp_path, server, options={"poll_timeout": 0.6})
    assert messages[-1]["code"] == "timeout" and "did not finish within" in messages[-1]["message"]


def test_cancel_mid_poll_stops_at_once(tmp_path, server):
    server.never_finish = True
    cancel_mid_poll(job(tmp_path, server, options={"poll_cap": 2.0}))
    assert not os.path.exists(tmp_path / "out" / "result_0.glb")


def test_runware_limits_are_refused_before_sending(tmp_path, server):
    messages, _ = run(tmp_path, server, decimation_target=1500000)
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == "bad_settings"
    expected = "Runware accepts Face Budget (decimationTarget) 100 000 to 1 000 000, got 1 500 000"
    assert expected in messages[-1]["message"]
    assert server.requests == []


def test_large_image_is_uploaded_once_and_small(tmp_path, server):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:1024, :1024]
    photo = np.zeros((1024, 1024, 4), np.uint8)
    photo[..., 0] = (xx // 4) % 256
    photo[..., 1] = (yy // 4) % 256
    photo[..., 2] = rng.integers(0, 60, (1024, 1024))
    photo[..., 3] = 255
    server.submit_statuses = [429]  # a retried submit must not send the image again
    messages, _ = run(tmp_path, server, rgba=photo)
    assert messages[-1]["type"] == "result"
    assert server.uploads == 1
    image_ref = next(iter(server.tasks.values()))["task"]["inputs"]["image"]
    assert image_ref in server.uploaded
    submits = [r for r in server.requests if r["types"] == ["3dInference"]]
    assert len(submits) == 2 and all(r["bytes"] < 2000 for r in submits)


def test_every_request_validates_against_the_spec():
    item_schema = request_item_schema()
    cases = list(runware_edge_settings())
    for settings in cases:
        for image in ("data:image/png;base64,iVBORw0KGgo=", "0b5b8a2e-7d8e-4a55-9d3f-2f1c8a4b9e11"):
            jsonschema.validate(runware.inference_task(settings, image, "5f0e9a38-1b7c-4e7a-9c36-3a5d2b1f6e42"),
                                item_schema)
    # both extra cases (all stages on, all off), less the 2 000 000 faces
    assert len(cases) == 1 + sum(len(p.choice_values() or (0, 1)) for p in schema.PARAMS)
    bad = runware.inference_task(schema.defaults(), "data:image/png;base64,AAAA", "x")
    bad["settings"]["textureSize"] = 3000
    with pytest.raises(jsonschema.ValidationError):  # the check is not vacuous
        jsonschema.validate(bad, item_schema)


def test_threaded_jobs_run_side_by_side_and_cancel_one_by_one(tmp_path, server):
    """Three hosted jobs on one worker process, each on its own thread: all wait on the server at once;
    cancelling one leaves the others running. A preview job sent meanwhile is not held up either."""
    server.polls_to_finish, server.task_seconds = 0, 1.5
    proc = start_worker()
    started = time.monotonic()
    for name in ("a", "b", "c"):
        folder = tmp_path / name
        folder.mkdir()
        send(proc, "job", **dict(job(folder, server), id=name, threaded=True))
    deadline = time.monotonic() + 10
    while len(server.tasks) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.tasks) == 3, "all three submitted before any finished"
    send(proc, "cancel", id="b")
    ends = {}
    messages = []
    while len(ends) < 3:
        messages += read_until(proc, {"result", "error", "cancelled"}, timeout=20)
        ends[messages[-1]["id"]] = (messages[-1]["type"], time.monotonic() - started)
    close(proc)
    assert ends["b"][0] == "cancelled" and ends["a"][0] == ends["c"][0] == "result", ends
    assert max(t for _, t in ends.values()) < 2 * 1.5, f"ran side by side, not one after another: {ends}"
    assert {m["id"] for m in messages if m["type"] == "remote_task"} == {"a", "b", "c"}


def test_untagged_jobs_still_run_one_after_another(tmp_path, server):
    server.polls_to_finish, server.task_seconds = 0, 0.8
    proc = start_worker()
    for name in ("a", "b", "c"):
        folder = tmp_path / name
        folder.mkdir()
        send(proc, "job", **dict(job(folder, server), id=name))
    assert read_until(proc, {"remote_task"}, timeout=20)[-1]["id"] == "a"
    send(proc, "cancel", id="b")  # still queued behind a: dropped without running
    messages = read_until(proc, {"cancelled"}, timeout=20)
    assert messages[-1]["id"] == "b" and len(server.tasks) == 1, "only a runs while b and c wait"
    messages += read_until(proc, {"result"}, timeout=20)
    messages += read_until(proc, {"result"}, timeout=20)
    close(proc)
    assert len(server.tasks) == 2
    assert [m["id"] for m in messages if m["type"] == "result"] == ["a", "c"]
