"""A result's landing from its signed snapshot (landing.py): in the modal operator's ticks where a window is
open (appended into no scene, its images decoded where a viewport draws them, its normals made, a tick each),
then placed; or at once. Either way the result is what an import of the GLB gives, nothing is appended twice,
and what a job that ends between leaves is removed, never a datablock of the user's."""
import hashlib
import os

import bpy
import pytest

from conftest import mod


def images() -> dict:
    """name: (packed, colour space, users, sha256 of the bytes) of every image."""
    return {i.name: (i.packed_file is not None, i.colorspace_settings.name, i.users,
                     hashlib.sha256(i.packed_file.data).hexdigest() if i.packed_file else "")
            for i in bpy.data.images}


def written(path) -> dict:
    """The GLB imported with its snapshot written and signed (as the background Blender does); the images as
    the glTF importer left them. The scene is emptied after."""
    importer = mod("trellis_addon.importer")
    objects = importer.import_glb(bpy.context, path, snapshot=True)
    assert objects and importer.fresh_snapshot(path)
    imported = images()
    bpy.ops.wm.read_homefile(use_empty=True)
    return imported


def landing_of(path):
    """A landing of the GLB's snapshot, verified as the builder's thread verifies it."""
    importer, signing, landing = (mod(f"trellis_addon.{m}") for m in ("importer", "signing", "landing"))
    snap = importer.snapshot_path(path)
    known, why = signing.verify(snap, mod("trellis_addon.prefs").signing_key())
    assert known is not None, why
    return landing.Landing(snap, known)


@pytest.fixture()
def window(monkeypatch):
    """Viewports as a window shows them (the bpy module draws none); set which images they draw."""
    viewports = mod("trellis_addon.landing.viewports")
    monkeypatch.setattr(viewports, "any_open", lambda: True)
    drawn = set()
    monkeypatch.setattr(viewports, "kinds", lambda: drawn)
    return drawn


def counted_loads(monkeypatch) -> list:
    landing, loads = mod("trellis_addon.landing"), []
    load = landing._load
    monkeypatch.setattr(landing, "_load", lambda path: loads.append(path) or load(path))
    return loads


def ticks(lander) -> int:
    count = 0
    while lander.tick():
        count += 1
        assert count < 20
    return count


def everything() -> set:
    return mod("trellis_addon.landing.check").all_ids()


def place(lander, result):
    return mod("trellis_addon.importer").import_glb(bpy.context, result, snapshot=True, landing=lander,
                                                    verified={lander.snapshot: lander.fingerprint})


def test_in_ticks_appended_warmed_and_normals_made_then_placed(result, window, monkeypatch):
    imported = written(result)
    window.add("all")  # Material Preview
    loads, lander = counted_loads(monkeypatch), landing_of(result)
    assert lander.tick() is True
    obj = bpy.data.objects["geometry_0"]
    assert obj.users_scene == () and obj.use_fake_user, "appended, in no scene, kept until placed"
    assert not any(i.has_data for i in bpy.data.images), "nothing decoded in the append's tick"
    assert ticks(lander) == 3, "two images read, then the normals, a tick each"
    assert all(i.has_data for i in bpy.data.images)
    uids = sorted(i.session_uid for i in bpy.data.images)
    objects = place(lander, result)
    assert objects == [obj] and obj.users_scene and not obj.use_fake_user and len(loads) == 1
    assert images() == imported and sorted(i.session_uid for i in bpy.data.images) == uids
    assert not bpy.data.libraries and not [i.name for i in everything() if mod("trellis_addon.landing").MARK in i]


def test_solids_texture_colour_reads_only_the_colour_image(result, window):
    written(result)
    window.add("colour")
    lander = landing_of(result)
    assert ticks(lander) == 3, "appended, the colour image read, the normals"
    assert {i.colorspace_settings.is_data: i.has_data for i in bpy.data.images} == {False: True, True: False}


def test_without_a_viewport_the_append_is_the_only_tick(result):
    imported = written(result)
    lander = landing_of(result)
    assert ticks(lander) == 1 and not any(i.has_data for i in bpy.data.images)
    assert [o.name for o in place(lander, result)] == ["geometry_0"] and images() == imported


def test_at_once_the_result_lands_as_the_import_left_it(result, monkeypatch):
    imported = written(result)
    loads = counted_loads(monkeypatch)
    objects = mod("trellis_addon.importer").import_glb(bpy.context, result, snapshot=True)
    assert [o.name for o in objects] == ["geometry_0"] and images() == imported and len(loads) == 1
    assert not bpy.data.libraries and len(bpy.data.materials) == 1


def test_what_a_job_that_ends_between_appended_is_removed(result, window):
    written(result)
    window.add("colour")
    before = everything()
    lander = landing_of(result)
    ticks(lander)
    assert everything() - before
    lander.drop()
    assert everything() == before and not bpy.data.libraries


def test_a_material_put_to_use_between_is_kept(result, window):
    written(result)
    lander = landing_of(result)
    lander.tick()
    material = bpy.data.objects["geometry_0"].active_material
    mine = bpy.data.objects.new("mine", bpy.data.meshes.new("mine"))
    bpy.context.scene.collection.objects.link(mine)
    mine.data.materials.append(material)
    lander.drop()
    assert bpy.data.objects.get("geometry_0") is None and [m.name for m in bpy.data.meshes] == ["mine"]
    assert mine.data.materials[0] == material and len(bpy.data.images) == 2, "kept, with its images"


def test_an_undo_between_leaves_it_to_the_placing(result, window, monkeypatch):
    """An undo or a file load between the ticks took the appended objects: the placing appends anew, and what
    is left of the first append is removed."""
    imported = written(result)
    loads, lander = counted_loads(monkeypatch), landing_of(result)
    lander.tick()
    bpy.data.objects.remove(bpy.data.objects["geometry_0"])  # as an undo to before the append leaves it
    objects = place(lander, result)
    assert [o.name for o in objects] == ["geometry_0"] and len(loads) == 2
    assert images() == imported and len(bpy.data.meshes) == len(bpy.data.materials) == 1
    assert not bpy.data.libraries


def test_a_datablock_of_the_same_name_the_landing_did_not_bring_is_never_touched(result, window):
    """An undo took the appended object and its material, and the user keeps a material of the same name
    (unused, with a fake user): only what carries the landing's mark is removed."""
    written(result)
    lander = landing_of(result)
    lander.tick()
    material = bpy.data.objects["geometry_0"].active_material.name
    bpy.data.objects.remove(bpy.data.objects["geometry_0"])
    bpy.data.materials.remove(bpy.data.materials[material])
    mine = bpy.data.materials.new(material)
    mine.use_fake_user = True
    objects = place(lander, result)
    assert [o.name for o in objects] == ["geometry_0"] and bpy.data.materials.get(material) == mine, "kept"
    assert objects[0].active_material != mine and len(bpy.data.meshes) == 1


def test_a_snapshot_changed_after_it_was_verified_is_not_opened_ahead(result, window, monkeypatch):
    written(result)
    loads, lander = counted_loads(monkeypatch), landing_of(result)
    os.utime(lander.snapshot, ns=(1, 1))
    assert lander.tick() is True and lander.tick() is False and loads == []
    with pytest.raises(RuntimeError, match="changed since it was verified"):
        lander.take()


def test_a_warm_step_that_fails_leaves_it_to_the_first_draw(result, window, monkeypatch, capsys):
    """Making a GPU texture that fails (a stand-in for the gpu module: the bpy module has no GPU, and its own
    crashes there, so no upload step is made without a window) only costs the head start."""
    import sys
    import types
    imported = written(result)

    def from_image(image):
        raise RuntimeError("no GPU context")
    monkeypatch.setitem(sys.modules, "gpu", types.SimpleNamespace(texture=types.SimpleNamespace(from_image=from_image)))
    monkeypatch.setattr(mod("trellis_addon.landing.viewports"), "warm_steps",
                        lambda images, kinds: [("upload", i.name) for i in images])
    lander = landing_of(result)
    assert ticks(lander) == 4, "appended, two uploads that fail, the normals"
    assert capsys.readouterr().out.count("ahead: no GPU context") == 2
    place(lander, result)
    assert images() == imported


def test_what_a_viewport_draws():
    drawn = mod("trellis_addon.landing.viewports").drawn
    assert drawn("MATERIAL", "MATERIAL", "CYCLES") == "all", "Material Preview draws with EEVEE"
    assert drawn("RENDERED", "MATERIAL", "BLENDER_EEVEE") == "all"
    assert drawn("RENDERED", "MATERIAL", "BLENDER_EEVEE_NEXT") == "all", "4.2's name"
    assert drawn("SOLID", "TEXTURE", "CYCLES") == "colour"
    assert drawn("RENDERED", "TEXTURE", "CYCLES") == "", "Cycles reads its images itself"
    assert drawn("SOLID", "MATERIAL", "BLENDER_WORKBENCH") == ""
