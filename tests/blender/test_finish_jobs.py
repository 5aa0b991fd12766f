"""Finishing wired into jobs: the scene's Finish settings, the operator's keywords, the background Blender
(finished there, appended here), the main-thread path of background runs, a failing step, cancel, QA in
the record and History, the asset library preference, presets. Counts are made here with bmesh."""
import json
import os
import time

import bpy
import pytest

from backend import glb, png, presets, schema
from conftest import EXAMPLE_IMAGE, PKG, mod
from servers import meshes
from servers.runware_server import RunwareServer
from test_background_import import FAST
from test_finish import recount


KEY = "rw-finish-secret-5e6f7a8b"


@pytest.fixture()
def defects(scene, tmp_path, monkeypatch):
    """The Runware test server answering every task with the defect GLB (test_finish): (server, design)."""
    monkeypatch.delenv("RUNWARE_API_KEY", raising=False)
    monkeypatch.delenv("TRELLIS_RUNWARE_URL", raising=False)
    path = str(tmp_path / "defects.glb")
    design = meshes.defect_glb(glb, png, path)
    prefs = bpy.context.preferences.addons[PKG].preferences
    bpy.context.preferences.system.use_online_access = True
    with open(path, "rb") as f, RunwareServer(api_key=KEY, glb=f.read()) as server:
        server.polls_to_finish = 0
        prefs.runware_api_key, prefs.runware_url, prefs.session_cap = KEY, server.url, 0.0
        yield server, design
    prefs.runware_api_key = prefs.runware_url = ""
    bpy.context.preferences.system.use_online_access = False


def active():
    return bpy.context.view_layer.objects.active


def record_of(obj):
    return mod("trellis_addon.record").Record.from_text(obj["trellis2"])


def generate(**keywords):
    keywords = dict(dict(image=EXAMPLE_IMAGE, backend="runware", seed=5, force_new=True), **keywords)
    assert bpy.ops.trellis.generate(**keywords) == {"FINISHED"}
    return mod("trellis_addon.queue").manager.jobs[-1]


def check_finished(obj, job, size=0.0):
    """Named, measured, standing at the cursor with its origin at the bottom centre, scale 1, marked."""
    counts = recount(obj)
    qa = record_of(obj).result_qa()
    for key in ("vertices", "triangles", "parts", "boundary_edges", "non_manifold_edges"):
        assert qa[key] == counts[key], key
    assert qa["size_m"] == pytest.approx(list(counts["hi"] - counts["lo"]), abs=1e-5)
    assert tuple(obj.scale) == (1, 1, 1)
    assert obj.location.length < 1e-4 * max(qa["size_m"]), "origin on the cursor"
    assert counts["lo"][2] == pytest.approx(0.0, abs=1e-4 * max(qa["size_m"])), "standing on the cursor"
    centre = (counts["lo"][:2] + counts["hi"][:2]) / 2
    assert abs(centre).max() < 1e-4 * max(qa["size_m"]), "bottom centre on the cursor"
    if size:
        assert max(counts["hi"] - counts["lo"]) == pytest.approx(size, rel=1e-5)
    mat = obj.data.materials[0]
    assert (obj.name, obj.data.name, mat.name) == ("mushroom",) * 3
    images = sorted(n.image.name for n in mat.node_tree.nodes if n.type == "TEX_IMAGE")
    assert images == ["mushroom_basecolor", "mushroom_metallic_roughness"]
    assert obj.asset_data is not None and obj.asset_data.catalog_id == mod("trellis_addon.finish").CATALOG_ID
    assert {"TRELLIS.2", "backend:runware", "seed:5"} <= {t.name for t in obj.asset_data.tags}
    assert obj.preview is not None and obj.preview.image_size[0] > 0
    with open(os.path.join(job.output_dir, "record.json"), encoding="utf-8") as f:
        stored = json.load(f)
    assert stored["qa"] == [qa] and stored["finish"] == job.finish
    return qa, counts


def check_defects_fixed(qa, counts, design, interior=False):
    """Welded (one vertex per corner position), the floater dropped, the inner shell only with interior."""
    total = design["outer"] + design["inner"] + design["floater"]
    kept = design["outer"] + (0 if interior else design["inner"])
    assert counts["triangles"] == kept and counts["parts"] == (1 if interior else 2)
    assert counts["boundary_edges"] == design["hole_edges"] and qa["watertight"] is False
    assert counts["vertices"] == counts["unique_positions"], "welded"
    assert qa["removed"]["dropped_parts"] == 1
    assert qa["removed"]["interior_faces"] == (design["inner"] if interior else 0)
    if not interior:  # (interior faces go after the weld)
        assert qa["removed"]["welded_vertices"] == 3 * (total - design["floater"]) - counts["vertices"]


def test_defaults_finish_the_result_on_the_main_thread_in_background_runs(defects):
    _, design = defects
    job = generate(target_size=1.5)
    obj = active()
    assert job.state == "done" and job.finish == schema.finish_defaults()
    qa, counts = check_finished(obj, job, size=1.5)
    check_defects_fixed(qa, counts, design)
    assert qa["texture_px"] == [64, 64] and qa["texel_density"] > 0


def test_remove_interior_takes_the_inner_shell(defects):
    _, design = defects
    job = generate(remove_interior=True)
    qa, counts = check_finished(active(), job)
    check_defects_fixed(qa, counts, design, interior=True)


def test_keywords_override_the_scene_lods_and_off_switches(defects, scene):
    scene.trellis2.origin, scene.trellis2.lod_levels = "CENTER", 1
    job = generate(origin="KEEP", mark_asset=False, lod_levels=2, lod_ratio=0.5)
    obj = active()
    qa = record_of(obj).result_qa()
    assert job.finish["origin"] == "KEEP" and job.finish["lod_levels"] == 2 and job.finish["cleanup"] is True
    assert obj.asset_data is None and (obj.location - bpy.context.scene.cursor.location).length > 0.01
    lods = bpy.data.collections["mushroom LODs"]
    assert lods.hide_viewport and lods.hide_render and lods.name in bpy.data.collections["TRELLIS"].children
    names = sorted(o.name for o in lods.objects)
    assert names == ["mushroom_LOD1", "mushroom_LOD2"]
    assert [bpy.data.objects[n].rotation_mode for n in [obj.name, *names]] == ["XYZ"] * 3, "as artists expect"
    triangles = [recount(bpy.data.objects[n])["triangles"] for n in names]
    assert qa["lod_triangles"] == triangles
    assert triangles[0] == pytest.approx(qa["triangles"] * 0.5, rel=0.1)
    assert triangles[1] == pytest.approx(triangles[0] * 0.5, rel=0.1)


def test_cleanup_off_keeps_every_split_vertex(defects):
    _, design = defects
    job = generate(cleanup=False)
    qa, counts = check_finished(active(), job)
    total = design["outer"] + design["inner"] + design["floater"]
    assert counts["triangles"] == total and counts["vertices"] == 3 * total
    assert qa["removed"] == {"welded_vertices": 0, "dropped_parts": 0, "interior_faces": 0}


def test_a_bad_finish_keyword_is_refused_with_its_range(scene):
    with pytest.raises(RuntimeError, match=r"bake_faces: 10 is out of range \(0 \(off\) or 1000 to 200 000\)"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, bake_faces=10, **FAST)
    with pytest.raises(TypeError, match="BOTTOM"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, origin="TOP", **FAST)


def test_a_failing_step_keeps_the_result_and_says_which(defects, monkeypatch):
    cleanup = mod("trellis_addon.finish.cleanup")

    def broken(*args, **kwargs):
        raise RuntimeError("weld exploded")
    monkeypatch.setattr(cleanup, "weld_and_drop", broken)
    job = generate()
    obj = active()
    assert job.state == "done" and "finishing failed at cleanup: weld exploded" in job.text
    assert record_of(obj).result_qa() == {"failed": "cleanup: weld exploded"}
    assert len(obj.data.polygons) == sum(defects[1][k] for k in ("outer", "inner", "floater")), "in the scene"


def test_the_background_blender_finishes_and_the_main_thread_appends(builder, defects, monkeypatch,
                                                                    capsys):
    texts = []
    task = mod("trellis_addon.queue.builder").Task
    original = task.deliver
    monkeypatch.setattr(task, "deliver", lambda self, msg: (texts.append(msg.get("text")), original(self, msg)))
    job = generate(lod_levels=1, target_size=2.0)
    obj = active()
    importer, finishing = mod("trellis_addon.importer"), mod("trellis_addon.finishing")
    key = finishing.specs(job)[0]["key"]
    assert os.path.isfile(importer.snapshot_path(job.result["files"][0], key)), "finished there"
    assert "Making LODs" in texts and "Cleaning up" in texts, texts
    assert "not used" not in capsys.readouterr().out, "the finished snapshot passes the snapshot check"
    check_finished(obj, job, size=2.0)
    lod = bpy.data.objects["mushroom_LOD1"]
    assert lod.users_collection[0].name == "mushroom LODs" and lod.get("trellis2") is None
    assert (lod.matrix_world.translation - obj.matrix_world.translation).length < 1e-5, "moved with the result"
    background = {"qa": record_of(obj).result_qa(), "vertices": len(obj.data.vertices)}
    # the same result finished on the main thread: the same numbers
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.context.scene.cursor.location = (0, 0, 0)
    builder.enabled = False
    bpy.context.scene.trellis2.lod_levels = 1  # History imports with the scene's finish settings
    entry = mod("trellis_addon.history").history.entries(mod("trellis_addon.prefs").jobs_root())[0]
    for path in [importer.snapshot_path(job.result["files"][0], key)]:
        os.remove(path)
    assert bpy.ops.trellis.history_import(entry=entry.id) == {"FINISHED"}
    here = active()
    main = {"qa": record_of(here).result_qa(), "vertices": len(here.data.vertices)}
    background["qa"].pop("preview"), main["qa"].pop("preview")
    assert main == background


def test_cancel_stops_the_finishing_in_the_background_and_keeps_the_result(builder, scene):
    queue, request = mod("trellis_addon.queue"), mod("trellis_addon.request")
    settings = request.resolve_settings(scene.trellis2.to_settings(), {"seed": 11, **{
        k: FAST[k] for k in ("resolution", "texture_size", "decimation_target")}})
    job = queue.manager.enqueue(request.prepare_job(image=EXAMPLE_IMAGE, backend="preview", settings=settings,
                                                    force_new=True, finish={"lod_levels": 4}))
    end = time.monotonic() + 120
    while getattr(builder.tasks.get(job.id), "kind", "") != "import" and not job.is_finished \
            and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.01)
    job.cancel()
    worker = builder.worker
    queue.manager.poll_all()
    key = mod("trellis_addon.finishing").specs(job)[0]["key"]
    glb = job.result["files"][0]
    while worker.busy and time.monotonic() < end:  # the worker answers the cancelled task
        time.sleep(0.05)
    assert job.state == "cancelled" and not worker.busy
    assert not os.path.exists(mod("trellis_addon.importer").snapshot_path(glb, key)), "stopped before finishing"
    assert os.path.isfile(glb), "the result stays in History"


def test_the_asset_library_preference_saves_each_result_and_registers_the_folder(defects, tmp_path):
    prefs = bpy.context.preferences.addons[PKG].preferences
    library = tmp_path / "assets"
    prefs.asset_library = str(library)
    try:
        job = generate(lod_levels=1)
    finally:
        prefs.asset_library = ""
    saved = library / "mushroom.blend"
    assert job.library_files == [str(saved)] and saved.is_file()
    assert (library / "blender_assets.cats.txt").is_file()
    with bpy.data.libraries.load(str(saved), assets_only=True) as (source, _):
        assert set(source.objects) == {"mushroom"}
    with bpy.data.libraries.load(str(saved)) as (source, _):
        assert {"mushroom", "mushroom_LOD1"} <= set(source.objects)
    paths = [os.path.realpath(bpy.path.abspath(lib.path))
             for lib in bpy.context.preferences.filepaths.asset_libraries]
    assert paths.count(os.path.realpath(library)) == 1


def test_the_asset_library_never_replaces_a_file_the_addon_did_not_write(defects, tmp_path):
    """The user's own tree.blend and catalogs stay byte for byte: the result named tree is saved as
    tree_2.blend; finishing the same result again (History answers it, other finish settings) replaces that
    file, its own, and no other; once the user has saved over it, the next one is tree_3.blend."""
    prefs = bpy.context.preferences.addons[PKG].preferences
    library = tmp_path / "assets"
    library.mkdir()
    mine = library / "tree.blend"
    mine.write_bytes(b"BLENDER-v405 the user's own tree " * 64)
    catalogs = library / "blender_assets.cats.txt"
    theirs = ["# The studio's catalogs", "VERSION 1", "",
              "7e1c9b2a-5d44-4c3e-9a61-0f2b8d3c4e5f:Props/Trees:Props-Trees",
              "1d2e3f40-aaaa-4bbb-8ccc-123456789abc:TRELLIS:TRELLIS"]
    catalogs.write_text("\n".join(theirs) + "\n")
    image = tmp_path / "tree.png"
    image.write_bytes(open(EXAMPLE_IMAGE, "rb").read())
    own = library / "tree_2.blend"

    def objects_in(path):
        with bpy.data.libraries.load(str(path)) as (source, _):
            return set(source.objects)

    prefs.asset_library = str(library)
    try:
        first = generate(image=str(image), lod_levels=1)
        assert first.library_files == [str(own)] and not first.from_cache
        assert mine.read_bytes() == b"BLENDER-v405 the user's own tree " * 64
        assert sorted(os.listdir(library)) == ["blender_assets.cats.txt", "tree.blend", "tree_2.blend"]
        assert catalogs.read_text().splitlines()[:len(theirs)] == theirs, "the user's catalogs are kept"
        again = generate(image=str(image), lod_levels=2, force_new=False)
        assert again.from_cache and again.library_files == [str(own)]
        assert "tree_LOD2" in objects_in(own), "the add-on's own file is replaced"
        assert sorted(os.listdir(library)) == ["blender_assets.cats.txt", "tree.blend", "tree_2.blend"]
        stamp = own.stat().st_mtime_ns + 10**9
        os.utime(own, ns=(stamp, stamp))  # the user saved over it
        saved = own.read_bytes()
        third = generate(image=str(image), lod_levels=3, force_new=False)
    finally:
        prefs.asset_library = ""
    assert third.library_files == [str(library / "tree_3.blend")] and own.read_bytes() == saved
    assert "tree_LOD3" in objects_in(library / "tree_3.blend")
    assert mine.read_bytes() == b"BLENDER-v405 the user's own tree " * 64
    lines = catalogs.read_text().splitlines()
    ours = f"{mod('trellis_addon.finish').CATALOG_ID}:TRELLIS:TRELLIS"
    assert lines[:len(theirs)] == theirs and lines.count(ours) == 1


def test_finish_settings_are_scene_properties_and_preset_fields(scene):
    for p in schema.FINISH_PARAMS:
        assert getattr(scene.trellis2, p.name) == pytest.approx(p.default), p.name
        assert p.name in presets.PRESET_SETTINGS
    assert scene.trellis2.to_finish() == schema.finish_defaults()


QA = {"triangles": 10, "vertices": 8, "parts": 1, "boundary_edges": 0, "non_manifold_edges": 0, "watertight": True,
      "size_m": [1.0, 0.5, 0.8], "texture_px": [1024, 1024], "texel_density": 700.0,
      "removed": {"welded_vertices": 3, "dropped_parts": 1, "interior_faces": 0}, "lod_triangles": [5, 2],
      "low_triangles": 4, "preview": "image"}


def test_the_record_keeps_qa_per_result_and_checks_what_it_reads(addon):
    record_module = mod("trellis_addon.record")
    Record = record_module.Record
    record = Record(seeds=[3, 4], qa=[QA, dict(QA, triangles=20)], finish={"origin": "KEEP"})
    second = Record.from_text(record.for_object(1))
    assert (second.seed, second.index, second.result_qa(), second.finish) == (4, 1, dict(QA, triangles=20),
                                                                              {"origin": "KEEP"})
    assert Record.from_json({"qa": {}}).qa == [], "a record from before qa was per result"
    assert Record.from_json({"qa": [{}, {"failed": "bake: no UVs"}]}).qa[1] == {"failed": "bake: no UVs"}
    assert Record().result_qa() == {}
    hostile = [dict(QA, triangles="lots"), dict(QA, triangles=True), dict(QA, triangles=-1), dict(QA, extra=1),
               dict(QA, size_m="x"), dict(QA, size_m=[1, 2, 3, 4]), dict(QA, watertight=1),
               dict(QA, preview="<b>"), dict(QA, lod_triangles=list(range(9))), dict(QA, removed={"x": 1}),
               dict(QA, texel_density=float("inf")), {"failed": 3}, {"failed": "x" * 2000}, {"vertices": 1}]
    for bad in [{"qa": [1]}, {"qa": "x"}, {"finish": []}, {"index": "0"}] + [{"qa": [q]} for q in hostile]:
        with pytest.raises(record_module.RecordError):
            Record.from_json(bad)
    finishing = mod("trellis_addon.finishing")
    rows = [text for text, _ in finishing.qa_rows(dict(QA, triangles=1, vertices=3, parts=2, watertight=False,
                                                                 boundary_edges=1, non_manifold_edges=2))]
    assert rows[:3] == ["1 triangle · 3 vertices", "2 parts · 1 open edge", "2 non-manifold edges"], rows
    assert "non-manifold" not in " ".join(text for text, _ in finishing.qa_rows(QA)), "shown only when there are any"
    assert finishing.qa_line(QA) == ("10 triangles, 1 part, watertight, 1 × 0.5 × 0.8 m, 700 texels/m, "
                                     "LODs 5/2, low-poly 4")
