"""The Runware backend: the real worker process (`python -s -E -u -m backend`) against the local
server of tests/servers, which follows Runware's documented protocol and validates every 3dInference
task against the OpenAPI spec in tests/data (formats included); plus the pure helpers of
backend/providers/http.py and the request bodies over the whole parameter space."""
import base64
import io
import os
import time

import numpy as np
import pytest
import requests

from backend import glb, png, schema
from backend.protocol import HostedOptions
from backend.providers import download, hosted, http, runware
from servers.runware_server import SCENARIOS, RunwareServer, validator
from workerkit import close, read_until, run_job as run_worker_job, runware_edge_settings, save_rgba, send, \
    start_worker

KEY = "rw-key-5a4b3c2d1e0f9a8b7c6d"
FAST = {"poll_first": 0.02, "poll_factor": 1.5, "poll_cap": 0.1, "retry_base": 0.02, "retry_cap": 0.1}
UUID = "5f0e9a38-1b7c-4e7a-9c36-3a5d2b1f6e42"
STAGE_WIRE = {"sparse_structure": "sparseStructure", "shape_slat": "shapeSlat", "tex_slat": "texSlat"}


def make_job(tmp_path, server, rgba=None, key=KEY, options=None, **settings):
    return dict(id="rw", backend="runware", input={"rgba": save_rgba(tmp_path, rgba), "name": "disc"},
                settings=dict({"seed": 42}, **settings), output_dir=str(tmp_path / "out"),
                options=dict(FAST, base_url=server.url, **(options or {})), secrets={"api_key": key})


def run_job(tmp_path, server, **kwargs):
    """(protocol messages up to the job's end, worker stderr); the worker must exit cleanly."""
    return run_worker_job(make_job(tmp_path, server, **kwargs), timeout=30)


def cancel_after(tmp_path, server, wait_for, delay=0.0, **kwargs):
    """Start a job, cancel it `delay` s after a message of type/stage `wait_for`; seconds to 'cancelled'."""
    proc = start_worker()
    send(proc, "job", **make_job(tmp_path, server, **kwargs))
    end = time.monotonic() + 30
    while time.monotonic() < end:
        msg = read_until(proc, {"progress", "remote_task", "result", "error"})[-1]
        assert msg["type"] not in ("result", "error"), msg
        if wait_for in (msg["type"], msg.get("stage")):
            break
    time.sleep(delay)
    started = time.monotonic()
    send(proc, "cancel", id="rw")
    last = read_until(proc, {"cancelled", "result", "error"})[-1]
    elapsed = time.monotonic() - started
    close(proc)
    assert proc.poll() is not None  # no process left behind
    assert last["type"] == "cancelled", last
    return elapsed


@pytest.fixture()
def server():
    with RunwareServer(api_key=KEY) as srv:
        yield srv


def inference_bodies(server):
    return [t for r in server.requests for t in r["body"] if t.get("taskType") == "3dInference"]


def progress(messages):
    return [m for m in messages if m["type"] == "progress"]


# --- success ---------------------------------------------------------------------------------------

def test_one_result_end_to_end(tmp_path, server):
    messages, log = run_job(tmp_path, server)
    result = messages[-1]
    assert result["type"] == "result", messages
    assert [os.path.basename(f) for f in result["files"]] == ["result_0.glb"]
    glb.validate_glb(result["files"][0])
    assert result["seeds"] == [42] and result["cost"] == pytest.approx(0.0125)
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".part")]
    # the task id is announced right after the submit, before any poll
    task_msg = next(m for m in messages if m["type"] == "remote_task")
    assert task_msg["provider"] == "runware" and task_msg["task_id"] in server.tasks
    assert messages.index(task_msg) < next(i for i, m in enumerate(messages) if m.get("stage") == "remote")
    # the documented request: async, cost included, URL/GLB output, only the settings that apply
    [body] = inference_bodies(server)
    assert body["deliveryMethod"] == "async" and body["includeCost"] is True and body["numberResults"] == 1
    assert body["outputType"] == "URL" and body["outputFormat"] == "GLB" and body["model"] == "microsoft:trellis-2@4b"
    assert body["settings"] == {"resolution": 1024, "textureSize": 2048, "decimationTarget": 500000, "remesh": True}
    assert body["inputs"]["image"].startswith("data:image/png;base64,")  # a small image goes inline
    polls = [t for r in server.requests for t in r["body"] if t["taskType"] == "getResponse"]
    assert polls and all(p == {"taskType": "getResponse", "taskUUID": body["taskUUID"]} for p in polls)
    # progress: queued -> remote (with Runware's %) -> download (bytes); the bar never goes back
    stages = list(dict.fromkeys(m["stage"] for m in progress(messages)))
    assert stages == ["queued", "remote", "download"]
    assert any(m["stage"] == "remote" and m["text"].endswith("%") for m in progress(messages))
    download = [m for m in progress(messages) if m["stage"] == "download"]
    assert download[-1]["step"] == download[-1]["total"] == len(server.glb)
    fractions = [m["fraction"] for m in progress(messages)]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # credentials: Bearer on every API call, nothing on the file download, never in the log
    assert all(r["auth"] == f"Bearer {KEY}" for r in server.requests)
    assert server.gets and all(g["auth"] == "" for g in server.gets)
    assert KEY not in log and KEY not in str(messages)


def test_four_results(tmp_path, server):
    messages, _ = run_job(tmp_path, server, number_results=4, seed=7)
    result = messages[-1]
    assert result["type"] == "result", messages
    assert [os.path.basename(f) for f in result["files"]] == [f"result_{i}.glb" for i in range(4)]
    for path in result["files"]:
        glb.validate_glb(path)
    assert result["seeds"] == [7, 8, 9, 10] and result["cost"] == pytest.approx(4 * 0.0125)
    assert server.submits == 1 and server.downloads == 4
    assert any("0/4 done" in m["text"] for m in progress(messages) if m["stage"] == "remote")


def test_tolerates_empty_ack_and_items_without_status(tmp_path):
    with RunwareServer(api_key=KEY, scenario={"empty_ack": True, "omit_status": True}) as srv:
        messages, _ = run_job(tmp_path, srv, number_results=2)
    assert messages[-1]["type"] == "result" and len(messages[-1]["files"]) == 2


def test_partial_failure_keeps_the_results_that_arrived(tmp_path):
    with RunwareServer(api_key=KEY, scenario={"failed_results": {1}}) as srv:
        messages, _ = run_job(tmp_path, srv, number_results=3)
    result = messages[-1]
    assert result["type"] == "result" and len(result["files"]) == 2 and result["seeds"] == [42, 44]
    assert result["info"]["failed_results"] == 1
    assert any(m["type"] == "log" and "1 of 3 results failed" in m["text"] for m in messages)


# --- errors: one line, no retry ----------------------------------------------------------------------

@pytest.mark.parametrize("scenario,code,message", [
    ("400", "bad_request",
     "Runware rejected the request (parameter settings.resolution): Invalid value for parameter"),
    ("401", "auth", "Runware rejected the API key (HTTP 401): check it in the add-on preferences or RUNWARE_API_KEY"),
    ("402", "balance", "Runware: insufficient account balance (HTTP 402): top up at runware.ai"),
    ("403", "forbidden", "Runware: this API key may not use TRELLIS.2 (HTTP 403): Scripted HTTP 403"),
])
def test_client_errors(tmp_path, scenario, code, message):
    with RunwareServer(api_key=KEY, scenario=scenario) as srv:
        messages, _ = run_job(tmp_path, srv)
        assert [r["types"] for r in srv.requests] == [["3dInference"]], "no retry"
    assert messages[-1] == {"type": "error", "id": "rw", "code": code, "message": message}


def test_task_error_item(tmp_path):
    with RunwareServer(api_key=KEY, scenario="task error") as srv:
        messages, _ = run_job(tmp_path, srv)
        assert srv.submits == 1
    assert messages[-1]["code"] == "remote_error"
    assert messages[-1]["message"] == "Runware task failed (inferenceError): The model could not process the image"


def test_top_level_errors_in_a_poll_answer(tmp_path):
    errors = [{"code": "timeoutProvider", "message": "The provider timed out.\nTry again."}]
    with RunwareServer(api_key=KEY, scenario={"poll_errors": errors, "never_finish": True}) as srv:
        messages, _ = run_job(tmp_path, srv)
    assert messages[-1]["message"] == "Runware task failed (timeoutProvider): The provider timed out. Try again"


def test_unknown_task_in_poll(tmp_path, server):
    """The task vanished on Runware's side: getResponse answers 400 taskFailedOrNotFound."""
    server.never_finish = True
    proc = start_worker()
    send(proc, "job", **make_job(tmp_path, server))
    read_until(proc, {"remote_task"})
    server.tasks.clear()
    error = read_until(proc, {"result", "error"})[-1]
    close(proc)
    assert error["message"] == "Runware task failed (taskFailedOrNotFound): Task not found or failed"


def test_wrong_or_missing_key(tmp_path, server):
    messages, log = run_job(tmp_path, server, key="wrong-key-0000000000")
    assert messages[-1]["code"] == "auth" and "HTTP 401" in messages[-1]["message"]
    assert "wrong-key" not in log + str(messages)
    sent = len(server.requests)
    messages, _ = run_job(tmp_path, server, key="")
    assert messages[-1]["code"] == "auth" and "No Runware API key" in messages[-1]["message"]
    assert len(server.requests) == sent, "nothing is sent without a key"


@pytest.mark.parametrize("url", ["http://api.example.com/v1", "api.runware.ai/v1", "ftp://127.0.0.1/v1"])
def test_unsafe_or_unusable_url_sends_nothing(tmp_path, server, url):
    proc = start_worker()
    send(proc, "job", **dict(make_job(tmp_path, server), options={"base_url": url}))
    error = read_until(proc, {"result", "error"})[-1]
    close(proc)
    assert error["code"] == "bad_settings" and error["message"].startswith("Runware URL must be https://")
    assert KEY not in error["message"]


@pytest.mark.parametrize("scenario", ["401", "400", "task error"])
def test_key_echoed_by_the_server_is_scrubbed(tmp_path, scenario):
    """Even a server that quotes the key in its error text cannot get it into a message or the log."""
    behaviour = dict(SCENARIOS[scenario], echo_key=True)
    if scenario == "task error":
        behaviour["task_error"] = {"code": "inferenceError", "message": f"bad key {KEY} used"}
    if scenario == "401":
        behaviour = {"echo_key": True}
    with RunwareServer(api_key=KEY if scenario != "401" else "other-key", scenario=behaviour) as srv:
        messages, log = run_job(tmp_path, srv)
    assert messages[-1]["type"] == "error"
    assert KEY not in log and KEY not in str(messages)


# --- transient failures ----------------------------------------------------------------------------

@pytest.mark.parametrize("scenario,status", [("429 then success", 429), ("504 then success", 504)])
def test_transient_submit_failure_then_success(tmp_path, scenario, status):
    with RunwareServer(api_key=KEY, scenario=scenario) as srv:
        messages, _ = run_job(tmp_path, srv)
        assert srv.submits == 1 and len(srv.tasks) == 1
        bodies = inference_bodies(srv)
    assert messages[-1]["type"] == "result"
    assert any(m["text"].startswith(f"Runware busy (HTTP {status}), retrying in ") for m in progress(messages))
    assert len(bodies) == 2 and bodies[0] == bodies[1], "the same task (same taskUUID) is re-sent"


def test_503_storm_ends_in_a_clear_error(tmp_path):
    with RunwareServer(api_key=KEY, scenario="503 forever") as srv:
        started = time.monotonic()
        messages, _ = run_job(tmp_path, srv, options={"retry_tries": 4})
        assert len(srv.requests) == 4 and srv.submits == 0
    assert time.monotonic() - started < 5
    assert messages[-1] == {"type": "error", "id": "rw", "code": "network",
                            "message": "Runware is unavailable (HTTP 503) after 4 tries; try again later"}
    assert sum("retrying in" in m["text"] for m in progress(messages)) == 3


def test_500_is_checked_before_resending(tmp_path):
    """After an ambiguous failure the client asks whether the task exists before sending it again."""
    with RunwareServer(api_key=KEY, scenario="500 forever") as srv:
        messages, _ = run_job(tmp_path, srv, options={"retry_tries": 3})
        types = [r["types"][0] for r in srv.requests]
    assert types == ["3dInference", "getResponse", "3dInference", "getResponse", "3dInference"]
    assert messages[-1]["message"] == "Runware is unavailable (HTTP 500) after 3 tries; try again later"


def test_submit_accepted_but_answer_lost_is_not_sent_twice(tmp_path):
    with RunwareServer(api_key=KEY, scenario="dropped submit") as srv:
        messages, _ = run_job(tmp_path, srv)
        assert srv.submits == 1 and len(inference_bodies(srv)) == 1
        assert messages[-1]["type"] == "result", messages
        task_id = next(m for m in messages if m["type"] == "remote_task")["task_id"]
        assert list(srv.tasks) == [task_id]


@pytest.mark.parametrize("behaviour", [
    {"poll_statuses": [500, 503, 502, 429, 504, 408]},
    {"drop_polls": 2},  # connection reset
    {"slow_polls": [1.0]},  # read timeout (options.read_timeout 0.3 s)
])
def test_transient_poll_failures_keep_the_same_task(tmp_path, behaviour):
    with RunwareServer(api_key=KEY, scenario=behaviour) as srv:
        messages, _ = run_job(tmp_path, srv, options={"read_timeout": 0.3})
        polled = {t["taskUUID"] for r in srv.requests for t in r["body"] if t["taskType"] == "getResponse"}
        assert srv.submits == 1 and polled == set(srv.tasks)
    assert messages[-1]["type"] == "result", messages
    assert any("still polling" in m["text"] for m in progress(messages))
    fractions = [m["fraction"] for m in progress(messages)]
    assert fractions == sorted(fractions), "the bar never goes back"


def test_poll_timeout(tmp_path):
    with RunwareServer(api_key=KEY, scenario="never finish") as srv:
        started = time.monotonic()
        messages, _ = run_job(tmp_path, srv, options={"poll_timeout": 0.5})
        task_id = next(iter(srv.tasks))
    assert 0.5 <= time.monotonic() - started < 5
    assert messages[-1]["code"] == "timeout"
    assert messages[-1]["message"] == (f"Runware did not finish within 0.00833333 min (task {task_id}); "
                                       "it may still complete and be billed")


# --- downloads -------------------------------------------------------------------------------------

def test_truncated_glb_names_the_file(tmp_path):
    with RunwareServer(api_key=KEY, scenario="truncated glb") as srv:
        messages, _ = run_job(tmp_path, srv)
        name = f"{next(iter(srv.tasks))}_0.glb"
    error = messages[-1]
    assert error["code"] == "bad_output" and error["message"].startswith(f"Runware result {name} is not a complete GLB")
    assert os.listdir(tmp_path / "out") == []


def test_cut_download_is_retried_then_reported(tmp_path):
    with RunwareServer(api_key=KEY, scenario="cut glb") as srv:
        messages, _ = run_job(tmp_path, srv, options={"download_tries": 2})
        name = f"{next(iter(srv.tasks))}_0.glb"
        assert srv.downloads == 2
    assert messages[-1]["message"] == f"download of Runware result {name} failed (connection cut) after 2 tries"
    assert os.listdir(tmp_path / "out") == []


def test_busy_download_then_success(tmp_path):
    with RunwareServer(api_key=KEY, scenario={"download_statuses": [503]}) as srv:
        messages, _ = run_job(tmp_path, srv)
        assert srv.downloads == 2
    assert messages[-1]["type"] == "result"


def test_download_of_a_non_glb_is_an_error(tmp_path):
    with RunwareServer(api_key=KEY, glb=b"<html>Access denied</html>") as srv:
        messages, _ = run_job(tmp_path, srv)
    assert messages[-1]["code"] == "bad_output" and "_0.glb is not a complete GLB" in messages[-1]["message"]


# --- cancel ----------------------------------------------------------------------------------------

def test_cancel_mid_poll(tmp_path, server):
    server.never_finish = True
    assert cancel_after(tmp_path, server, "remote_task", delay=0.2, options={"poll_first": 5.0}) < 0.5
    assert server.polls == 0
    assert not os.path.exists(tmp_path / "out" / "result_0.glb")


def test_cancel_during_retry_wait(tmp_path):
    with RunwareServer(api_key=KEY, scenario="503 forever") as srv:
        elapsed = cancel_after(tmp_path, srv, "queued", options={"retry_base": 30.0, "retry_cap": 30.0})
        assert len(srv.requests) <= 1
    assert elapsed < 0.5


def test_cancel_while_a_request_hangs(tmp_path):
    """A poll the server does not answer (for 10 s, within the read timeout) does not delay a cancel."""
    with RunwareServer(api_key=KEY, scenario={"slow_polls": [10.0]}) as srv:
        assert cancel_after(tmp_path, srv, "remote_task", delay=0.3, options={"read_timeout": 30}) < 0.5
        assert srv.polls == 1


def big_glb(path, side=256):
    """A valid GLB of about 200 KB (a noise texture does not compress)."""
    noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    quad = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    glb.write_glb(str(path), quad, np.tile([0, 0, 1], (4, 1)), quad[:, :2], [0, 1, 2, 0, 2, 3],
                  png.encode_png(noise), png.encode_png(noise[..., :1]))
    return open(path, "rb").read()


def test_cancel_during_download_leaves_no_file(tmp_path):
    data = big_glb(tmp_path / "big.glb")
    with RunwareServer(api_key=KEY, glb=data, scenario={"slow_glb": 0.02}) as srv:
        assert cancel_after(tmp_path, srv, "download") < 0.5
    assert os.listdir(tmp_path / "out") == []


def test_big_download_reports_bytes(tmp_path):
    data = big_glb(tmp_path / "big.glb")
    with RunwareServer(api_key=KEY, glb=data) as srv:
        messages, _ = run_job(tmp_path, srv)
    assert messages[-1]["type"] == "result" and os.path.getsize(messages[-1]["files"][0]) == len(data)
    steps = [m["step"] for m in progress(messages) if m["stage"] == "download"]
    assert len(steps) >= 3 and steps == sorted(steps) and steps[-1] == len(data)


# --- bytes sent ------------------------------------------------------------------------------------

def photo(size=1024, alpha=None):
    """A photo-like picture: gradients plus grain."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    grain = rng.normal(0, 6, (size, size))
    rgba = np.empty((size, size, 4), np.float32)
    rgba[..., 0] = 128 + 100 * np.sin(6 * xx + 2 * yy) + grain
    rgba[..., 1] = 100 + 80 * np.cos(5 * yy) * xx + grain
    rgba[..., 2] = 80 + 60 * yy + grain
    rgba[..., 3] = 255 if alpha is None else alpha
    return np.clip(rgba + 0.5, 0, 255).astype(np.uint8)


def decode(data_uri):
    from PIL import Image  # test-only (requirements); the worker itself has no Pillow
    return np.array(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))))


def test_large_image_is_uploaded_once_and_submits_stay_small(tmp_path):
    size = 1024
    yy, xx = np.mgrid[:size, :size]
    alpha = np.where((xx - 512) ** 2 + (yy - 512) ** 2 < 380 ** 2, 255, 0)
    rgba = photo(size, alpha)
    with RunwareServer(api_key=KEY, scenario="429 then success") as srv:
        messages, _ = run_job(tmp_path, srv, rgba=rgba)
        assert messages[-1]["type"] == "result", messages
        assert srv.uploads == 1
        [uri] = srv.uploaded.values()
        bodies = inference_bodies(srv)
        assert len(bodies) == 2 and all(b["inputs"]["image"] in srv.uploaded for b in bodies)
        submits = [r["bytes"] for r in srv.requests if r["types"] == ["3dInference"]]
        total = sum(r["bytes"] for r in srv.requests)
    assert max(submits) < 600
    assert total < len(uri) + 3000, "the image travels once; everything else is small"
    assert [m["stage"] for m in progress(messages)][:2] == ["upload", "upload"]
    # what was sent is the image (alpha kept); colour under transparent pixels is zeroed
    sent = decode(uri)
    assert sent.shape == (size, size, 4) and np.array_equal(sent[..., 3], rgba[..., 3])
    shown = alpha > 0
    assert np.array_equal(sent[shown], rgba[shown]) and not sent[~shown].any()
    naive = len(hosted.inputs.data_uri(hosted.inputs.png_bytes(rgba)))
    assert len(uri) < naive / 2, (len(uri), naive)


def test_opaque_image_is_sent_as_rgb(tmp_path, server):
    rgba = photo(160)
    messages, _ = run_job(tmp_path, server, rgba=rgba)
    assert messages[-1]["type"] == "result"
    image = inference_bodies(server)[0]["inputs"]["image"]
    assert image.startswith("data:image/png;base64,") and server.uploads == 0
    assert np.array_equal(decode(image), rgba[..., :3])


def test_upload_rule():
    assert not runware.use_upload(runware.INLINE_LIMIT) and runware.use_upload(runware.INLINE_LIMIT + 1)
    assert runware.use_upload(10, inline_limit=0)


# --- request bodies against the spec ----------------------------------------------------------------

def test_every_request_the_client_builds_validates_against_the_spec():
    check = validator()
    cases = list(runware_edge_settings())
    images = ("data:image/png;base64,iVBORw0KGgo=", "0b5b8a2e-7d8e-4a55-9d3f-2f1c8a4b9e11",
              "https://im.runware.ai/image/ws/0.5/ii/0b5b8a2e.png")
    stages_seen = set()
    for settings in cases:
        for image in images:
            task = runware.inference_task(settings, image, UUID)
            errors = [e.message for e in check.iter_errors(task)]
            assert not errors, (settings, errors)
            stages_seen |= {k for k in task["settings"] if isinstance(task["settings"][k], dict)}
            for stage in schema.STAGES:
                assert (STAGE_WIRE[stage.name] in task["settings"]) == settings[stage.override]
    assert stages_seen == set(STAGE_WIRE.values())
    assert len(cases) == 1 + sum(len(p.choice_values() or (0, 1)) for p in schema.PARAMS)  # less 2 000 000 faces


@pytest.mark.parametrize("change", [
    lambda t: t.update(taskUUID="not-a-uuid"),
    lambda t: t["inputs"].update(image="not an image!"),
    lambda t: t.update(extra=1),
    lambda t: t["settings"].update(textureSize=3000),
    lambda t: t.update(numberResults=5),
    lambda t: t["settings"].update(texSlat={"steps": 51}),
])
def test_the_spec_check_is_not_vacuous(change):
    task = runware.inference_task(schema.defaults(), "data:image/png;base64,AAAA", UUID)
    change(task)
    assert list(validator().iter_errors(task))


def test_the_server_answers_like_the_api(server):
    """Directly, without the worker: auth by header or authentication task, 400 with parameter."""
    task = runware.inference_task(schema.defaults(), "data:image/png;base64,AAAA", UUID)
    auth = {"taskType": "authentication", "apiKey": KEY}
    ok = requests.post(server.url, json=[auth, task], timeout=5)
    assert ok.status_code == 200 and ok.json() == {"data": [{"taskType": "3dInference", "taskUUID": UUID}]}
    assert requests.post(server.url, json=[task], timeout=5).status_code == 401
    bad = dict(task, taskUUID="0b5b8a2e-7d8e-4a55-9d3f-2f1c8a4b9e11", settings={"resolution": 768})
    answer = requests.post(server.url, json=[bad], headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert answer.status_code == 400 and answer.json()["errors"][0]["parameter"] == "settings.resolution"
    dup = requests.post(server.url, json=[auth, task], timeout=5)
    assert dup.status_code == 400, "taskUUID must be unique per task"
    poll = requests.post(server.url, json=[auth, {"taskType": "getResponse", "taskUUID": UUID}], timeout=5).json()
    assert poll["data"][0]["status"] == "processing" and 0 <= poll["data"][0]["progress"] <= 100


# --- http.py helpers ------------------------------------------------------------------------------

def backoff_schedule(tries: int, base: float, cap: float) -> list[float]:
    """The un-jittered upper bounds of the waits between `tries` attempts."""
    return [min(cap, base * 2 ** attempt) for attempt in range(max(0, tries - 1))]


def test_backoff_and_poll_cadence():
    for attempt in range(8):
        step = min(30.0, 1.0 * 2 ** attempt)
        assert all(step / 2 <= http.backoff(attempt, 1.0, 30.0) <= step for _ in range(50))
    assert backoff_schedule(5, 1.0, 10.0) == [1.0, 2.0, 4.0, 8.0]
    assert [http.backoff(a, 1.0, 10.0) <= b for a, b in enumerate(backoff_schedule(5, 1.0, 10.0))] == [True] * 4
    delays = http.poll_delays(1.0, 1.5, 10.0)
    assert [round(next(delays), 4) for _ in range(8)] == [1.0, 1.5, 2.25, 3.375, 5.0625, 7.5938, 10.0, 10.0]


def test_status_classification_and_helpers():
    assert [http.classify(s) for s in (200, 400, 401, 402, 403, 404, 408, 429, 500, 502, 503, 504, 418)] == [
        "ok", "bad_request", "auth", "balance", "forbidden", "not_found", "transient", "transient", "transient",
        "transient", "transient", "transient", "remote_error"]
    assert download.file_name("https://im.runware.ai/a/b/x.glb?sig=1#f") == "x.glb"
    assert hosted.scrub(f"key {KEY} and {KEY}", KEY, "") == "key *** and ***"
    assert http.encode_json([{"a": 1, "b": "é"}]) == '[{"a":1,"b":"é"}]'.encode()


class FakeCtx:
    output_dir = ""

    def __init__(self):
        self.texts = []

    def progress(self, stage, step, total, fraction, text=""):
        self.texts.append(text)

    def log(self, text, level="info"):
        self.texts.append(text)

    def check_cancel(self):
        pass


def test_client_retries_are_provider_neutral(server):
    """The one client: transient statuses retried with the provider's label, the same bytes re-sent."""
    ctx = FakeCtx()
    task = runware.inference_task(schema.defaults(), "data:image/png;base64,AAAA", UUID)
    server.submit_statuses = [503, 429]
    options = HostedOptions(base_url=server.url, retry_base=0.01, retry_cap=0.02)
    client = http.Client(ctx, "Acme", options, "https://unused.example/v1", {"Authorization": f"Bearer {KEY}"},
                         runware.status_error)
    answer = client.request("POST", "", [task], stage="queued")
    assert answer["data"][0]["taskUUID"] == UUID
    assert [t for t in ctx.texts if t.startswith("Acme busy")] == ["Acme busy (HTTP 503), retrying in 0 s",
                                                                   "Acme busy (HTTP 429), retrying in 0 s"]
    assert [r["bytes"] for r in server.requests] == [len(http.encode_json([task]))] * 3
