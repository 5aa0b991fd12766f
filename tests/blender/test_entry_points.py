"""Right-click menus, files dropped on the 3D View, and the job queue, in real Blender."""
import json
import math
import shutil

import bpy
import pytest
from mathutils import Vector

from conftest import EXAMPLE_IMAGE, mod

FAST = dict(resolution="512", texture_size="1024", decimation_target=100000)


@pytest.fixture(autouse=True)
def no_jobs_left(addon):
    yield
    mod("trellis_addon.queue").manager.cancel_all()


@pytest.fixture()
def fast_scene(scene):
    s = scene.trellis2
    for name, value in FAST.items():
        setattr(s, name, value)
    s.backend = "preview"
    return scene


def area_of(kind: str):
    """An area of the current screen turned into `kind` (background Blender has one window)."""
    screen = bpy.context.window.screen
    area = next((a for a in screen.areas if a.type == kind), None)
    if area is None:
        area = next(a for a in screen.areas if a.type not in ("VIEW_3D",))
        area.type = kind
    return area


def override(kind: str, **members):
    area = area_of(kind)
    region = next(r for r in area.regions if r.type == "WINDOW")
    return bpy.context.temp_override(window=bpy.context.window, area=area, region=region,
                                     space_data=area.spaces.active, **members)


def world_bounds(objects):
    points = [o.matrix_world @ Vector(c) for o in objects if o.type == "MESH" for c in o.bound_box]
    return Vector(map(min, *points)), Vector(map(max, *points))


def test_menu_entries_are_registered_in_every_place(addon):
    menus = mod("panels.menus")
    for name in ("IMAGE_MT_image", "IMAGE_MT_uvs_context_menu", "VIEW3D_MT_object_context_menu",
                 "OUTLINER_MT_context_menu"):
        assert menus.draw_entry in getattr(bpy.types, name).draw._draw_funcs, name


def test_image_editor_image_generates_at_the_cursor(fast_scene):
    image = bpy.data.images.load(EXAMPLE_IMAGE)
    area = area_of("IMAGE_EDITOR")
    area.spaces.active.image = image
    fast_scene.cursor.location = (0, 0, 0)
    with override("IMAGE_EDITOR"):
        assert bpy.ops.trellis.generate_from_image.poll()
        assert bpy.ops.trellis.generate_from_image() == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "mushroom" and json.loads(obj["trellis2"])["image"] == EXAMPLE_IMAGE
    lo, _ = world_bounds([obj])
    assert lo.z == pytest.approx(0.0, abs=1e-4)


def test_render_result_is_not_offered(fast_scene):
    area = area_of("IMAGE_EDITOR")
    area.spaces.active.image = None
    with override("IMAGE_EDITOR"):
        assert not bpy.ops.trellis.generate_from_image.poll()


def test_image_empty_result_is_placed_beside_it(fast_scene):
    image = bpy.data.images.load(EXAMPLE_IMAGE)
    empty = bpy.data.objects.new("Reference", None)
    empty.empty_display_type = "IMAGE"
    empty.data = image
    empty.empty_display_size = 2.0
    empty.location = (5.0, 3.0, 1.0)
    empty.rotation_euler = (math.radians(90), 0, 0)  # standing up, as Add ▸ Image ▸ Reference in front view
    fast_scene.collection.objects.link(empty)
    bpy.context.view_layer.update()
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    empty.select_set(True)
    bpy.context.view_layer.objects.active = empty
    with override("VIEW_3D", active_object=empty, selected_objects=[empty]):
        assert bpy.ops.trellis.generate_from_image.poll()
        assert bpy.ops.trellis.generate_from_image() == {"FINISHED"}
    obj = bpy.data.objects["mushroom"]
    lo, hi = world_bounds([obj])
    # the picture spans x 4..6 and z 0..2 (2 m square image, centred, upright)
    assert lo.x > 6.0 and lo.x < 6.0 + 0.6, "just right of the picture"
    assert lo.z == pytest.approx(0.0, abs=1e-3), "standing on the picture's bottom edge"
    assert (lo.y + hi.y) / 2 == pytest.approx(3.0, abs=1e-3)
    record = json.loads(obj["trellis2"])
    assert record["image"] == EXAMPLE_IMAGE


def test_mesh_selection_offers_nothing(fast_scene):
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    with override("VIEW_3D", active_object=cube, selected_objects=[cube]):
        assert not bpy.ops.trellis.generate_from_image.poll()


def test_outliner_selected_images_one_job_each(fast_scene, tmp_path):
    second = tmp_path / "second.png"
    shutil.copy(EXAMPLE_IMAGE, second)
    images = [bpy.data.images.load(EXAMPLE_IMAGE), bpy.data.images.load(str(second))]
    with override("OUTLINER", selected_ids=images):
        assert bpy.ops.trellis.generate_from_image() == {"FINISHED"}
    names = sorted(o.name for o in bpy.data.collections["TRELLIS"].objects)
    assert names == ["mushroom", "second"]


def test_file_handler_accepts_images_on_the_3d_view_only(fast_scene):
    handler = bpy.types.TRELLIS_FH_images
    assert handler.bl_import_operator == "trellis.generate_from_files"
    for ext in ("png", "jpg", "jpeg", "webp", "bmp", "tif", "exr"):
        assert f".{ext}" in handler.bl_file_extensions.split(";")
    with override("VIEW_3D"):
        assert handler.poll_drop(bpy.context)
    with override("OUTLINER"):
        assert not handler.poll_drop(bpy.context)


def test_dropped_files_one_job_each_and_bad_types_skipped(fast_scene, tmp_path):
    for name in ("one.png", "two.png"):
        shutil.copy(EXAMPLE_IMAGE, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    files = [{"name": n} for n in ("one.png", "notes.txt", "two.png")]
    with override("VIEW_3D"):
        result = bpy.ops.trellis.generate_from_files(directory=str(tmp_path), files=files)
    assert result == {"FINISHED"}
    assert sorted(o.name for o in bpy.data.collections["TRELLIS"].objects) == ["one", "two"]


def test_blender_offers_us_among_the_handlers_for_a_dropped_png(fast_scene):
    """An OS drop runs wm.drop_import_file, which lists every FileHandler whose extensions match and
    whose poll_drop passes (a menu when several do, e.g. Blender 5's image empty handler)."""
    with override("VIEW_3D"):
        offered = [name for name in dir(bpy.types) if "_FH_" in name
                   and ".png" in getattr(bpy.types, name).bl_file_extensions.split(";")
                   and getattr(bpy.types, name).poll_drop(bpy.context)]
    assert "TRELLIS_FH_images" in offered


# --- queue ---------------------------------------------------------------------------------------

def queued_jobs(n, tmp_path):
    generation = mod("trellis_addon.request")
    settings = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 1})
    out = []
    for i in range(n):
        path = tmp_path / f"q{i}.png"
        shutil.copy(EXAMPLE_IMAGE, path)
        job = generation.prepare_job(image=str(path), backend="preview", settings=settings)
        out.append(mod("trellis_addon.queue").manager.add(job))
    return out


def wait_all(jobs_list, cap=2, timeout=120):
    """Run the queue until every job finished its worker; the most jobs (and local jobs) seen running."""
    import time
    jobs = mod("trellis_addon.queue")
    end = time.monotonic() + timeout
    most = most_local = 0
    while time.monotonic() < end and not all(j.state == jobs.IMPORTING or j.is_finished for j in jobs_list):
        jobs.manager.poll_all(cap)
        running = jobs.manager.running()
        most = max(most, len(running))
        most_local = max(most_local, sum(j.on_gpu for j in running))
        time.sleep(0.02)
    return most, most_local


def test_queue_runs_at_most_the_cap_and_in_order(fast_scene, tmp_path):
    jobs = mod("trellis_addon.queue")
    q = queued_jobs(4, tmp_path)
    assert all(j.state == jobs.QUEUED for j in q) and all(j.worker is None for j in q)
    started = jobs.manager.pump(2)
    assert started == q[:2] and q[2].state == q[3].state == jobs.QUEUED
    q[3].cancel()  # a queued job is cancelled without ever starting a worker
    assert q[3].state == jobs.CANCELLED and q[3].worker is None
    most, _ = wait_all(q[:3])
    assert most == 2, "never more than the cap at once"
    assert [j.state for j in q] == [jobs.IMPORTING] * 3 + [jobs.CANCELLED]
    assert q[0].started <= q[1].started < q[2].started


def test_local_jobs_run_one_at_a_time_beside_hosted_ones(fast_scene, tmp_path, monkeypatch):
    jobs = mod("trellis_addon.queue")
    q = queued_jobs(3, tmp_path)
    # the first two are scheduled as local GPU jobs; the preview worker still runs them
    monkeypatch.setattr(jobs.Job, "on_gpu", property(lambda job: job in q[:2]))
    pool = mod("trellis_addon.queue.manager").pool_spec()  # no TRELLIS.2 Python here: Blender's runs them
    monkeypatch.setattr(jobs.manager, "worker_for", lambda job: jobs.manager.pooled_worker(pool, job))
    started = jobs.manager.pump(4)
    assert started == [q[0], q[2]], "the second local job waits for the first"
    most, most_local = wait_all(q, cap=4)
    assert most_local == 1 and most == 2
    assert all(j.state == jobs.IMPORTING for j in q)
    for job in q:
        job.cancel()


def test_panel_lists_the_queue(fast_scene, tmp_path):
    """The sidebar draws every active job with its own cancel button (drawn through a real layout)."""
    jobs = mod("trellis_addon.queue")
    q = queued_jobs(3, tmp_path)
    calls = []

    class Layout:  # records what draw_queue asks of the layout
        def __getattr__(self, name):
            def record(*args, **kwargs):
                calls.append((name, kwargs.get("text")))
                return Layout()
            return record

        def __setattr__(self, name, value):
            calls.append(("set", name, value))

    mod("panels.sidebar").draw_queue(Layout(), jobs.manager.active())
    labels = [c[1] for c in calls if c[0] == "label" and c[1]]
    assert labels[0] == "Jobs: 0 running, 3 queued"
    assert sum("q" in t and "Queued" in t for t in labels) == 3
    assert sum(1 for c in calls if c[:2] == ("set", "job_id") and c[2] in {j.id for j in q}) == 3
    for job in q:
        job.cancel()
