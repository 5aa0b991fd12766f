"""trellis.retexture in real Blender: through the local stand-in pipeline and the Scenario test server,
the object keeps its vertex count and world transform and gets the new material, in one undo step."""
import json
import os
import sys

import bpy
import numpy as np
import pytest

from conftest import EXAMPLE_IMAGE, PKG, ROOT, mod
from servers import meshes
from servers.scenario_server import ScenarioServer

SC_KEY, SC_SECRET = "sc-rt-key-11223344", "sc-rt-secret-55667788"


def textured_box_glb() -> bytes:
    from backend import glb, png
    return meshes.textured_box_glb(glb, png)


def make_object():
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, radius=1.3, location=(2.0, -1.0, 0.5),
                                         rotation=(0.3, 0.0, 0.7))
    obj = bpy.context.active_object
    obj.scale = (1.0, 2.0, 0.5)
    old = bpy.data.materials.new("Old")
    obj.data.materials.append(old)
    bpy.context.view_layer.update()
    return obj


def signature(obj):
    return len(obj.data.vertices), tuple(tuple(round(v, 6) for v in row) for row in obj.matrix_world)


@pytest.fixture()
def scenario(scene, monkeypatch):
    for name in ("SCENARIO_API_KEY", "SCENARIO_API_SECRET", "TRELLIS_SCENARIO_URL"):
        monkeypatch.delenv(name, raising=False)
    bpy.context.preferences.system.use_online_access = True
    prefs = bpy.context.preferences.addons[PKG].preferences
    with ScenarioServer(key=SC_KEY, secret=SC_SECRET, glb=textured_box_glb()) as server:
        server.polls_to_finish = 1
        prefs.scenario_api_key, prefs.scenario_api_secret, prefs.scenario_url = SC_KEY, SC_SECRET, server.url
        yield server
    prefs.scenario_api_key = prefs.scenario_api_secret = prefs.scenario_url = ""
    bpy.context.preferences.system.use_online_access = False


@pytest.fixture()
def local(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("TRELLIS_STANDIN_LOG", str(tmp_path / "calls.jsonl"))
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.local_python, prefs.local_repo = sys.executable, os.path.join(ROOT, "tests", "standins")
    mod("trellis_addon.queue").manager.unload()
    yield tmp_path / "calls.jsonl"
    mod("trellis_addon.queue").manager.unload()
    prefs.local_python = prefs.local_repo = ""


def test_scenario_retexture_keeps_geometry_and_transform(scenario):
    obj = make_object()
    before = signature(obj)
    assert bpy.ops.trellis.retexture(image=EXAMPLE_IMAGE, backend="scenario", seed=3, resolution=512) == {"FINISHED"}
    assert signature(obj) == before
    assert [m.name for m in obj.data.materials] != ["Old"] and len(obj.data.materials) == 1
    assert obj.data.uv_layers.active.name == "TRELLIS_UV"
    uvs = np.zeros(len(obj.data.loops) * 2)
    obj.data.uv_layers.active.data.foreach_get("uv", uvs)
    assert np.ptp(uvs) > 0.1, "UVs came from the result"
    call = next(r for r in scenario.requests if r["path"].startswith("/v1/generate/"))
    assert call["path"].endswith("model_trellis-2-retexture") and call["body"]["resolution"] == 512
    assert scenario.assets[call["body"]["model"]]["data"].startswith("data:model/gltf-binary;base64,")
    assert set(bpy.data.objects) == {obj}, "the imported result is gone"
    assert bpy.context.view_layer.objects.active == obj and obj.select_get()


def test_scenario_retexture_on_a_copy_leaves_the_original(scenario):
    obj = make_object()
    before = signature(obj)
    assert bpy.ops.trellis.retexture(image=EXAMPLE_IMAGE, backend="scenario", seed=3, on_copy=True) == {"FINISHED"}
    copy = bpy.data.objects[f"{obj.name}.retextured"]
    assert [m.name for m in obj.data.materials] == ["Old"] and signature(obj) == before
    assert signature(copy) == before and copy.data.materials[0].name != "Old"
    assert bpy.context.view_layer.objects.active == copy and obj.select_get() and copy.select_get()


def test_local_retexture_through_the_stand_in_pipeline(local):
    obj = make_object()
    before = signature(obj)
    assert bpy.ops.trellis.retexture(image=EXAMPLE_IMAGE, backend="local", seed=5, resolution=1024) == {"FINISHED"}
    assert signature(obj) == before and obj.data.materials[0].name != "Old"
    calls = [json.loads(line) for line in open(local)]
    run = next(c for c in calls if c["call"] == "texturing.run")
    triangles = sum(len(p.vertices) - 2 for p in obj.data.polygons)
    assert run["faces"] == triangles and run["resolution"] == 1024, "the pipeline got the object's mesh"
    assert next(c for c in calls if c["call"] == "from_pretrained")["config_file"] == "texturing_pipeline.json"


def test_backends_without_retexture_are_refused(scene):
    make_object()
    with pytest.raises(RuntimeError, match="Runware \\(cloud\\) cannot retexture"):
        bpy.ops.trellis.retexture(image=EXAMPLE_IMAGE, backend="runware")
