"""The Scenario backend through the real worker process against a local server following its docs."""
import base64

import pytest

from servers.base import tiny_glb
from servers.scenario_server import ScenarioServer
from workerkit import FAST, cancel_mid_poll, run_job, save_rgba

KEY, SECRET = "sc-key-0123456789abcdef", "sc-secret-fedcba9876543210"


@pytest.fixture()
def server():
    with ScenarioServer(key=KEY, secret=SECRET) as srv:
        yield srv


def job(tmp_path, server, secret=SECRET, options=None, mode="generate", **settings):
    inputs = {"rgba": save_rgba(tmp_path), "name": "disc"}
    if mode == "retexture":
        inputs["mesh"] = str(tmp_path / "mesh.glb")
        (tmp_path / "mesh.glb").write_bytes(tiny_glb())
    return dict(id="sc1", backend="scenario", mode=mode, input=inputs, settings=dict({"seed": 42}, **settings),
                output_dir=str(tmp_path / "out"), options=dict(FAST, base_url=server.url, **(options or {})),
                secrets={"api_key": KEY, "api_secret": secret})


def run(tmp_path, server, **kwargs):
    return run_job(job(tmp_path, server, **kwargs))


def generates(server):
    return [r for r in server.requests if r["path"].startswith("/v1/generate/")]


def test_success_walks_every_status_and_reports_creative_units(tmp_path, server):
    messages, log = run(tmp_path, server, decimation_target=2000000, shape_slat_override=True)
    result = messages[-1]
    assert result["type"] == "result", messages
    assert result["cost"] == 12 and result["cost_unit"] == "CU" and result["seeds"] == [42]
    call = generates(server)[0]
    assert call["path"] == "/v1/generate/custom/model_trellis-2" and call["query"] == {}
    body = call["body"]
    assert body["image"] in server.assets and body["decimationTarget"] == 2000000 and body["seed"] == 42
    assert body["shapeSlatSamplingSteps"] == 12 and "shapeSlatRescaleT" not in body and "ssSamplingSteps" not in body
    polls = [r for r in server.requests if r["path"].startswith("/v1/jobs/")]
    assert len(polls) == server.polls_to_finish + 1
    task = next(m for m in messages if m["type"] == "remote_task")
    assert task["provider"] == "scenario" and task["task_id"] in server.jobs
    auth = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert all(r["auth"] == auth for r in server.requests if r["path"] != "/files/")
    assert all(r["auth"] == "" for r in server.requests if r["path"] == "/files/")
    for secret in (KEY, SECRET, auth[6:]):
        assert secret not in log and all(secret not in str(m) for m in messages)


def test_quote_only_generates_nothing(tmp_path, server):
    messages, _ = run(tmp_path, server, number_results=2, options={"quote_only": True})
    result = messages[-1]
    assert result["files"] == [] and result["cost"] == 24 and result["cost_unit"] == "CU"
    assert result["info"]["quote"] is True and server.quotes == 1 and server.jobs == {}
    assert generates(server)[0]["query"] == {"dryRun": ["true"]}


def test_two_results_are_two_jobs(tmp_path, server):
    messages, _ = run(tmp_path, server, number_results=2, seed=5)
    assert messages[-1]["seeds"] == [5, 6] and len(messages[-1]["files"]) == 2 and messages[-1]["cost"] == 24


def test_retexture_uploads_the_mesh_and_sends_only_retexture_knobs(tmp_path, server):
    messages, _ = run(tmp_path, server, mode="retexture", resolution=512, tex_slat_override=True,
                          tex_slat_steps=20, shape_slat_override=True)
    assert messages[-1]["type"] == "result", messages[-1]
    call = generates(server)[0]
    assert call["path"] == "/v1/generate/custom/model_trellis-2-retexture"
    body = call["body"]
    assert server.assets[body["model"]]["data"].startswith("data:model/gltf-binary;base64,")
    assert server.assets[body["image"]]["data"].startswith("data:image/png;base64,")
    assert body["texSlatSamplingSteps"] == 20 and body["resolution"] == 512
    assert not {"shapeSlatSamplingSteps", "decimationTarget", "remesh"} & set(body)
    assert messages[-1]["info"]["mode"] == "retexture"


def test_retexture_resolution_limit_is_refused_before_sending(tmp_path, server):
    messages, _ = run(tmp_path, server, mode="retexture", resolution=1536)
    assert messages[-1]["code"] == "bad_settings" and "one of 512, 1024, got 1536" in messages[-1]["message"]
    assert server.requests == []


def test_remesh_band_below_scenario_minimum_is_refused(tmp_path, server):
    messages, _ = run(tmp_path, server, remesh_band=0.5)
    assert "Scenario accepts Remesh Band (remeshBand) 1 to 4, got 0.5" in messages[-1]["message"]
    assert server.requests == []


def test_failure_status(tmp_path, server):
    server.job_error = "GPU worker crashed"
    messages, _ = run(tmp_path, server)
    assert messages[-1]["message"] == "Scenario job failure: GPU worker crashed"


def test_wrong_secret_is_401_and_never_echoed(tmp_path, server):
    messages, log = run(tmp_path, server, secret="wrong-secret-zzzz")
    assert "rejected the API key and secret (HTTP 401)" in messages[-1]["message"]
    assert "wrong-secret" not in log + str(messages)


def test_429_with_remaining_seconds_is_retried(tmp_path, server):
    server.statuses["submit"] = [429]
    messages, _ = run(tmp_path, server)
    assert messages[-1]["type"] == "result"
    assert any("Scenario busy (HTTP 429), retrying in" in m.get("text", "") for m in messages)
    assert len(server.jobs) == 1


def test_400_names_the_reason_and_trace(tmp_path, server):
    server.statuses["submit"] = [400]
    server.error_body = {"reason": "Invalid seed", "traceId": "trace-42"}
    messages, _ = run(tmp_path, server)
    assert messages[-1]["message"] == "Scenario rejected the request: Invalid seed (trace trace-42)"


def test_cancel_mid_poll(tmp_path, server):
    server.never_finish = True
    cancel_mid_poll(job(tmp_path, server, options={"poll_cap": 2.0}))
