"""trellis.retexture in real Blender: through the local stand-in pipeline and the Scenario test server,
the object keeps its vertex count and world transform and gets the new material, in one undo step."""
import json
import os
import sys
import time

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


def counts(path):
    """(vertices, faces, world bounds) of a GLB as Blender's importer reads it (in an empty file)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(path))
    (obj,) = [o for o in bpy.data.objects if o.type == "MESH"]
    points = [obj.matrix_world @ v.co for v in obj.data.vertices]
    bounds = tuple(round(f(p[i] for p in points), 4) for f in (min, max) for i in range(3))
    return obj.name, len(obj.data.vertices), len(obj.data.polygons), bounds


def transfers_here(monkeypatch) -> list:
    """The main thread's own UV transfers, counted."""
    meshfile, calls = mod("trellis_addon.meshfile"), []
    transfer = meshfile.transfer
    monkeypatch.setattr(meshfile, "transfer", lambda *args: (calls.append(args), transfer(*args)))
    return calls


def test_in_the_ui_a_background_blender_exports_the_mesh_and_imports_the_result(scenario, builder, tmp_path,
                                                                                monkeypatch):
    """Both ends of a retexture job off the main thread: the object (its modifiers applied) goes to the
    background Blender as a .blend and comes back as the same GLB the main thread would export; the result is
    imported, fitted and transferred there, and its UV values copied here. The object gets the same material
    and a UV map as without."""
    obj = make_object()
    obj.modifiers.new("Subdivision", "SUBSURF").levels = 1
    before = signature(obj)
    here_calls = transfers_here(monkeypatch)
    assert bpy.ops.trellis.retexture(image=EXAMPLE_IMAGE, backend="scenario", seed=3, resolution=512) == {"FINISHED"}
    assert here_calls == [], "the UV values came from the background Blender's transfer"
    job = mod("trellis_addon.queue").manager.jobs[-1]
    assert job.state == "done" and job.mesh_source and os.path.isfile(job.mesh_path)
    transferred = mod("trellis_addon.importer").snapshot_path(job.result["files"][0], "retexture")
    assert os.path.isfile(transferred), "fitted and transferred in the background Blender"
    mod("trellis_addon.queue").flush_records()
    assert not os.path.exists(job.mesh_source), "the .blend goes once applied: the GLB is the job's input"
    worker = builder.worker
    with open(worker.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert f"task {job.id}-prepare (prepare) done" in log and f"task {job.id}-import (import) done" in log
    builder.stop()
    assert worker.proc.wait(30) == 0, "it exits cleanly after a glTF export (the bpy 4.2 module crashed there)"
    assert signature(obj) == before and obj.data.uv_layers.active.name == "TRELLIS_UV"
    uvs = np.zeros(len(obj.data.loops) * 2)
    obj.data.uv_layers.active.data.foreach_get("uv", uvs)
    assert {o.name for o in bpy.data.objects} == {obj.name}, "the appended result is gone"
    here = tmp_path / "here.glb"
    mod("trellis_addon.meshfile").export_mesh(bpy.context, obj, str(here))
    material, faces, name = obj.data.materials[0].name, len(obj.data.polygons), obj.name
    sent, exported = counts(job.mesh_path), counts(here)
    assert sent == exported and sent[0] == name and sent[2] >= 4 * faces, "modifiers applied, named as the object"

    bpy.ops.wm.read_homefile(use_empty=True)
    builder.enabled = False
    again = make_object()
    again.modifiers.new("Subdivision", "SUBSURF").levels = 1
    assert bpy.ops.trellis.retexture(image=EXAMPLE_IMAGE, backend="scenario", seed=3, resolution=512) == {"FINISHED"}
    assert not mod("trellis_addon.queue").manager.jobs[-1].mesh_source, "exported on the main thread"
    main_uvs = np.zeros(len(again.data.loops) * 2)
    again.data.uv_layers.active.data.foreach_get("uv", main_uvs)
    # the same material and UVs from the same result (which corner of a tie gets which UV varies from run to run
    # in bpy 4.2, on the main thread alone as well)
    assert again.data.materials[0].name == material and main_uvs.shape == uvs.shape
    assert np.ptp(uvs) > 0.1 and np.ptp(main_uvs) > 0.1


def test_where_no_background_blender_starts_the_mesh_is_exported_here(scenario, builder, monkeypatch):
    queue_builder = mod("trellis_addon.queue.builder")
    spec = queue_builder.blender_spec()
    monkeypatch.setattr(queue_builder, "blender_spec", lambda number=1: spec.__class__(
        key=("missing",), command=("/nonexistent/blender",), log_path=spec.log_path))
    obj = make_object()
    before = signature(obj)
    assert bpy.ops.trellis.retexture(image=EXAMPLE_IMAGE, backend="scenario", seed=3) == {"FINISHED"}
    job = mod("trellis_addon.queue").manager.jobs[-1]
    assert builder.unavailable and not job.mesh_source and os.path.isfile(job.mesh_path)
    assert signature(obj) == before and obj.data.materials[0].name != "Old"


def test_a_mesh_edited_while_the_job_ran_gets_the_transfer_here(scenario, builder, monkeypatch):
    """The background Blender transferred onto the mesh as it was; a mesh whose faces changed meanwhile gets
    the (already fitted) result transferred on the main thread instead."""
    import bmesh
    queue, request, retexture = (mod(f"trellis_addon.{m}") for m in ("queue", "request", "retexture"))
    obj = make_object()
    scene = bpy.context.scene.trellis2
    settings = request.resolve_settings(scene.to_settings(), {"seed": 3, "resolution": 512})
    checked = request.Request(image=EXAMPLE_IMAGE, backend="scenario", settings=settings, mode="retexture")
    job = queue.manager.enqueue(retexture.prepare(bpy.context, obj, checked))
    assert job.state == "preparing" and job.mesh_source
    end = time.monotonic() + 120
    while job.state != "importing" and not job.is_finished and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.02)
    assert job.state == "importing", f"{job.state}: {job.error}"
    mesh = bmesh.new()
    mesh.from_mesh(obj.data)
    bmesh.ops.delete(mesh, geom=mesh.faces[:3], context="FACES_ONLY")
    mesh.to_mesh(obj.data)
    mesh.free()
    faces = len(obj.data.polygons)
    here_calls = transfers_here(monkeypatch)
    target = retexture.apply_result(bpy.context, job, obj)
    assert len(here_calls) == 1
    assert target == obj and len(obj.data.polygons) == faces and obj.data.uv_layers.active.name == "TRELLIS_UV"
    uvs = np.zeros(len(obj.data.loops) * 2)
    obj.data.uv_layers.active.data.foreach_get("uv", uvs)
    assert np.ptp(uvs) > 0.1 and obj.data.materials[0].name != "Old"
    assert {o.name for o in bpy.data.objects} == {obj.name}


def test_the_transferred_uvs_and_material_are_copied_as_they_are(scene):
    """copy_transferred (the main thread's part of a retexture's end): the done copy's UV values exactly, the
    UV map active for render, the source's material the only one and every face on it."""
    meshfile = mod("trellis_addon.meshfile")
    target = make_object()
    target.data.materials.append(bpy.data.materials.new("Second"))
    target.data.polygons.foreach_set("material_index", np.arange(len(target.data.polygons), dtype=np.int32) % 2)
    done = target.copy()
    done.data = target.data.copy()
    values = np.random.default_rng(7).random(len(done.data.loops) * 2).astype(np.float32)
    done.data.uv_layers.new(name=meshfile.UV_NAME).data.foreach_set("uv", values)
    source = bpy.data.objects.new("result", bpy.data.meshes.new("result"))
    source.data.materials.append(bpy.data.materials.new("Result"))
    for _ in range(2):  # a second retexture overwrites the first one's UV map
        assert meshfile.copy_transferred(done, source, target)
        got = np.empty(len(values), np.float32)
        target.data.uv_layers[meshfile.UV_NAME].data.foreach_get("uv", got)
        assert np.array_equal(got, values)
        assert target.data.uv_layers.active.name == meshfile.UV_NAME and target.data.uv_layers.active.active_render
        assert [m.name for m in target.data.materials] == ["Result"]
        assert [p.material_index for p in target.data.polygons] == [0] * len(target.data.polygons)
        values = values[::-1].copy()
        done.data.uv_layers[meshfile.UV_NAME].data.foreach_set("uv", values)
