"""EmpirioLabs and Scenario from the operator, in real Blender, against the local test servers."""
import base64
import glob
import json
import os

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, PKG, mod
from servers.empiriolabs_server import EmpirioLabsServer
from servers.scenario_server import ScenarioServer

EL_KEY = "el-blender-secret-1a2b3c4d5e"
SC_KEY, SC_SECRET = "sc-blender-key-6f7e8d9c", "sc-blender-secret-0a9b8c7d"
FAST = {"polls_to_finish": 0}


def _prefs():
    return bpy.context.preferences.addons[PKG].preferences


@pytest.fixture()
def online(scene, monkeypatch):
    for name in ("EMPIRIOLABS_API_KEY", "SCENARIO_API_KEY", "SCENARIO_API_SECRET", "TRELLIS_EMPIRIOLABS_URL",
                 "TRELLIS_SCENARIO_URL"):
        monkeypatch.delenv(name, raising=False)
    bpy.context.preferences.system.use_online_access = True
    _prefs().session_cap = 0.0
    yield
    prefs = _prefs()
    prefs.empiriolabs_api_key = prefs.empiriolabs_url = ""
    prefs.scenario_api_key = prefs.scenario_api_secret = prefs.scenario_url = ""
    bpy.context.preferences.system.use_online_access = False


@pytest.fixture()
def empiriolabs(online):
    with EmpirioLabsServer(api_key=EL_KEY, scenario=FAST) as server:
        _prefs().empiriolabs_api_key, _prefs().empiriolabs_url = EL_KEY, server.url
        yield server


@pytest.fixture()
def scenario(online):
    with ScenarioServer(key=SC_KEY, secret=SC_SECRET) as server:
        server.polls_to_finish = 1
        _prefs().scenario_api_key, _prefs().scenario_api_secret = SC_KEY, SC_SECRET
        _prefs().scenario_url = server.url
        yield server


def test_empiriolabs_result_lands_in_the_scene_with_its_usd_cost(empiriolabs):
    before = mod("trellis_addon.spending").session.total("USD")
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="empiriolabs", seed=11, resolution=512) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    record = json.loads(obj["trellis2"])
    assert record["backend"] == "empiriolabs" and record["seed"] == 11 and record["cost_unit"] == "USD"
    assert mod("trellis_addon.spending").session.total("USD") == pytest.approx(before + 0.025)
    body = next(r["body"] for r in empiriolabs.requests if r["method"] == "POST")
    assert body["resolution"] == "512" and body["seed"] == 11


def test_scenario_result_reports_creative_units_not_dollars(scenario):
    jobs = mod("trellis_addon.queue")
    before = mod("trellis_addon.spending").session.total("USD")
    credits = mod("trellis_addon.spending").session.total("CU")
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="scenario", seed=4) == {"FINISHED"}
    record = json.loads(bpy.context.view_layer.objects.active["trellis2"])
    assert record["backend"] == "scenario" and record["cost"] == 12 and record["cost_unit"] == "CU"
    assert mod("trellis_addon.spending").session.total("USD") == before, "creative units never count as dollars"
    assert mod("trellis_addon.spending").session.total("CU") == credits + 12
    last = jobs.manager.jobs[-1]
    assert mod("trellis_addon.spending").money(last.cost, last.cost_unit) == "12 CU"


def test_scenario_secret_from_environment_and_never_stored(scenario, monkeypatch, tmp_path):
    _prefs().scenario_api_secret = ""
    with pytest.raises(RuntimeError, match="No API secret.*SCENARIO_API_SECRET"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="scenario", seed=1)
    assert scenario.requests == []
    monkeypatch.setenv("SCENARIO_API_SECRET", SC_SECRET)
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="scenario", seed=1) == {"FINISHED"}
    job = mod("trellis_addon.queue").manager.jobs[-1]
    token = base64.b64encode(f"{SC_KEY}:{SC_SECRET}".encode()).decode()
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    for secret in (SC_KEY, SC_SECRET, token):
        assert secret not in " ".join(job.worker.proc.args)
        assert secret.encode() not in blend.read_bytes()
        for path in glob.glob(os.path.join(job.output_dir, "*")):
            with open(path, "rb") as f:
                assert secret.encode() not in f.read(), path


@pytest.mark.parametrize("backend", ["empiriolabs", "scenario"])
def test_online_access_off_sends_nothing(empiriolabs, scenario, backend):
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend=backend, seed=1)
    assert empiriolabs.requests == [] and scenario.requests == []


def test_provider_limit_is_refused_before_any_worker_starts(scenario):
    count = len(mod("trellis_addon.queue").manager.jobs)
    with pytest.raises(RuntimeError, match="Scenario accepts Remesh Band \\(remeshBand\\) 1 to 4, got 0.5"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="scenario", seed=1, remesh_band=0.5)
    assert len(mod("trellis_addon.queue").manager.jobs) == count and scenario.requests == []


def test_scenario_quote_generates_nothing_and_spends_nothing(scenario):
    jobs, history = mod("trellis_addon.queue"), mod("trellis_addon.history")
    s = bpy.context.scene.trellis2
    s.image, s.backend, s.number_results = bpy.data.images.load(EXAMPLE_IMAGE), "scenario", 2
    credits, objects = mod("trellis_addon.spending").session.total("CU"), len(bpy.data.objects)
    assert bpy.ops.trellis.quote_cost() == {"FINISHED"}
    job = jobs.manager.jobs[-1]
    assert job.is_quote and job.state == jobs.DONE
    assert job.text == "Quote: 24 CU (2 × 12)"
    submits = [r for r in scenario.requests if r["path"].startswith("/v1/generate/")]
    assert scenario.quotes == 1 and scenario.jobs == {} and len(submits) == 1
    assert submits[0]["query"] == {"dryRun": ["true"]}
    assert len(bpy.data.objects) == objects, "a quote adds nothing to the scene"
    assert mod("trellis_addon.spending").session.total("CU") == credits, "a quote is not a spend"
    jobs.flush_records()
    root = _prefs().output_dir
    assert history.history.entries(root) == [] and os.listdir(os.path.join(root, ".quotes")) == []


def test_quote_only_where_the_provider_gives_one(scenario):
    s = bpy.context.scene.trellis2
    s.image = bpy.data.images.load(EXAMPLE_IMAGE)
    s.backend = "scenario"
    assert bpy.ops.trellis.quote_cost.poll()
    s.backend = "runware"
    assert not bpy.ops.trellis.quote_cost.poll()
    generation = mod("trellis_addon.request")
    with pytest.raises(generation.RequestError, match="Runware.*no cost quote.*Scenario"):
        generation.prepare_job(image=EXAMPLE_IMAGE, backend="runware", settings=s.to_settings(), quote=True)


def test_credit_cap_refuses_scenario_jobs_before_sending(scenario):
    """The Credit Cap counts creative units: the estimate is the last price Scenario reported (here a quote)."""
    generation = mod("trellis_addon.request")
    s = bpy.context.scene.trellis2
    s.image, s.backend, s.number_results, s.resolution = bpy.data.images.load(EXAMPLE_IMAGE), "scenario", 1, "1024"
    mod("trellis_addon.spending").session.prices.clear()
    spent = mod("trellis_addon.spending").session.total("CU")
    _prefs().session_credit_cap = spent + 20
    try:
        assert bpy.ops.trellis.quote_cost() == {"FINISHED"}  # learns 12 CU per result at 1024
        assert mod("trellis_addon.spending").session.prices[("scenario", "generate", 1024)] == 12
        assert bpy.ops.trellis.generate(backend="scenario", seed=8, force_new=True) == {"FINISHED"}  # 12 <= 20
        sent = len(scenario.requests)
        with pytest.raises(RuntimeError, match=r"Session credit cap \d+ CU reached .*this job about 12 CU"):
            bpy.ops.trellis.generate(backend="scenario", seed=9, force_new=True)  # 12 + 12 > 20
        assert len(scenario.requests) == sent, "nothing sent past the cap"
        generation.prepare_job(image=EXAMPLE_IMAGE, backend="scenario", settings=s.to_settings(), quote=True)
        _prefs().session_credit_cap = 0.0
        assert bpy.ops.trellis.generate(backend="scenario", seed=9, force_new=True) == {"FINISHED"}
    finally:
        _prefs().session_credit_cap = 0.0
