"""Where a 3D viewport is open, the UI's modal operator loads a result's objects from its snapshot in a tick
ahead (importer.preload), checked as the append checks them and kept in no scene, then computes each mesh's
normals in a tick of its own; the tick that places the result only links them, and the viewport's first draw
finds the normals made. The result is the same as appended in one go; nothing is loaded twice; what a job that
ends between leaves is removed."""
import bpy

from conftest import mod
from test_snapshot_twins import ahead_tick, images, written_as_the_background_blender_does


def counted_loads(monkeypatch) -> list:
    check = mod("trellis_addon.snapshot_check")
    loads, load = [], check.load

    def counted(*args, **kwargs):
        loads.append(args[0])
        return load(*args, **kwargs)
    monkeypatch.setattr(check, "load", counted)
    return loads


def everything() -> set:
    return mod("trellis_addon.snapshot_check").all_ids()


def test_the_objects_are_loaded_ahead_and_the_append_only_links_them(result, monkeypatch):
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    imported = written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "any_viewport", lambda: True)  # a viewport in Solid: no images ahead
    loads = counted_loads(monkeypatch)
    assert ahead_tick(result, owner="job") is True
    obj = bpy.data.objects["geometry_0"]
    assert obj.users_scene == () and obj.use_fake_user, "loaded, in no scene, kept until the append takes it"
    assert len(bpy.data.libraries) == 1, "its Library kept until the placing tick (a removal redraws every editor)"
    assert obj.data.normals_domain == "CORNER", "the GLB's normals: custom, as the glTF importer sets them"
    assert ahead_tick(result, owner="job") is True, "its normals computed, a tick of their own"
    assert ahead_tick(result, owner="job") is False
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert objects == [obj] and obj.users_scene and not obj.use_fake_user
    assert len(loads) == 1, "not loaded again"
    assert images() == imported and not bpy.data.libraries and not mod("trellis_addon.ahead")._LOADED
    mark = mod("trellis_addon.marks").MARK
    assert not [i.name for i in everything() if i.get(mark)], "the load's marks are gone once placed"


def test_after_the_images_ahead_the_objects_follow(result, monkeypatch):
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    imported = written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "any_viewport", lambda: True)
    monkeypatch.setattr(twins, "viewports", lambda: {"all"})  # Material Preview
    loads = counted_loads(monkeypatch)
    steps = 0
    while ahead_tick(result, owner="job"):
        steps += 1
        assert steps < 20
    assert steps == 5, "twins appended, two images read, objects loaded, normals computed"
    ahead = sorted(i.session_uid for i in bpy.data.images if i.packed_file)  # the twins; the images the
    # materials use, without bytes, are swapped for them in the placing tick (a removal redraws every editor)
    assert len(bpy.data.images) == 4 and len(ahead) == 2
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert [o.name for o in objects] == ["geometry_0"] and len(loads) == 1
    assert images() == imported and sorted(i.session_uid for i in bpy.data.images) == ahead
    assert all(i.has_data for i in bpy.data.images), "the images read ahead are the result's"


def test_what_a_job_that_ends_between_loaded_is_removed(result, monkeypatch):
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "any_viewport", lambda: True)
    monkeypatch.setattr(twins, "viewports", lambda: {"colour"})
    before = everything()
    while ahead_tick(result, owner="job-a"):
        pass
    assert everything() - before
    mod("trellis_addon.ahead").drop("job-b")
    assert bpy.data.objects.get("geometry_0") is not None, "another job's end leaves them"
    mod("trellis_addon.ahead").drop("job-a")
    assert everything() == before and not mod("trellis_addon.ahead")._LOADED and not twins._AHEAD
    assert not bpy.data.libraries


def test_an_undo_between_leaves_it_to_the_append(result, monkeypatch):
    """An undo step or a file loaded between the ticks takes the loaded objects away: the append loads the
    snapshot itself, and what is left of the first load is removed."""
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    imported = written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "any_viewport", lambda: True)
    loads = counted_loads(monkeypatch)
    assert ahead_tick(result, owner="job")
    bpy.data.objects.remove(bpy.data.objects["geometry_0"])  # as an undo to before the load leaves it
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert [o.name for o in objects] == ["geometry_0"] and len(loads) == 2
    assert images() == imported, "nothing of the first load left"
    assert len(bpy.data.meshes) == len(bpy.data.materials) == 1 and not bpy.data.libraries


def test_nothing_is_loaded_ahead_without_a_viewport(result):
    importer = mod("trellis_addon.importer")
    written_as_the_background_blender_does(result)
    assert mod("trellis_addon.twins").any_viewport() is False, "the bpy module draws no window"
    assert ahead_tick(result, owner="job") is False and not bpy.data.objects


def test_a_material_put_to_use_between_is_kept_when_the_job_ends(result, monkeypatch):
    """The user may work between the ticks: what is loaded ahead and then used elsewhere stays (with what it
    uses), the rest goes."""
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "any_viewport", lambda: True)
    assert ahead_tick(result, owner="job")
    material = bpy.data.objects["geometry_0"].active_material
    mine = bpy.data.objects.new("mine", bpy.data.meshes.new("mine"))
    bpy.context.scene.collection.objects.link(mine)
    mine.data.materials.append(material)
    mod("trellis_addon.ahead").drop("job")
    assert bpy.data.objects.get("geometry_0") is None and [m.name for m in bpy.data.meshes] == ["mine"]
    assert mine.data.materials[0] == material and len(bpy.data.images) == 2, "kept, with its images"


def test_a_datablock_of_the_same_name_that_the_load_did_not_bring_is_never_touched(result, monkeypatch):
    """An undo took the loaded object and its material, and the user keeps a material of the same name
    (unused, with a fake user): only what carries the load's mark is removed."""
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "any_viewport", lambda: True)
    assert ahead_tick(result, owner="job")
    material = bpy.data.objects["geometry_0"].active_material.name
    bpy.data.objects.remove(bpy.data.objects["geometry_0"])
    bpy.data.materials.remove(bpy.data.materials[material])
    mine = bpy.data.materials.new(material)
    mine.use_fake_user = True
    assert mine.name == material
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert [o.name for o in objects] == ["geometry_0"] and bpy.data.materials.get(material) == mine, "kept"
    assert objects[0].active_material != mine and len(bpy.data.meshes) == 1
