"""Results imported by a background Blender: the job waits in BUILDING while blend_worker imports its GLBs
and saves their .blend snapshots; the main thread only appends and places them. The result lands exactly
as a main-thread import does; where no background Blender starts, the import falls back to the main
thread and says so; a background Blender that dies fails its one job with its log, and the next works."""
import hashlib
import os
import signal
import time

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod

FAST = dict(backend="preview", resolution=512, texture_size=1024, decimation_target=100000, force_new=True)


def landed():
    """What a result looks like in the scene: names, counts, materials, images, record, placement."""
    obj = bpy.context.view_layer.objects.active
    material = obj.active_material
    images = sorted((n.image.size[:], n.image.colorspace_settings.name, n.image.users,
                     hashlib.sha256(n.image.packed_file.data).hexdigest() if n.image.packed_file else "")
                    for n in material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image)
    record = mod("trellis_addon.record").Record.from_text(obj["trellis2"])
    return {"name": obj.name, "collection": obj.users_collection[0].name, "vertices": len(obj.data.vertices),
            "faces": len(obj.data.polygons), "images": images, "seed": record.seed, "backend": record.backend,
            "bottom": round(min((obj.matrix_world @ v.co).z for v in obj.data.vertices), 4),
            "selected": obj.select_get()}


def until(job, state: str, seconds: float = 120.0) -> None:
    """Poll the queue until the job reaches state or ends (or the time is up)."""
    queue = mod("trellis_addon.queue")
    end = time.monotonic() + seconds
    while job.state != state and not job.is_finished and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.02)


def run_job(seed):
    states = []
    queue = mod("trellis_addon.queue")
    original = queue.Job.poll

    def watch(job):
        changed = original(job)
        states.append(job.state)
        return changed
    queue.Job.poll = watch
    try:
        assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=seed, **FAST) == {"FINISHED"}
    finally:
        queue.Job.poll = original
    return queue.manager.jobs[-1], states


def test_the_background_blender_imports_and_the_result_lands_the_same(builder):
    job, _ = run_job(7)
    assert builder.worker is not None and builder.worker.alive, "a background Blender did the import"
    snapshot = mod("trellis_addon.importer").snapshot_path(job.result["files"][0])
    assert os.path.isfile(snapshot)
    with open(builder.worker.log_path, encoding="utf-8", errors="replace") as f:
        assert f"task {job.id}-import (import) done" in f.read()
    background = landed()
    bpy.ops.wm.read_homefile(use_empty=True)
    builder.enabled = False
    run_job(7)
    assert landed() == background


def test_appended_as_the_modal_operator_does_the_result_lands_the_same(builder, monkeypatch):
    """The UI's modal operator lands a result in ticks ahead of the one that places it (results.land_tick,
    landing.py): the same result, the same images, nothing left over."""
    queue, request, results = mod("trellis_addon.queue"), mod("trellis_addon.request"), mod("trellis_addon.results")
    viewports = mod("trellis_addon.landing.viewports")
    monkeypatch.setattr(viewports, "any_open", lambda: True)  # as in a window, in Material Preview
    monkeypatch.setattr(viewports, "kinds", lambda: {"all"})
    scene = bpy.context.scene.trellis2
    settings = request.resolve_settings(scene.to_settings(), {"seed": 14, "resolution": 512, "texture_size": 1024,
                                                              "decimation_target": 100000})
    job = queue.manager.enqueue(request.prepare_job(image=EXAMPLE_IMAGE, backend="preview", settings=settings,
                                                    force_new=True, finish=scene.to_finish()))
    until(job, "importing")
    assert job.state == "importing", f"{job.state}: {job.error}"
    assert set(job.built["verified"]) == set(job.built["snapshots"]), "verified in a thread before placing"
    steps = 0
    while results.land_tick(job):
        steps += 1
        assert steps < 20
    assert steps >= 4, "appended, its images read, its normals, a tick each"
    assert not [o for o in bpy.data.objects if o.users_scene], "nothing in the scene yet"
    assert len(bpy.data.images) == 2 and all(i.has_data for i in bpy.data.images)
    uids = sorted(i.session_uid for i in bpy.data.images)
    results.import_job(bpy.context, job)
    assert job.state == "done" and sorted(i.session_uid for i in bpy.data.images) == uids, "no image but those two"
    bpy.context.view_layer.update()
    ahead_landed = landed()
    bpy.ops.wm.read_homefile(use_empty=True)
    builder.enabled = False
    run_job(14)
    assert landed() == ahead_landed


def test_without_a_background_blender_the_main_thread_imports_and_says_so(builder, monkeypatch):
    queue_builder = mod("trellis_addon.queue.builder")
    spec = queue_builder.blender_spec()
    monkeypatch.setattr(queue_builder, "blender_spec", lambda number=1: spec.__class__(
        key=("missing",), command=("/nonexistent/blender",), log_path=spec.log_path))
    job, _ = run_job(8)
    assert job.state == "done" and builder.unavailable and "nonexistent" in builder.unavailable
    assert landed()["faces"] > 1000


def test_a_killed_background_blender_fails_one_job_and_the_next_works(builder):
    queue, request = mod("trellis_addon.queue"), mod("trellis_addon.request")
    settings = request.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 9})
    job = queue.manager.enqueue(request.prepare_job(image=EXAMPLE_IMAGE, backend="preview", settings=settings,
                                                    force_new=True))
    until(job, "building", 60)
    end = time.monotonic() + 60
    while job.id not in builder.tasks and time.monotonic() < end:
        queue.manager.poll_all()
    os.kill(builder.worker.proc.pid, signal.SIGKILL)
    while not job.is_finished and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.02)
    assert job.state == "failed" and "background Blender stopped unexpectedly (exit code -9, memory bound" in job.error
    next_job, _ = run_job(10)
    assert next_job.state == "done" and builder.worker.alive


def test_a_pool_of_two_background_blenders_shares_the_tasks(builder):
    """A batch's pool (size 2): a task goes to an idle Blender, a second starts while the first is busy (a log of
    its own); each result lands as one Blender alone lands it; the pool never grows past its size."""
    queue, request = mod("trellis_addon.queue"), mod("trellis_addon.request")
    builder.size = 2
    try:
        jobs = []
        for seed in (11, 12, 13):
            scene = bpy.context.scene.trellis2
            fast = {k: v for k, v in FAST.items() if k not in ("backend", "force_new")}
            settings = request.resolve_settings(scene.to_settings(), dict(fast, seed=seed))
            jobs.append(queue.manager.enqueue(request.prepare_job(image=EXAMPLE_IMAGE, backend="preview",
                                                                  settings=settings, force_new=True,
                                                                  finish=scene.to_finish())))
        assert [builder.tasks[j.id].kind for j in jobs] == ["prepare"] * 3
        first, second, third = (builder.tasks[j.id].worker for j in jobs)
        assert first is not second and third in (first, second) and len(builder.workers) == 2
        assert {first.log_path, second.log_path} == {os.path.join(os.path.dirname(first.log_path), n)
                                                      for n in ("blender-worker.log", "blender-worker-2.log")}
        end, most = time.monotonic() + 120, 0
        while not all(j.state == "importing" or j.is_finished for j in jobs) and time.monotonic() < end:
            queue.manager.poll_all()
            most = max(most, len(builder.workers))
            time.sleep(0.02)
        assert most == 2
        for job in jobs:
            assert job.state == "importing", f"{job.state}: {job.error}"
            mod("trellis_addon.results").import_job(bpy.context, job)
            assert job.state == "done" and len(job.objects) == 1
        logs = []
        for worker in (first, second):
            with open(worker.log_path, encoding="utf-8", errors="replace") as f:
                logs.append(f.read())
        for job in jobs:
            assert sum(f"task {job.id}-prepare (prepare) done" in text for text in logs) == 1
            assert sum(f"task {job.id}-import (import) done" in text for text in logs) == 1
        assert f"task {jobs[1].id}-prepare (prepare) done" in logs[1]
        bpy.context.view_layer.update()  # matrix_world, as an operator's end updates it
        pooled = dict(landed(), name=None)  # the third of three results: mushroom.002
        bpy.ops.wm.read_homefile(use_empty=True)
        builder.size = 1
        run_job(13)
        assert dict(landed(), name=None) == pooled
    finally:
        builder.size = 1


def test_the_background_blender_refuses_a_glb_that_names_an_outside_file(builder, tmp_path):
    from test_trust_addon import outside_glb
    queue = mod("trellis_addon.queue")
    folder = tmp_path / "entry"
    folder.mkdir()
    path = folder / "result_0.glb"
    outside_glb(path, tmp_path / "secret.bin")
    job = queue.manager.add(queue.Job(name="evil", backend="preview", settings={}, output_dir=str(folder),
                                      rgba_path="", result={"files": [str(path)], "seeds": [1]},
                                      state=queue.IMPORTING))
    assert job.state == "building", "imported in the background"
    end = time.monotonic() + 60
    while not job.is_finished and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.02)
    assert job.state == "failed" and "result_0.glb" in job.error and job.error_code.value == "bad_output"
    assert not os.path.exists(mod("trellis_addon.importer").snapshot_path(str(path))), "nothing was imported"


def test_a_background_blenders_answer_is_checked_before_use(scene, tmp_path):
    """What the background Blender answers is outside input too: snapshot and library paths must be .blend files
    beside the job's GLBs or in its asset library folder, each measured quality must be one it writes; the rest
    is dropped (nothing elsewhere is ever registered, listed or appended)."""
    queue = mod("trellis_addon.queue")
    checked_answer = mod("trellis_addon.queue.builder").checked_answer
    folder, library, elsewhere = (tmp_path / n for n in ("entry", "library", "elsewhere"))
    for f in (folder, library, elsewhere):
        f.mkdir()
    glb_path = folder / "result_0.glb"
    glb_path.write_bytes(b"glTF")
    for path in (folder / "result_0.blender-5.0.blend", library / "apple.blend", elsewhere / "x.blend",
                 folder / "notes.txt"):
        path.write_bytes(b"BLENDER")
    (library / "link.blend").symlink_to(elsewhere / "x.blend")
    job = queue.Job(name="apple", backend="preview", settings={}, output_dir=str(folder), rgba_path="",
                    result={"files": [str(glb_path)], "seeds": [1]}, asset_library=str(library))
    good_qa = {"triangles": 12, "vertices": 8, "parts": 1, "boundary_edges": 0, "non_manifold_edges": 0,
               "watertight": True, "size_m": [1.0, 1.0, 1.0], "texture_px": [1024, 1024], "texel_density": 512.0,
               "removed": {"welded_vertices": 0, "dropped_parts": 0, "interior_faces": 0}, "preview": "rendered"}
    answer = checked_answer(job, {
        "snapshots": [str(folder / "result_0.blender-5.0.blend"), str(elsewhere / "x.blend"), 7],
        "qa": [good_qa, {"triangles": True}],
        "libraries": [str(library / "apple.blend"), "/etc/passwd", str(elsewhere / "x.blend"),
                      str(library / "link.blend"), str(folder / "notes.txt"), None]})
    assert answer == {"snapshots": [str(folder / "result_0.blender-5.0.blend")], "qa": [good_qa],
                      "libraries": [str(library / "apple.blend")]}
    assert checked_answer(job, {"snapshots": "x", "qa": {"a": 1}, "libraries": 3}) == {
        "snapshots": [], "qa": [], "libraries": []}
    assert checked_answer(job, {"qa": ["not a dict"]})["qa"] == [None]
    job.asset_library = ""
    assert checked_answer(job, {"libraries": [str(library / "apple.blend")]})["libraries"] == []


def test_a_task_the_background_blender_cannot_parse_is_refused(addon, tmp_path):
    """A task is parsed as its typed message (backend/blender_protocol.py) before any work: one that does not
    parse, or names GLB files that are not there, is answered BAD_INPUT with the refusal of the field at fault."""
    worker, protocol = mod("trellis_addon.blend_worker"), mod("backend.protocol")
    blender_protocol = mod("backend.blender_protocol")
    glb_path, blend = str(tmp_path / "result_0.glb"), str(tmp_path / "input_mesh.blend")
    good = {"type": "job", "id": "t", "kind": "import", "files": [glb_path], "key_file": str(tmp_path / "key")}
    assert worker.parse_task(good) == blender_protocol.ImportTask("t", [glb_path], str(tmp_path / "key"))
    cases = [
        (dict(good, files=glb_path), "import task needs existing GLB files"),
        (dict(good, key_file="key"), "import task: the signing key: no key file named"),
        (dict(good, finish=[{"name": "apple"}]), "import task: one finish spec per file, or none"),
        (dict(good, retexture=str(tmp_path / "elsewhere" / "input_mesh.blend")),
         "retexture task needs the job's mesh .blend"),
        (dict(good, kind="export"), "unknown task 'export'"),
        (dict(good, id=3), "unknown task 'import'"),
        ({"type": "job", "id": "p", "kind": "prepare"}, "prepare task needs an image or a mesh"),
        ({"type": "job", "id": "p", "kind": "prepare", "image": "a.png", "rgba": "input.png", "max_megapixels": 4},
         "prepare task needs an image, a job folder and a limit"),
        ({"type": "job", "id": "p", "kind": "prepare", "mesh_blend": blend, "mesh_glb": "/elsewhere/mesh.glb"},
         "prepare task needs the mesh's .blend and its GLB path"),
    ]
    for msg, refusal in cases:
        with pytest.raises(protocol.JobError) as caught:
            worker.parse_task(msg)
        assert (caught.value.code, str(caught.value)) == (protocol.ErrorCode.BAD_INPUT, refusal), msg
    with pytest.raises(protocol.JobError) as caught:  # parses, but its GLB is not there
        worker.import_task(None, worker.parse_task(good))
    assert str(caught.value) == "import task needs existing GLB files"
