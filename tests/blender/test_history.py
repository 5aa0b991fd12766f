"""History, cache, reproducibility and crash recovery, in real Blender."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, PKG, mod
from test_provider_operators import EL_KEY, SC_KEY, SC_SECRET, empiriolabs, online, scenario  # noqa: F401
from test_runware_operator import KEY, runware  # noqa: F401 (fixture)

FAST = dict(backend="preview", resolution=512, texture_size=1024, decimation_target=100000)


def entries():
    h = mod("trellis_addon.history")
    h.history.invalidate()
    return [e for e in h.history.entries(mod("trellis_addon.prefs").jobs_root()) if e.state != h.OTHER]


def drawn(entry):
    """The labels the History panel draws for an entry (its draw code against a recording layout)."""
    labels = []

    class Layout:
        def __getattr__(self, name):
            def call(*args, **kwargs):
                labels.append(kwargs.get("text"))
                return Layout()
            return call

        def __setattr__(self, name, value):
            pass
    mod("panels.history").draw_entry(Layout(), entry)
    return labels


def active_record():
    return json.loads(bpy.context.view_layer.objects.active["trellis2"])


def test_result_is_on_disk_before_the_import_and_survives_a_failed_import(scene, monkeypatch):
    importer = mod("trellis_addon.importer")
    seen = {}

    def failing_import(context, path, **_):
        folder = os.path.dirname(path)
        seen["record"] = os.path.isfile(os.path.join(folder, "record.json"))
        seen["result"] = os.path.isfile(os.path.join(folder, "result.json"))
        raise RuntimeError("simulated importer crash")
    monkeypatch.setattr(importer, "import_glb", failing_import)
    with pytest.raises(RuntimeError, match="Import failed: simulated importer crash"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=5, **FAST)
    assert seen == {"record": True, "result": True}, "persisted before the import started"
    monkeypatch.undo()
    [entry] = entries()
    assert entry.state == "done" and all(os.path.isfile(f) for f in entry.files)
    record = entry.record
    assert record["backend"] == "preview" and record["seeds"] == [5] and record["settings"]["resolution"] == 512
    assert len(record["image_hash"]) == 64 and len(record["cache_key"]) == 64 and record["addon_version"]
    assert os.path.isfile(os.path.join(entry.folder, "thumb.png"))
    assert bpy.ops.trellis.history_import(entry=entry.id) == {"FINISHED"}
    assert bpy.context.view_layer.objects.active.name == "mushroom"


def test_explicit_seed_is_answered_from_history_without_a_request(runware):  # noqa: F811
    def generate(**kw):
        return bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", **kw)
    assert generate(seed=21) == {"FINISHED"}
    assert runware.submits == 1
    first = active_record()
    assert generate(seed=21) == {"FINISHED"}
    assert runware.submits == 1, "no second request"
    cached = active_record()
    assert cached["from_cache"] is True and cached["cost"] == 0.0 and cached["seed"] == 21
    assert cached["files"] == first["files"]
    jobs = mod("trellis_addon.queue")
    assert "(from cache)" in jobs.manager.jobs[-1].text
    assert generate(seed=21, force_new=True) == {"FINISHED"}
    assert runware.submits == 2, "Force New bypasses the cache"
    assert generate(seed=22) == {"FINISHED"} and runware.submits == 3, "another seed is another request"
    generate(random_seed=True)
    generate(random_seed=True)
    assert runware.submits == 5, "random seeds never hit the cache"


def test_an_entry_deleted_behind_blenders_back_is_generated_again_not_a_failed_import(runware):  # noqa: F811
    """Another Blender or a file manager deleted the cached entry after this Blender scanned the history: the
    cache hit is dropped and the result generated again (it failed with "No such file" before)."""
    import shutil
    root = mod("trellis_addon.prefs").jobs_root()
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", seed=31) == {"FINISHED"}
    history = mod("trellis_addon.history").history
    (entry,) = history.entries(root)
    shutil.rmtree(entry.folder)
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", seed=31) == {"FINISHED"}
    assert runware.submits == 2 and active_record()["from_cache"] is False
    assert [e.folder for e in history.entries(root)] != [entry.folder] and len(history.entries(root)) == 1


def test_cache_hit_appends_the_saved_import_and_falls_back_to_the_glb(scene, monkeypatch):
    importer = mod("trellis_addon.importer")
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=11, **FAST)
    first = bpy.context.view_layer.objects.active
    faces, material = len(first.data.polygons), first.active_material.name
    [entry] = entries()
    snapshot = importer.snapshot_path(entry.files[0])
    assert os.path.isfile(snapshot), "the first import is saved beside the GLB"
    appended = []
    landing = mod("trellis_addon.landing")
    real_load = landing._load
    monkeypatch.setattr(landing, "_load", lambda path: appended.append(path) or real_load(path))
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=11, **FAST) == {"FINISHED"}
    hit = bpy.context.view_layer.objects.active
    assert appended == [snapshot] and active_record()["from_cache"] is True
    assert len(hit.data.polygons) == faces and hit.active_material.name == material
    images = [n.image for n in hit.active_material.node_tree.nodes if n.type == "TEX_IMAGE"]
    assert images and all(i.packed_file is not None and i.size[0] > 0 for i in images), \
        "textures travel inside the snapshot"
    assert not bpy.data.libraries, "appended, not linked"
    with open(snapshot, "wb") as f:
        f.write(b"BLENDER-not-really")
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=11, **FAST) == {"FINISHED"}
    assert len(appended) == 1 and len(bpy.context.view_layer.objects.active.data.polygons) == faces, \
        "an altered snapshot is never opened: the GLB is imported"
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=11, **FAST) == {"FINISHED"}
    assert appended == [snapshot, snapshot], "the snapshot written anew is signed and appended"


def test_cost_confirmation_is_skipped_for_an_answer_from_history(runware):  # noqa: F811
    generation = mod("trellis_addon.request")
    scene_settings = bpy.context.scene.trellis2.to_settings()
    request = dict(image=EXAMPLE_IMAGE, backend="runware",
                   settings=generation.resolve_settings(scene_settings, {"seed": 77}))
    assert not generation.answered_from_cache(generation.Request(**request))
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", seed=77)
    assert generation.answered_from_cache(generation.Request(**request))
    assert not generation.answered_from_cache(generation.Request(**request, force_new=True))
    randomized = generation.resolve_settings(scene_settings, {"random_seed": True})
    assert not generation.answered_from_cache(generation.Request(**dict(request, settings=randomized)))


def test_regenerate_comes_from_cache_and_load_settings_fills_the_panel(runware):  # noqa: F811
    s = bpy.context.scene.trellis2
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", seed=31, resolution=512,
                             shape_slat_override=True, shape_slat_steps=20, origin="CENTER", lod_levels=1)
    assert runware.submits == 1
    assert bpy.ops.trellis.regenerate() == {"FINISHED"}
    assert runware.submits == 1 and active_record()["from_cache"] is True
    assert active_record()["finish"]["origin"] == "CENTER", "finished as the result was"
    s.seed, s.resolution, s.shape_slat_override, s.random_seed = 0, "1536", False, True
    assert bpy.ops.trellis.load_settings() == {"FINISHED"}
    assert (s.seed, s.resolution, s.shape_slat_override, s.shape_slat_steps, s.backend) == (
        31, "512", True, 20, "runware")
    assert (s.origin, s.lod_levels) == ("CENTER", 1)


def test_variations_four_new_seeds_side_by_side(scene):
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=40, **FAST)
    original = bpy.context.view_layer.objects.active.name
    assert bpy.ops.trellis.variations(count=4) == {"FINISHED"}
    new = [o for o in bpy.data.collections["TRELLIS"].objects if o.name != original]
    assert len(new) == 4
    seeds = [json.loads(o["trellis2"])["seed"] for o in new]
    assert len(set(seeds)) == 4 and 40 not in seeds
    xs = sorted(round(o.location.x, 4) for o in new)
    assert len(set(xs)) == 4, "side by side"
    assert all(json.loads(o["trellis2"])["settings"]["resolution"] == 512 for o in new)


def test_prune_keeps_the_newest_within_the_cap(scene):
    for seed in (1, 2, 3):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=seed, **FAST)
    found = entries()
    assert [e.record["seeds"] for e in found] == [[3], [2], [1]], "newest first"
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.history_cap_gb = (found[0].size + found[1].size + 1000) / 1024 ** 3
    assert bpy.ops.trellis.history_prune() == {"FINISHED"}
    assert [e.record["seeds"] for e in entries()] == [[3], [2]]
    prefs.history_cap_gb = 20.0


def test_corrupt_entries_are_shown_broken_and_can_be_deleted(scene):
    for seed in (1, 2, 3):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=seed, **FAST)
    newest, middle, oldest = entries()
    with open(os.path.join(newest.folder, "record.json"), "r+") as f:
        f.truncate(40)
    os.remove(middle.files[0])
    states = {e.id: (e.state, e.problem) for e in entries()}
    assert states[newest.id][0] == "broken" and "unreadable" in states[newest.id][1]
    assert states[middle.id][0] == "broken" and "missing result_0.glb" in states[middle.id][1]
    assert states[oldest.id][0] == "done"

    labels = [text for entry in entries() for text in drawn(entry)]
    assert sum("broken" in (t or "") for t in labels) == 2
    with pytest.raises(RuntimeError):
        bpy.ops.trellis.history_import(entry=middle.id)
    assert bpy.ops.trellis.history_delete(entry=newest.id) == {"FINISHED"}
    assert bpy.ops.trellis.history_delete(entry=middle.id) == {"FINISHED"}
    assert [e.id for e in entries()] == [oldest.id]


def test_no_key_in_any_history_file(runware):  # noqa: F811
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", seed=3, number_results=2)
    mod("trellis_addon.queue").flush_records()
    root = mod("trellis_addon.prefs").jobs_root()
    checked = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert KEY.encode() not in f.read(), name
            checked += 1
    assert checked >= 6


def test_result_of_a_killed_blender_is_importable_on_the_next_start(scene, tmp_path):
    """Blender is killed (SIGKILL) right after the worker finished, before the import."""
    root = str(tmp_path / "results")
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(f"""
        import importlib, os, signal, time
        import bpy, addon_utils
        if {PKG!r} not in bpy.context.preferences.addons:
            addon_utils.enable({PKG!r}, default_set=True)
        bpy.context.preferences.addons[{PKG!r}].preferences.output_dir = {root!r}
        g = importlib.import_module({PKG!r} + ".trellis_addon.request")
        jobs = importlib.import_module({PKG!r} + ".trellis_addon.queue")
        settings = g.resolve_settings(bpy.context.scene.trellis2.to_settings(),
                                      dict(seed=77, resolution=512, texture_size=1024, decimation_target=100000))
        job = jobs.manager.enqueue(g.prepare_job(image={EXAMPLE_IMAGE!r}, backend="preview", settings=settings))
        while job.state != jobs.IMPORTING:
            jobs.manager.poll_all()
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    out = subprocess.run([sys.executable, str(script)] if not bpy.app.binary_path else
                         [bpy.app.binary_path, "-b", "--python", str(script)], capture_output=True, timeout=300)
    assert out.returncode == -signal.SIGKILL
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.output_dir = root
    [entry] = entries()
    assert entry.state == "ready" and entry.record["seeds"] == [77]
    assert bpy.ops.trellis.history_import(entry=entry.id) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "mushroom" and json.loads(obj["trellis2"])["seed"] == 77
    assert entries()[0].state == "done"


def test_remote_task_of_a_crashed_session_is_resumed_not_paid_twice(runware):  # noqa: F811
    """Blender dies while Runware works: the next start polls the same task and offers the result."""
    import time
    jobs, generation, resume = mod("trellis_addon.queue"), mod("trellis_addon.request"), mod("trellis_addon.resume")
    runware.never_finish = True
    settings = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 61})
    job = jobs.manager.enqueue(generation.prepare_job(image=EXAMPLE_IMAGE, backend="runware", settings=settings))
    end = time.monotonic() + 60
    while not job.remote and time.monotonic() < end:
        job.poll()
        time.sleep(0.02)
    jobs.flush_records()
    job.worker.kill()  # Blender gone: its worker and job vanish; job.json keeps the task id
    jobs.manager.jobs.remove(job)
    [entry] = entries()
    assert entry.state == "pending" and entry.record["remote"]["task_id"] in runware.tasks

    runware.never_finish = False
    [resumed] = resume.resume_pending()
    end = time.monotonic() + 60
    while not resumed.is_finished and time.monotonic() < end:
        resume._drive()
        time.sleep(0.05)
    assert resumed.state == "done", resumed.error
    assert runware.submits == 1, "the task was polled again, not submitted again"
    [entry] = entries()
    assert entry.state == "ready" and entry.record["seeds"] == [61]
    assert bpy.ops.trellis.history_import(entry=entry.id) == {"FINISHED"}
    assert json.loads(bpy.context.view_layer.objects.active["trellis2"])["seed"] == 61


def _crash_after_submit(backend, settings_overrides, submitted):
    """Start a job, wait until `submitted()` tasks are recorded, then lose Blender's side of it."""
    import time
    jobs, generation = mod("trellis_addon.queue"), mod("trellis_addon.request")
    settings = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(), settings_overrides)
    job = jobs.manager.enqueue(generation.prepare_job(image=EXAMPLE_IMAGE, backend=backend, settings=settings))
    end = time.monotonic() + 60
    while len(job.remote_tasks) < submitted and time.monotonic() < end:
        job.poll()
        time.sleep(0.02)
    jobs.flush_records()
    job.worker.kill()
    jobs.manager.jobs.remove(job)
    mod("trellis_addon.queue").manager.unload()


def _resume_at_start():
    """What the next Blender start does: scan on the file thread, then resume; drive until done."""
    import time
    resume = mod("trellis_addon.resume")
    end = time.monotonic() + 60
    while resume.scan_then_resume() is not None and time.monotonic() < end:
        time.sleep(0.02)
    resumed = list(resume._resumed)
    while any(not j.is_finished for j in resumed) and time.monotonic() < end:
        resume._drive()
        time.sleep(0.05)
    return resumed


@pytest.mark.parametrize("provider", ["empiriolabs", "scenario"])
def test_hosted_jobs_of_a_crashed_session_are_resumed_not_paid_twice(provider, request):
    server = request.getfixturevalue(provider)
    server.never_finish = True
    _crash_after_submit(provider, {"seed": 90, "number_results": 2}, submitted=2)
    [entry] = entries()
    assert entry.state == "pending" and len(entry.record["remote_tasks"]) == 2
    assert len(server.jobs) == 2
    server.never_finish = False
    [resumed] = _resume_at_start()
    assert resumed.state == "done", resumed.error
    assert len(server.jobs) == 2, "the jobs were polled again, not submitted again"
    [entry] = entries()
    assert entry.state == "ready" and sorted(entry.record["seeds"]) == [90, 91] and len(entry.files) == 2
    assert bpy.ops.trellis.history_import(entry=entry.id) == {"FINISHED"}
    assert len(bpy.data.collections["TRELLIS"].objects) == 2
    mod("trellis_addon.queue").flush_records()  # job.json is rewritten on the file thread
    secrets = [s.encode() for s in (EL_KEY, SC_KEY, SC_SECRET)]
    for name in os.listdir(entry.folder):
        with open(os.path.join(entry.folder, name), "rb") as f:
            data = f.read()
        assert not any(secret in data for secret in secrets), f"a key in {name}"
