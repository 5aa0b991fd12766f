"""Finishing (trellis_addon/finish) in real Blender, on a result with known defects: every vertex split, a
small floating box, a closed inner shell and a hole (servers.meshes.defect_glb). Each setting's effect is
checked against counts made here with bmesh, independently of the code under test."""
import json
import os
import subprocess
import sys

import bpy  # first: bmesh comes with it
import bmesh
import numpy as np
import pytest
from mathutils import Vector

from backend import glb, png, schema
from conftest import EXAMPLE_IMAGE, mod
from servers import meshes

SIZE = 2.0  # target size, metres


@pytest.fixture()
def fin(addon):
    return mod("trellis_addon.finish")


@pytest.fixture()
def raw(scene, tmp_path):
    """The defect GLB imported and placed at the cursor at SIZE, as results are today: (root, design)."""
    path = str(tmp_path / "defects.glb")
    design = meshes.defect_glb(glb, png, path)
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=path)
    objects = [o for o in bpy.data.objects if o not in before]
    record = mod("trellis_addon.record").Record(backend="preview", model="microsoft/TRELLIS.2-4B", seeds=[42],
                                                settings={"resolution": 1024})
    roots = mod("trellis_addon.importer").place_results(bpy.context, [objects], "mushroom", record, SIZE)
    return roots[0], design


def run(fin, obj, **settings):
    record = json.loads(obj["trellis2"])
    return fin.finish([obj], "mushroom", schema.validate_finish(settings), target_size=SIZE, record=record,
                      texture_size=64, bake_samples=1, preview_image=EXAMPLE_IMAGE)


def recount(obj) -> dict:
    """Counts from a bmesh of the object's mesh, world-space bounds from its evaluated matrix."""
    bm = bmesh.new()
    bm.from_mesh(obj.data)
    seen, parts = set(), 0
    for face in bm.faces:
        if face in seen:
            continue
        parts += 1
        stack = [face]
        seen.add(face)
        while stack:
            for vert in stack.pop().verts:
                for other in vert.link_faces:
                    if other not in seen:
                        seen.add(other)
                        stack.append(other)
    bpy.context.view_layer.update()
    points = np.array([obj.matrix_world @ v.co for v in bm.verts])
    out = {"vertices": len(bm.verts), "triangles": sum(len(f.verts) - 2 for f in bm.faces), "parts": parts,
           "boundary_edges": sum(len(e.link_faces) == 1 for e in bm.edges),
           "non_manifold_edges": sum(len(e.link_faces) not in (1, 2) for e in bm.edges),
           "unique_positions": len(np.unique(np.round(points, 5), axis=0)),
           "lo": points.min(axis=0), "hi": points.max(axis=0)}
    bm.free()
    return out


def test_defaults_weld_drop_floater_measure_name_and_mark(fin, raw):
    obj, design = raw
    before = recount(obj)
    assert before["vertices"] == 3 * before["triangles"], "every vertex split"
    steps = []
    report = fin.finish([obj], "mushroom", schema.finish_defaults(), target_size=SIZE,
                        record=json.loads(obj["trellis2"]), preview_image=EXAMPLE_IMAGE,
                        progress=lambda text, f: steps.append((text, f)))
    after = recount(obj)
    assert report["done"] == ["naming", "cleanup", "scale", "origin", "qa", "asset"]
    assert [s[0] for s in steps][:2] == ["Naming", "Cleaning up"] and steps[-1] == ("Finished", 1.0)
    # welded: one vertex per position; the floater (12 faces, 8 corners) dropped, the inner shell kept
    assert after["vertices"] == before["unique_positions"] - 8
    assert after["triangles"] == design["outer"] + design["inner"]
    assert after["parts"] == 2 and after["boundary_edges"] == design["hole_edges"]
    qa = report["qa"]
    for key in ("vertices", "triangles", "parts", "boundary_edges", "non_manifold_edges"):
        assert qa[key] == after[key], key
    assert qa["watertight"] is False
    floater_corners = 3 * design["floater"]  # dropped before the weld
    assert qa["removed"] == {"welded_vertices": before["vertices"] - floater_corners - after["vertices"],
                             "dropped_parts": 1, "interior_faces": 0}
    # UVs and the smooth custom normals survive the weld
    assert obj.data.uv_layers.active is not None and obj.data.has_custom_normals
    normals = np.array([n.vector for n in obj.data.corner_normals])
    radial = np.array([obj.data.vertices[lp.vertex_index].co - Vector((0, 0, SIZE / 2)) for lp in obj.data.loops])
    assert (np.einsum("ij,ij->i", normals, radial / np.linalg.norm(radial, axis=1)[:, None]) > 0.99).all()
    # size, scale, origin at the bottom centre of the bounds, which stands where it was placed
    lo, hi = after["lo"], after["hi"]
    assert max(hi - lo) == pytest.approx(SIZE, rel=1e-5)
    assert qa["size_m"] == pytest.approx(list(hi - lo), abs=1e-5)
    assert tuple(obj.scale) == (1, 1, 1)
    bottom = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    assert np.abs(np.array(obj.location) - bottom).max() < 1e-4 * SIZE
    assert np.abs(bottom).max() < 1e-4 * SIZE, "still standing on the cursor"
    # texel density: texels per metre from the UV area and the surface at the final size
    assert qa["texture_px"] == [64, 64] and 0 < qa["texel_density"] < 64 / 1.0
    # names
    mat = obj.data.materials[0]
    assert (obj.name, obj.data.name, mat.name) == ("mushroom",) * 3
    images = sorted(n.image.name for n in mat.node_tree.nodes if n.type == "TEX_IMAGE")
    assert images == ["mushroom_basecolor", "mushroom_metallic_roughness"]
    left = [b.name for c in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.images) for b in c]
    assert not [n for n in left if "geometry_0" in n or n.startswith(("material_", "Image_"))], left
    # asset: marked, preview, catalog, tags, description
    data = obj.asset_data
    assert data is not None and data.catalog_id == fin.CATALOG_ID
    assert {t.name for t in data.tags} >= {"backend:preview", "model:microsoft/TRELLIS.2-4B", "seed:42",
                                           "resolution:1024"}
    assert "preview" in data.description and "\n" not in data.description
    assert report["preview"] in ("rendered", "image")
    alpha = np.array(obj.preview.image_pixels_float[:])[3::4]
    assert obj.preview.image_size[0] > 0 and alpha.any()


def test_preview_from_the_input_image(fin, raw):
    obj, _ = raw
    report = fin.finish([obj], "mushroom", schema.finish_defaults(), preview_image=EXAMPLE_IMAGE,
                        render_preview=False)
    assert report["preview"] == "image" and obj.preview.image_size[0] == 128
    assert np.array(obj.preview.image_pixels_float[:]).reshape(-1, 4)[:, :3].std() > 0.01


def test_the_preview_is_a_workbench_render_of_the_result(fin, raw):
    """Without a window the preview is rendered with Workbench in a scene of its own: the object drawn in
    the middle on a transparent film, in colour; the file's scenes and cameras, and the object's scenes,
    as before."""
    obj, _ = raw
    scenes, cameras, users = len(bpy.data.scenes), len(bpy.data.cameras), [sc.name for sc in obj.users_scene]
    report = fin.finish([obj], "mushroom", schema.finish_defaults(), preview_image=EXAMPLE_IMAGE)
    if report["preview"] == "image" and bpy.app.binary_path:
        pytest.skip("this Blender binary cannot make a GPU context to render with")
    assert report["preview"] == "rendered"
    assert (len(bpy.data.scenes), len(bpy.data.cameras), [sc.name for sc in obj.users_scene]) == (
        scenes, cameras, users)
    size = obj.preview.image_size[0]
    pixels = np.array(obj.preview.image_pixels_float[:]).reshape(size, size, 4)
    assert size == 128 and pixels[0, 0, 3] == 0 and pixels[-1, -1, 3] == 0, "transparent around it"
    assert pixels[size // 2, size // 2, 3] == 1.0, "the object in the middle"
    drawn = pixels[pixels[..., 3] > 0.99][:, :3]
    assert len(drawn) > size * size // 10 and drawn.std(axis=0).max() > 0.02, "a shaded, textured object"


def test_inner_shell_goes_only_with_remove_interior(fin, raw):
    obj, design = raw
    report = run(fin, obj, remove_interior=True, mark_asset=False)
    after = recount(obj)
    assert after["triangles"] == design["outer"] and after["parts"] == 1
    assert report["qa"]["removed"]["interior_faces"] == design["inner"]
    assert report["qa"]["parts"] == 1 and report["qa"]["boundary_edges"] == design["hole_edges"]


def test_no_cleanup_keeps_everything(fin, raw):
    obj, design = raw
    report = run(fin, obj, cleanup=False, mark_asset=False)
    assert report["qa"]["triangles"] == sum(design[k] for k in ("outer", "inner", "floater"))
    assert report["qa"]["parts"] == report["qa"]["triangles"], "split vertices: every triangle its own part"


def test_origin_center_and_keep(fin, raw, scene):
    obj, _ = raw
    run(fin, obj, origin="CENTER", mark_asset=False)
    after = recount(obj)
    assert np.abs(np.array(obj.location) - (after["lo"] + after["hi"]) / 2).max() < 1e-4 * SIZE
    assert after["lo"][2] == pytest.approx(0.0, abs=1e-4 * SIZE), "not moved on screen"


def test_keep_origin_without_applying_scale(fin, raw):
    obj, _ = raw
    location, scale = obj.location.copy(), obj.scale.copy()
    before = recount(obj)
    run(fin, obj, origin="KEEP", apply_scale=False, cleanup=False, mark_asset=False)
    assert obj.location == location and obj.scale == scale and scale.x != 1
    after = recount(obj)
    assert np.allclose(after["lo"], before["lo"]) and np.allclose(after["hi"], before["hi"])


def test_lods(fin, raw):
    obj, _ = raw
    report = run(fin, obj, lod_levels=2, lod_ratio=0.5, mark_asset=False)
    coll = bpy.data.collections["mushroom LODs"]
    assert [o.name for o in report["lods"]] == ["mushroom_LOD1", "mushroom_LOD2"] == sorted(coll.objects.keys())
    assert coll.hide_viewport and coll.hide_render
    previous = recount(obj)["triangles"]
    counts = []
    for lod in report["lods"]:
        tris = recount(lod)["triangles"]
        assert abs(tris - 0.5 * previous) <= 0.1 * 0.5 * previous, (tris, previous)
        assert lod.data.materials[0] == obj.data.materials[0] and lod.data.uv_layers.active is not None
        assert tuple(lod.location) == pytest.approx(tuple(obj.location))
        counts.append(tris)
        previous = tris
    assert report["qa"]["lod_triangles"] == counts


def _pixels(image):
    out = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(out)
    return out.reshape(-1, 4)


def test_bake_low_poly(fin, raw):
    obj, _ = raw
    steps = []
    report = fin.finish([obj], "mushroom", schema.validate_finish({"bake_faces": 1000, "mark_asset": False}),
                        target_size=SIZE, texture_size=64, bake_samples=1, progress=lambda t, f: steps.append((t, f)))
    assert "Baking normal map" in [t for t, _ in steps]
    assert [f for _, f in steps] == sorted(f for _, f in steps), "progress only goes forward"
    low = bpy.data.objects["mushroom_low"]
    assert report["low"] == low and recount(low)["triangles"] <= 1050
    assert report["qa"]["low_triangles"] == recount(low)["triangles"]
    mat = low.data.materials[0]
    assert mat.name == "mushroom_low" and low.data.uv_layers.active is not None
    images = {n.name: n.image for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"}
    assert set(images) == {"basecolor", "normal", "roughness", "metallic"}
    assert all(im.size[0] == 64 and im.packed_file is not None for im in images.values())
    normal = _pixels(images["normal"])[:, :3]
    assert normal.std(axis=0).max() > 0.01, "normal map is not flat"
    assert _pixels(images["basecolor"])[:, :3].std(axis=0).max() > 0.02, "base colour is not constant"
    assert bpy.context.scene.render.engine != "CYCLES" or bpy.context.scene.cycles.samples != 1, "settings restored"


def test_library_blend_is_listed_by_a_fresh_blender(fin, raw, tmp_path):
    obj, _ = raw
    report = run(fin, obj, lod_levels=1)
    folder = str(tmp_path / "library")
    path = fin.save_to_library([obj] + report["lods"], folder, "mushroom")
    assert os.path.basename(path) == "mushroom.blend"
    with open(os.path.join(folder, fin.CATALOG_FILE)) as f:
        lines = [ln for ln in f.read().splitlines() if ln and not ln.startswith("#")]
    assert lines == ["VERSION 1", f"{fin.CATALOG_ID}:TRELLIS:TRELLIS"]
    fin.write_catalog(folder)
    assert open(os.path.join(folder, fin.CATALOG_FILE)).read().count(fin.CATALOG_ID) == 1
    code = ("import bpy, json, sys\n"
            "with bpy.data.libraries.load(sys.argv[-1], assets_only=True) as (src, dst):\n"
            "    names = list(src.objects)\n"
            "print('ASSETS', json.dumps(names))\n")
    fresh = ([bpy.app.binary_path, "-b", "--factory-startup", "--python-expr", code, "--", path]
             if bpy.app.binary_path else [sys.executable, "-c", code, path])  # a Blender binary, or the bpy module
    out = subprocess.run(fresh, capture_output=True, text=True, timeout=120)
    assert 'ASSETS ["mushroom"]' in out.stdout, out.stderr[-2000:]
    libraries = bpy.context.preferences.filepaths.asset_libraries
    first = fin.register_library(folder, save_preferences=False)
    again = fin.register_library(folder, save_preferences=False)
    assert first == again and sum(os.path.realpath(lib.path) == os.path.realpath(folder) for lib in libraries) == 1


IMPORTERS = {".glb": lambda p: bpy.ops.import_scene.gltf(filepath=p),
             ".gltf": lambda p: bpy.ops.import_scene.gltf(filepath=p),
             ".fbx": lambda p: bpy.ops.import_scene.fbx(filepath=p),
             ".obj": lambda p: bpy.ops.wm.obj_import(filepath=p),
             ".usdc": lambda p: bpy.ops.wm.usd_import(filepath=p),
             ".usdz": lambda p: bpy.ops.wm.usd_import(filepath=p),
             ".stl": lambda p: bpy.ops.wm.stl_import(filepath=p)}



def _has_op(name: str, ext: str) -> bool:
    """Whether this Blender has the exporter (Debian's build has no USD)."""
    if ext not in (".usdc", ".usdz"):
        return True
    try:
        bpy.ops.wm.usd_export.get_rna_type()
        return True
    except KeyError:
        return False

@pytest.mark.parametrize("ext", [".glb", ".gltf", ".fbx", ".obj", ".usdc", ".usdz", ".stl", ".blend"])
def test_export_read_back(fin, raw, tmp_path, ext):
    obj, _ = raw
    if ext in (".usdc", ".usdz") and not hasattr(bpy.ops.wm, "usd_export") or not _has_op("usd_export", ext):
        pytest.skip("this Blender is built without USD")
    report = run(fin, obj, lod_levels=1, mark_asset=False)
    chosen = [obj] if ext == ".stl" else [obj] + report["lods"]  # STL: one mesh, where the LOD's faces
    expected = report["qa"]["triangles"] + (0 if ext == ".stl" else report["qa"]["lod_triangles"][0])  # that
    path = str(tmp_path / "out" / f"mushroom{ext}")  # coincide with the result's are merged on import
    fin.export(chosen, path)
    bpy.ops.wm.read_homefile(use_empty=True)
    before = set(bpy.data.objects)
    if ext == ".blend":
        with bpy.data.libraries.load(path) as (src, dst):
            dst.objects = list(src.objects)
    else:
        assert IMPORTERS[ext](path) == {"FINISHED"}
    got = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
    assert sum(recount(o)["triangles"] for o in got) == expected
    if ext not in (".stl",):
        assert any(m.node_tree and any(n.type == "TEX_IMAGE" and n.image for n in m.node_tree.nodes)
                   for o in got for m in o.data.materials if m), "textures came along"


def test_export_low_only_needs_a_low_poly(fin, raw, tmp_path):
    obj, _ = raw
    run(fin, obj, mark_asset=False)
    with pytest.raises(ValueError, match="no low-poly"):
        fin.export([obj], str(tmp_path / "x.glb"), which="low")
    with pytest.raises(ValueError, match="cannot export"):
        fin.export([obj], str(tmp_path / "x.3ds"))


def test_failed_stage_is_undone_and_named(fin, raw, monkeypatch):
    obj, _ = raw
    cleanup = mod("trellis_addon.finish.cleanup")

    def broken(mesh):
        mesh.vertices[0].co = (9, 9, 9)  # a partial change, then a failure
        raise RuntimeError("ray casting failed")

    monkeypatch.setattr(cleanup, "remove_interior", broken)
    with pytest.raises(fin.FinishError) as info:
        run(fin, obj, remove_interior=True)
    assert info.value.stage == "interior" and "ray casting failed" in str(info.value)
    assert info.value.report["done"] == ["naming", "cleanup"]
    after = recount(obj)
    assert after["hi"].max() < 5, "the stage's change was undone"
    assert obj.name == "mushroom" and after["parts"] == 2, "earlier stages stay"


def test_cancel_between_stages(fin, raw):
    obj, _ = raw
    calls = []
    with pytest.raises(fin.FinishCancelled) as info:
        fin.finish([obj], "mushroom", schema.finish_defaults(), cancelled=lambda: calls.append(1) or len(calls) > 2)
    assert info.value.stage == "scale" and info.value.report["done"] == ["naming", "cleanup"]
