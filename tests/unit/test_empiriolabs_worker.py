"""The EmpirioLabs backend through the real worker process against a local server following its docs."""
import os

import pytest

from servers.empiriolabs_server import EmpirioLabsServer
from workerkit import FAST, cancel_mid_poll, first_error, run_job, save_rgba

KEY = "el-secret-key-0123456789abcdef"


@pytest.fixture()
def server():
    with EmpirioLabsServer(api_key=KEY) as srv:
        yield srv


def job(tmp_path, server, key=KEY, options=None, **settings):
    return dict(id="el1", backend="empiriolabs", input={"rgba": save_rgba(tmp_path), "name": "disc"},
                settings=dict({"seed": 42}, **settings), output_dir=str(tmp_path / "out"),
                options=dict(FAST, base_url=server.url, **(options or {})), secrets={"api_key": key})


def run(tmp_path, server, **kwargs):
    return run_job(job(tmp_path, server, **kwargs))


def submits(server):
    return [r for r in server.requests if r["method"] == "POST"]


def test_success_maps_settings_and_reports_the_price(tmp_path, server):
    messages, log = run(tmp_path, server, resolution=512, tex_slat_override=True, tex_slat_steps=30)
    result = messages[-1]
    assert result["type"] == "result", messages
    assert result["seeds"] == [42] and result["cost"] == pytest.approx(0.025) and result["cost_unit"] == "USD"
    assert [os.path.basename(f) for f in result["files"]] == ["result_0.glb"]
    body = submits(server)[0]["body"]
    assert body["model"] == "trellis-2-4b" and body["image"].startswith("data:image/png;base64,")
    assert body["resolution"] == "512" and body["pipeline_type"] == "512" and body["response_format"] == "url"
    assert body["tex_slat_sampling_steps"] == 30 and body["tex_slat_guidance_interval_end"] == 0.9
    assert "ss_sampling_steps" not in body and body["seed"] == 42
    task = next(m for m in messages if m["type"] == "remote_task")
    assert task["provider"] == "empiriolabs" and task["task_id"] in server.jobs
    texts = [m.get("text", "") for m in messages if m["type"] == "progress"]
    assert "EmpirioLabs: queued" in texts and any("EmpirioLabs generating" in t and "%" in t for t in texts)
    assert all(r["auth"] == f"Bearer {KEY}" for r in server.requests if r["path"] != "/files/")
    assert all(r["auth"] == "" for r in server.requests if r["path"] == "/files/"), "no key to the file host"
    assert KEY not in log and all(KEY not in str(m) for m in messages)


def test_three_results_are_three_jobs_with_consecutive_seeds(tmp_path, server):
    messages, _ = run(tmp_path, server, number_results=3, seed=7)
    assert messages[-1]["seeds"] == [7, 8, 9] and len(messages[-1]["files"]) == 3
    assert [r["body"]["seed"] for r in submits(server)] == [7, 8, 9]
    assert messages[-1]["cost"] == pytest.approx(3 * 0.249)


@pytest.mark.parametrize("form", ["files", "data", "b64"])
def test_plausible_result_shapes_are_accepted(tmp_path, server, form):
    server.result_form = form
    messages, _ = run(tmp_path, server)
    assert messages[-1]["type"] == "result", messages[-1]
    assert server.downloads == (0 if form == "b64" else 1)


def test_unknown_result_shape_names_its_keys(tmp_path, server):
    server.result_form = "odd"
    messages, _ = run(tmp_path, server)
    assert messages[-1]["code"] == "bad_output"
    assert "result: {mesh, meta}" in messages[-1]["message"] and "job keys: " in messages[-1]["message"]


@pytest.mark.parametrize("status,fragment", [(401, "rejected the API key (HTTP 401)"),
                                             (402, "insufficient credits (HTTP 402)")])
def test_client_errors_are_clear_and_not_retried(tmp_path, server, status, fragment):
    server.statuses["submit"] = [status]
    messages, _ = run(tmp_path, server)
    assert messages[-1]["type"] == "error" and fragment in messages[-1]["message"]
    assert len(submits(server)) == 1


def test_wrong_key_is_never_echoed(tmp_path, server):
    messages, log = run(tmp_path, server, key="wrong-key-zzzzzzzzzzzz")
    assert "HTTP 401" in messages[-1]["message"] and "wrong-key" not in log + str(messages)


def test_429_is_retried_with_backoff_then_succeeds(tmp_path, server):
    server.statuses["submit"] = [429, 429]
    server.error_body = {"error": {"message": "Rate limit exceeded", "code": "rate_limit_exceeded"}}
    messages, _ = run(tmp_path, server)
    assert messages[-1]["type"] == "result"
    assert sum("EmpirioLabs busy (HTTP 429), retrying in" in m.get("text", "") for m in messages) == 2
    assert len(server.jobs) == 1


def test_429_storm_ends_in_a_clear_error(tmp_path, server):
    server.statuses["submit"] = [429] * 10
    messages, _ = run(tmp_path, server, options={"retry_tries": 3})
    assert messages[-1]["message"] == "EmpirioLabs is unavailable (HTTP 429) after 3 tries; try again later"
    assert len(submits(server)) == 3


def test_ambiguous_submit_failure_is_not_sent_twice(tmp_path, server):
    server.statuses["submit"] = [502]
    messages, _ = run(tmp_path, server)
    assert messages[-1]["code"] == "remote_error" and "not sending it again" in messages[-1]["message"]
    assert len(submits(server)) == 1


def test_settings_outside_empiriolabs_range_are_refused_before_sending(tmp_path, server):
    messages, _ = run(tmp_path, server, decimation_target=1500000)
    assert messages[-1]["code"] == "bad_settings" and "EmpirioLabs accepts Face Budget" in messages[-1]["message"]
    assert server.requests == []


def test_failed_job(tmp_path, server):
    server.job_error = {"message": "Upstream model failed.", "code": "upstream_error"}
    messages, _ = run(tmp_path, server)
    assert messages[-1]["message"] == "EmpirioLabs job failed (upstream_error): Upstream model failed"


def test_transient_poll_failures_keep_polling(tmp_path, server):
    server.statuses["poll"] = [500, 503, 429]
    messages, _ = run(tmp_path, server)
    assert messages[-1]["type"] == "result" and len(server.jobs) == 1


def test_retexture_is_refused(tmp_path, server):
    error = first_error(dict(job(tmp_path, server), mode="retexture"))
    assert error["code"] == "bad_settings" and "cannot retexture" in error["message"]


def test_cancel_mid_poll_stops_at_once(tmp_path, server):
    server.never_finish = True
    cancel_mid_poll(job(tmp_path, server, options={"poll_cap": 2.0}))
