"""The vertical slice in real Blender: bpy.ops.trellis.generate from a script, result in the scene."""
import json
import os

import bpy
import pytest
from mathutils import Vector

from conftest import EXAMPLE_IMAGE, PKG, mod

FAST = dict(backend="preview", resolution=512, texture_size=1024, decimation_target=100000)


def world_bounds(obj):
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    return (Vector(map(min, *corners)), Vector(map(max, *corners)))


def material_links(obj):
    """{principled input name: linked node type} for the object's first material."""
    mat = obj.active_material
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    return {i.name: i.links[0].from_node.type for i in bsdf.inputs if i.is_linked}


def test_generate_from_script_places_a_pbr_mesh_at_the_cursor(scene):
    scene.cursor.location = (1.0, 2.0, 0.5)
    result = bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=1234, **FAST)
    assert result == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "mushroom" and obj.type == "MESH" and obj.select_get()
    assert [c.name for c in obj.users_collection] == ["TRELLIS"]
    assert len(obj.data.polygons) > 1000
    lo, hi = world_bounds(obj)
    assert lo.z == pytest.approx(0.5, abs=1e-4), "stands on the cursor"
    assert ((lo.x + hi.x) / 2, (lo.y + hi.y) / 2) == pytest.approx((1.0, 2.0), abs=1e-4)
    assert max(hi - lo) == pytest.approx(1.0, rel=0.02), "the model's own ~1 m size is kept"
    assert hi.z - lo.z > hi.y - lo.y, "upright: the picture's up is Blender's +Z"
    assert obj.rotation_mode == "XYZ", "XYZ Euler, as artists expect (the glTF importer leaves quaternions)"
    links = material_links(obj)
    assert links["Base Color"] == "TEX_IMAGE"
    assert links.get("Metallic") and links.get("Roughness") and links.get("Alpha"), links
    images = [n.image for n in obj.active_material.node_tree.nodes if n.type == "TEX_IMAGE"]
    assert all(img.size[0] == 1024 for img in images)
    record = json.loads(obj["trellis2"])
    assert record["backend"] == "preview" and record["seed"] == 1234 and record["addon_version"] == "0.1.0"
    assert record["settings"]["resolution"] == 512 and record["settings"]["random_seed"] is False
    assert os.path.isfile(record["image"]) and os.path.isdir(record["job_folder"])
    job = json.load(open(os.path.join(record["job_folder"], "job.json")))
    assert job["state"] == "done" and job["objects"] == ["mushroom"]


def test_random_seed_is_resolved_and_recorded(scene):
    seeds = set()
    for _ in range(2):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, **FAST)
        seeds.add(json.loads(bpy.context.view_layer.objects.active["trellis2"])["seed"])
    assert len(seeds) == 2


def test_several_results_side_by_side_with_consecutive_seeds(scene):
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=10, number_results=3, **FAST)
    objs = sorted(bpy.data.collections["TRELLIS"].objects, key=lambda o: world_bounds(o)[0].x)
    assert [json.loads(o["trellis2"])["seed"] for o in objs] == [10, 11, 12]
    assert {o.name for o in objs} == {"mushroom.01", "mushroom.02", "mushroom.03"}
    bounds = [world_bounds(o) for o in objs]
    for (_, hi_a), (lo_b, _) in zip(bounds, bounds[1:]):
        assert hi_a.x < lo_b.x, "no overlap"
    assert all(lo.z == pytest.approx(0.0, abs=1e-4) for lo, _ in bounds)


def test_target_size_scales_the_longest_side(scene):
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=3, target_size=2.5, **FAST)
    lo, hi = world_bounds(bpy.context.view_layer.objects.active)
    assert max(hi - lo) == pytest.approx(2.5, rel=1e-3)
    assert lo.z == pytest.approx(0.0, abs=1e-4)


def test_scene_settings_are_used_unless_overridden(scene):
    settings = scene.trellis2
    settings.resolution, settings.texture_size, settings.random_seed, settings.seed = "512", "1024", False, 77
    settings.decimation_target = 100000
    settings.image = bpy.data.images.load(EXAMPLE_IMAGE)
    assert bpy.ops.trellis.generate() == {"FINISHED"}
    record = json.loads(bpy.context.view_layer.objects.active["trellis2"])
    assert (record["seed"], record["settings"]["texture_size"]) == (77, 1024)
    bpy.ops.trellis.generate(seed=78)
    assert json.loads(bpy.context.view_layer.objects.active["trellis2"])["seed"] == 78


def test_image_datablock_without_file(scene):
    import numpy as np
    img = bpy.data.images.new("Painted Disc", 200, 160, alpha=True)
    yy, xx = np.mgrid[:160, :200]
    px = np.zeros((160, 200, 4), np.float32)
    px[..., 2] = 0.8
    px[..., 3] = ((xx - 100) ** 2 + (yy - 80) ** 2 < 60 ** 2)
    img.pixels.foreach_set(px.ravel())
    assert bpy.ops.trellis.generate(image=img.name, seed=1, **FAST) == {"FINISHED"}
    assert bpy.context.view_layer.objects.active.name == "Painted Disc"


def test_large_image_is_downscaled_without_touching_the_users_image(scene):
    img = bpy.data.images.new("big", 3000, 1500, alpha=True)
    img.generated_type = "COLOR_GRID"
    rgba = mod("trellis_addon.image_input").to_rgba8(img)
    assert rgba.shape == (512, 1024, 4) and rgba.dtype.name == "uint8"
    assert tuple(img.size) == (3000, 1500) and "big" in bpy.data.images and len(bpy.data.images) == 1


def test_float_image_is_converted_to_srgb(scene):
    img = bpy.data.images.new("lin", 4, 4, alpha=True, float_buffer=True)
    img.pixels.foreach_set([0.2140, 0.2140, 0.2140, 1.0] * 16)  # linear 0.214 is sRGB 0.5
    rgba = mod("trellis_addon.image_input").to_rgba8(img)
    assert abs(int(rgba[0, 0, 0]) - 128) <= 1 and rgba[0, 0, 3] == 255


def _error_of(**kwargs):
    jobs_before = len(mod("trellis_addon.queue").manager.jobs)
    with pytest.raises(RuntimeError) as info:
        bpy.ops.trellis.generate(**kwargs)
    assert len(mod("trellis_addon.queue").manager.jobs) == jobs_before, "no worker was started"
    message = str(info.value)
    assert "Traceback" not in message
    return message


def test_bad_input_fails_before_any_worker(scene, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n" * 20)
    blank = bpy.data.images.new("blank", 64, 64)
    blank.generated_color = (1, 1, 1, 1)
    assert "No image" in _error_of(backend="preview")
    assert "Image file not found" in _error_of(image=str(tmp_path / "missing.png"))
    assert "empty (0 bytes)" in _error_of(image=str(empty))
    assert "Not an image Blender can read" in _error_of(image=str(text))
    assert "has no foreground" in _error_of(image="blank")
    assert "resolution: 700 is out of range (one of 512, 1024, 1536)" in _error_of(image=EXAMPLE_IMAGE, resolution=700)
    assert "tex_slat_steps: 0 is out of range (1 to 50)" in _error_of(image=EXAMPLE_IMAGE, tex_slat_steps=0)
    assert "target_size" in _error_of(image=EXAMPLE_IMAGE, target_size=-1.0)
    output_dir = bpy.context.preferences.addons[PKG].preferences.output_dir
    assert not os.path.isdir(output_dir) or not os.listdir(output_dir), "no job folder was made"
