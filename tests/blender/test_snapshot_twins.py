"""The background Blender's snapshots keep each image's bytes in a packed twin (importer.write_snapshot with
twins): for a big snapshot (twins.PRELOAD_BYTES) the UI's modal operator appends the twins in a tick
(importer.preload) before the one that appends the mesh, which then only swaps each image for its twin.
Whether appended ahead or in the same call, the result is what an import of the GLB gives: the same
images, bytes and settings, packed, and nothing else left in the file."""
import hashlib

import bpy

from conftest import mod


def images() -> dict:
    """name: (packed, file path, colour space, users, sha256 of the bytes, custom properties) of every image."""
    return {i.name: (i.packed_file is not None, i.filepath_raw, i.colorspace_settings.name, i.users,
                     hashlib.sha256(i.packed_file.data).hexdigest() if i.packed_file else "", sorted(i.keys()))
            for i in bpy.data.images}


def signing_key() -> bytes:
    return mod("trellis_addon.prefs").signing_key()


def ahead_tick(path, owner: str = "") -> bool:
    """importer.preload as the modal operator calls it: with the snapshot verified off the main thread (the
    builder's verify task)."""
    importer, signing = mod("trellis_addon.importer"), mod("trellis_addon.signing")
    snap = importer.chosen_snapshot(path)
    return importer.preload(path, "", owner, {snap: signing.verify(snap, signing_key())[0]} if snap else {})


def written_as_the_background_blender_does(path) -> dict:
    """import_glb with twins (blend_worker's call); the images as the glTF importer left them here."""
    importer = mod("trellis_addon.importer")
    objects = importer.import_glb(bpy.context, path, snapshot=True, twins=True, signing_key=signing_key())
    assert objects and importer.fresh_snapshot(path)
    imported = images()
    bpy.ops.wm.read_homefile(use_empty=True)
    return imported


def test_the_snapshot_keeps_each_images_bytes_in_a_packed_twin(result):
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    objects = importer.import_glb(bpy.context, result, snapshot=True, twins=True, signing_key=signing_key())
    before = images()
    assert len(before) == 2 and all(packed and not props for packed, _, _, _, _, props in before.values()), \
        "the writing Blender's own images are left packed, without twins"
    del objects
    bpy.ops.wm.read_homefile(use_empty=True)
    with bpy.data.libraries.load(importer.snapshot_path(result)) as (src, dst):
        dst.images = list(src.images)
    saved = {i.name: i for i in dst.images}
    copies = {n: i for n, i in saved.items() if n.startswith(twins.TWIN)}
    used = {n: i for n, i in saved.items() if n not in copies}
    assert sorted(used) == sorted(before) and len(copies) == 2
    for name, image in used.items():
        twin = copies[image[twins.TWIN]]
        assert image.packed_file is None, "the image the material uses holds no bytes"
        assert twin.packed_file is not None and not twin.keys()
        assert hashlib.sha256(twin.packed_file.data).hexdigest() == before[name][4]
        assert twin.colorspace_settings.name == before[name][2]


def test_appended_at_once_the_result_lands_as_the_import_left_it(result):
    importer = mod("trellis_addon.importer")
    imported = written_as_the_background_blender_does(result)
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert [o.name for o in objects] == ["geometry_0"] and not bpy.data.libraries
    assert images() == imported
    assert {"bench" not in m.name for m in bpy.data.materials} and len(bpy.data.materials) == 1


def test_appended_ahead_then_the_mesh_takes_them(result, monkeypatch):
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    imported = written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "PRELOAD_BYTES", 0)  # the test's snapshot counts as big
    assert ahead_tick(result) is True
    assert len(bpy.data.images) == 2 and not bpy.data.objects, "the images' bytes, nothing else"
    assert not any(i.has_data for i in bpy.data.images), "nothing decoded where no viewport draws them"
    assert ahead_tick(result) is False, "once"
    ahead = sorted(i.session_uid for i in bpy.data.images)
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert sorted(i.session_uid for i in bpy.data.images) == ahead, "the images appended ahead, not again"
    assert [o.name for o in objects] == ["geometry_0"] and images() == imported
    assert not twins._AHEAD and not bpy.data.libraries


def test_a_small_snapshot_is_appended_in_one_tick(result):
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    written_as_the_background_blender_does(result)
    assert importer.fresh_snapshot(result) and twins.PRELOAD_BYTES == 64 << 20
    assert ahead_tick(result) is False and not bpy.data.images, "a second reading costs more than it splits"


def test_a_twin_appended_ahead_that_no_append_takes_is_removed(result, monkeypatch):
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "PRELOAD_BYTES", 0)
    assert ahead_tick(result, owner="job-a")
    assert len(bpy.data.images) == 2 and all(i.use_fake_user for i in bpy.data.images), "kept by an undo step"
    twins.drop("job-b")
    assert len(bpy.data.images) == 2, "another job's end leaves them"
    twins.drop("job-a")
    assert len(bpy.data.images) == 0 and not twins._AHEAD and not bpy.data.libraries


def test_an_image_of_a_twins_name_that_was_not_appended_ahead_is_never_removed(result, monkeypatch):
    """An undo took the twins appended ahead, and the user keeps an image of the same name (a fake user, no
    other user): only what carries the append's mark goes when the job ends."""
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "PRELOAD_BYTES", 0)
    assert ahead_tick(result, owner="job")
    names = sorted(i.name for i in bpy.data.images)
    for image in list(bpy.data.images):
        bpy.data.images.remove(image)
    mine = bpy.data.images.new(names[0], 4, 4)
    mine.use_fake_user = True
    twins.drop("job")
    assert [i.name for i in bpy.data.images] == [names[0]] and not twins._AHEAD


def test_a_snapshot_with_packed_images_as_before_still_appends(result, monkeypatch):
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    monkeypatch.setattr(twins, "PRELOAD_BYTES", 0)
    importer.import_glb(bpy.context, result, snapshot=True)  # twins=False: the main thread's own snapshot
    imported = images()
    bpy.ops.wm.read_homefile(use_empty=True)
    assert ahead_tick(result) is False and not bpy.data.images
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert [o.name for o in objects] == ["geometry_0"] and images() == imported


def test_twins_no_image_names_are_removed(result):
    """A snapshot with a stray twin (nothing names it) appends without it."""
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    written_as_the_background_blender_does(result)
    snap = importer.snapshot_path(result)
    with bpy.data.libraries.load(snap) as (src, dst):
        dst.objects = list(src.objects)
        dst.images = list(src.images)  # the twins too
    stray = bpy.data.images.new(f"{twins.TWIN}_9", 4, 4)
    stray.pack()
    keep = set(bpy.data.objects) | set(bpy.data.images)
    bpy.data.libraries.write(snap, keep, fake_user=False)  # the snapshot again, with the stray twin
    bpy.ops.wm.read_homefile(use_empty=True)
    objects = importer._append_snapshot(bpy.context, snap)
    assert [o.name for o in objects] == ["geometry_0"]
    assert not [i.name for i in bpy.data.images if i.name.startswith(twins.TWIN)]


def test_what_a_viewport_draws():
    drawn = mod("trellis_addon.twins").drawn
    assert drawn("MATERIAL", "MATERIAL", "CYCLES") == "all", "Material Preview draws with EEVEE"
    assert drawn("RENDERED", "MATERIAL", "BLENDER_EEVEE") == "all"
    assert drawn("RENDERED", "MATERIAL", "BLENDER_EEVEE_NEXT") == "all", "4.2's name"
    assert drawn("SOLID", "TEXTURE", "CYCLES") == "colour"
    assert drawn("RENDERED", "TEXTURE", "CYCLES") == "", "Cycles reads its images itself"
    assert drawn("SOLID", "MATERIAL", "BLENDER_EEVEE") == drawn("WIREFRAME", "TEXTURE", "BLENDER_EEVEE") == ""


def preloaded_steps(result, monkeypatch, kinds) -> int:
    """Calls of importer.preload that did something, with the viewports drawing `kinds`."""
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    monkeypatch.setattr(twins, "PRELOAD_BYTES", 0)
    monkeypatch.setattr(twins, "viewports", lambda: set(kinds))
    assert ahead_tick(result) is True
    assert len(bpy.data.images) == 2 and not any(i.has_data for i in bpy.data.images), "appended, not read"
    calls = 1
    while ahead_tick(result):
        calls += 1
        assert calls < 10
    return calls


def test_the_images_a_viewport_draws_are_read_ahead_a_tick_each(result, monkeypatch):
    importer = mod("trellis_addon.importer")
    imported = written_as_the_background_blender_does(result)
    assert preloaded_steps(result, monkeypatch, {"all"}) == 3, "appended, then each image read, in a tick each"
    assert all(i.has_data for i in bpy.data.images)  # (no upload without a window: the bpy module has no GPU)
    ahead = sorted(i.session_uid for i in bpy.data.images)
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert [o.name for o in objects] == ["geometry_0"] and images() == imported
    assert sorted(i.session_uid for i in bpy.data.images) == ahead and all(i.has_data for i in bpy.data.images), \
        "the result's images are those read ahead: the first draw does not read them again"


def test_solids_texture_colour_reads_only_the_colour_image_ahead(result, monkeypatch):
    importer = mod("trellis_addon.importer")
    imported = written_as_the_background_blender_does(result)
    assert preloaded_steps(result, monkeypatch, {"colour"}) == 2
    read = {i.colorspace_settings.is_data: i.has_data for i in bpy.data.images}
    assert read == {False: True, True: False}, "the base colour, not the metallic-roughness data"
    importer.import_glb(bpy.context, result, snapshot=True)
    assert images() == imported


def test_nothing_is_read_ahead_where_no_viewport_draws_textures(result, monkeypatch):
    written_as_the_background_blender_does(result)
    assert preloaded_steps(result, monkeypatch, set()) == 1, "appended only"
    assert not any(i.has_data for i in bpy.data.images)
    assert mod("trellis_addon.twins").viewports() == set(), "no window here"


def test_a_small_snapshot_goes_ahead_where_a_viewport_draws_textures(result, monkeypatch):
    """Reading and uploading the images out of the result's first draw is worth a second opening of the file."""
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    imported = written_as_the_background_blender_does(result)
    monkeypatch.setattr(twins, "viewports", lambda: {"colour"})
    assert twins.PRELOAD_BYTES == 64 << 20 and ahead_tick(result) is True, "appended ahead"
    assert [ahead_tick(result) for _ in range(2)] == [True, False], "the colour image read"
    importer.import_glb(bpy.context, result, snapshot=True)
    assert images() == imported


def test_a_step_ahead_that_fails_leaves_it_to_the_first_draw(result, monkeypatch, capsys):
    """Making a GPU texture that fails (a stand-in for the gpu module: the bpy module has no GPU, and its own
    crashes there, so no upload step is made without a window) only costs the head start."""
    import sys
    import types
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    imported = written_as_the_background_blender_does(result)

    def from_image(image):
        raise RuntimeError("no GPU context")
    monkeypatch.setitem(sys.modules, "gpu", types.SimpleNamespace(texture=types.SimpleNamespace(from_image=from_image)))
    monkeypatch.setattr(twins, "warm_steps", lambda images, kinds: [("upload", i.name) for i in images])
    assert preloaded_steps(result, monkeypatch, {"all"}) == 3
    assert capsys.readouterr().out.count("ahead: no GPU context") == 2
    importer.import_glb(bpy.context, result, snapshot=True)
    assert images() == imported
