"""A snapshot .blend beside a result's GLB is appended instead of importing the GLB (raw or finished). A
history folder is outside data: another process or a person may have put any .blend there. Each crafted
snapshot here is refused, everything it brought is removed again, and the GLB is imported (and the
snapshot written anew); nothing of it stays in the file. An image saved without its bytes must be
replaced by its packed twin (importer.write_snapshot): one whose twin is missing or reads a file is
refused like any image that reads a file."""
import json
import os
import struct
import zlib

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod
from servers.base import png_head

TWIN = "trellis2_packed"  # twins.TWIN (test_snapshot_twins uses it from there)

REASONS = {  # kind: what the refusal says (any of)
    "modifier": ("1 modifiers",), "constraint": ("1 constraints",), "driver": ("drivers on",), "camera": ("camera",),
    "external_image": ("reads a file",), "image_sequence": ("reads a file",),
    "twin_missing": ("reads a file",), "twin_reads_a_file": ("reads a file",),
    "script_node": ("a script node", "a Text"), "linked": ("a Library", "linked from another file"),
    "bad_qa": ("measured quality",), "bad_role": ("unknown role",), "many_objects": ("101 objects",),
    "too_big": ("too big for its GLB",), "pixel_bomb": ("8193 x 1 pixels",), "twin_pixel_bomb": ("8193 x 1 pixels",),
    "pixels_together": ("million pixels together",), "not_a_picture": ("whose size can be read",),
    "generated_huge": ("20000 x 16 pixels",), "many_images": ("over 64 images",)}
KINDS = list(REASONS)
PICTURE_KINDS = ("pixel_bomb", "twin_pixel_bomb", "pixels_together", "not_a_picture", "generated_huge",
                 "many_images")


def png(width: int, height: int) -> bytes:
    """A real PNG of that size (black RGBA): small in bytes, decodable."""
    row = b"\0" + bytes(4 * width)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def _packed(tmp_path, data: bytes, name: str):
    """A FILE image packed with these bytes (loading reads no pixels; packing copies the file's bytes)."""
    path = tmp_path / f"{name}.png"
    path.write_bytes(data)
    image = bpy.data.images.load(str(path), check_existing=False)
    image.pack()
    image.name = name
    return image


def _evil_object(name="mushroom"):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    return bpy.data.objects.new(name, mesh)


def _material_with(obj, node_type):
    mat = bpy.data.materials.new("evil_material")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True  # always on from 5.0
    node = mat.node_tree.nodes.new(node_type)
    obj.data.materials.append(mat)
    return node


def write_hostile(path: str, kind: str, tmp_path) -> None:
    """A .blend at path as a hostile snapshot of `kind`; nothing of it left in this session."""
    before = {id_ for coll in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.images,
                               bpy.data.texts, bpy.data.cameras, bpy.data.libraries) for id_ in coll}
    obj = _evil_object()
    ids = {obj}
    if kind == "modifier":
        obj.modifiers.new("freeze", "SUBSURF").levels = 6
    elif kind == "constraint":
        obj.constraints.new("COPY_LOCATION")
    elif kind == "driver":
        obj.driver_add("location", 0).driver.expression = "__import__('os').getpid()"
    elif kind == "camera":
        ids = {bpy.data.objects.new("mushroom", bpy.data.cameras.new("evil_camera"))}
    elif kind == "external_image":
        _material_with(obj, "ShaderNodeTexImage").image = bpy.data.images.load(EXAMPLE_IMAGE)
    elif kind in ("twin_missing", "twin_reads_a_file"):
        image = bpy.data.images.load(EXAMPLE_IMAGE)  # the image the material uses: its twin has the bytes
        image[TWIN] = f"{TWIN}_0"
        _material_with(obj, "ShaderNodeTexImage").image = image
        if kind == "twin_reads_a_file":
            twin = bpy.data.images.load(EXAMPLE_IMAGE, check_existing=False)
            twin.name, twin.use_fake_user = f"{TWIN}_0", True
            ids.add(twin)
    elif kind == "image_sequence":
        image = bpy.data.images.load(EXAMPLE_IMAGE)
        image.source = "SEQUENCE"  # reads numbered files beside it
        _material_with(obj, "ShaderNodeTexImage").image = image
    elif kind == "script_node":
        node = _material_with(obj, "ShaderNodeScript")
        node.mode, node.script = "INTERNAL", bpy.data.texts.new("evil.osl")
    elif kind == "linked":
        other = str(tmp_path / "other.blend")
        bpy.data.libraries.write(other, {obj.data}, fake_user=True)
        with bpy.data.libraries.load(other, link=True) as (src, dst):
            dst.meshes = list(src.meshes)
        obj.data = dst.meshes[0]
    elif kind == "bad_qa":
        obj["trellis2_qa"] = json.dumps({"triangles": "lots", "size_m": "<script>"})
    elif kind == "bad_role":
        obj["trellis2_part"] = "boss"
    elif kind in ("pixel_bomb", "pixels_together", "not_a_picture", "many_images"):
        data, count = {"pixel_bomb": (png(8193, 1), 1), "pixels_together": (png_head(8192, 8192), 5),
                       "not_a_picture": (b"\0" * 64, 1), "many_images": (png(1, 1), 65)}[kind]
        for n in range(count):
            _material_with(obj, "ShaderNodeTexImage").image = _packed(tmp_path, data, f"evil_{n}")
    elif kind == "twin_pixel_bomb":  # the twin, appended ahead in the modal operator's way
        image = bpy.data.images.load(EXAMPLE_IMAGE)
        image[TWIN] = f"{TWIN}_0"
        image.name = "evil_image"
        _material_with(obj, "ShaderNodeTexImage").image = image
        twin = _packed(tmp_path, png(8193, 1), f"{TWIN}_0")
        twin.use_fake_user = True
        ids.add(twin)
    elif kind == "generated_huge":  # no pixels until drawn; then 20000 x 16 of them (a crafted one: any size)
        _material_with(obj, "ShaderNodeTexImage").image = bpy.data.images.new("evil_generated", 20000, 16)
    elif kind == "many_objects":
        ids |= {bpy.data.objects.new(f"evil_empty{i}", None) for i in range(100)}
    bpy.data.libraries.write(path, ids, path_remap="ABSOLUTE" if kind == "linked" else "NONE", fake_user=False)
    after = {id_ for coll in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.images,
                              bpy.data.texts, bpy.data.cameras, bpy.data.libraries) for id_ in coll}
    bpy.data.batch_remove(after - before)
    os.utime(path)  # newer than the GLB: it is taken for a fresh snapshot


def _everything() -> set:
    return mod("trellis_addon.snapshot_check").all_ids()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("finished", [False, True], ids=["raw", "finished"])
def test_a_crafted_snapshot_is_refused_and_the_glb_imported(result, kind, finished, tmp_path, capsys,
                                                            monkeypatch):
    importer = mod("trellis_addon.importer")
    key = "0123456789ab" if finished else ""
    snap = importer.snapshot_path(result, key)
    write_hostile(snap, kind, tmp_path)
    if kind == "too_big":
        monkeypatch.setattr(mod("trellis_addon.snapshot_check"), "SNAPSHOT_SIZE_FACTOR", 0)
        monkeypatch.setattr(mod("trellis_addon.snapshot_check"), "SNAPSHOT_SLACK", 1024)
    before = _everything()
    objects = importer.import_glb(bpy.context, result, snapshot=True, key=key)
    said = capsys.readouterr().out
    line = next((x for x in said.splitlines() if f"snapshot {os.path.basename(snap)} not used" in x), "")
    assert any(reason in line for reason in REASONS[kind]), said
    assert [o.name for o in objects] == ["geometry_0"], "the GLB's object, imported"
    new = _everything() - before
    names = {id_.name for id_ in new}
    assert not [n for n in names if n.startswith("evil")] and not any(
        isinstance(id_, (bpy.types.Library, bpy.types.Text, bpy.types.Camera)) for id_ in new), names
    assert not objects[0].modifiers and not objects[0].constraints and objects[0].animation_data is None
    assert all(img.packed_file is not None for img in bpy.data.images if img.source == "FILE")
    if not finished:  # the raw snapshot was written again from the import, and is taken next time
        monkeypatch.undo()
        for obj in objects:
            bpy.data.objects.remove(obj)
        again = importer.import_glb(bpy.context, result, snapshot=True)
        assert "not used" not in capsys.readouterr().out
        assert [o.name for o in again] == ["geometry_0"]


def test_the_snapshot_the_import_writes_passes_the_check(result):
    """What the add-on writes itself is never refused (the check is not too strict for a real result)."""
    importer = mod("trellis_addon.importer")
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert os.path.isfile(importer.snapshot_path(result))
    for obj in objects:
        bpy.data.objects.remove(obj)
    again = importer._append_snapshot(bpy.context, importer.snapshot_path(result), result)
    assert [o.name for o in again] == ["geometry_0"] and not bpy.data.libraries


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "too_big"])
def test_a_crafted_snapshot_taken_ahead_is_refused_the_same(result, kind, tmp_path, capsys, monkeypatch):
    """The modal operator's way (importer.preload: the twins appended, then read a tick each where a viewport
    draws textures): nothing is read from a file ahead, and the append refuses the snapshot as above."""
    importer, twins = mod("trellis_addon.importer"), mod("trellis_addon.twins")
    snap = importer.snapshot_path(result)
    write_hostile(snap, kind, tmp_path)
    monkeypatch.setattr(twins, "PRELOAD_BYTES", 0)
    monkeypatch.setattr(twins, "viewports", lambda: {"all"})
    monkeypatch.setattr(twins, "any_viewport", lambda: True)  # the objects loaded ahead too
    check, loads = mod("trellis_addon.snapshot_check"), []
    load = check.load
    monkeypatch.setattr(check, "load", lambda *args, **kw: loads.append(args[0]) or load(*args, **kw))
    before = _everything()
    calls = 0
    while importer.preload(result, owner="job") and calls < 10:
        calls += 1
    assert calls < 10
    assert not [o.name for o in bpy.data.objects if o.use_fake_user], "nothing kept from a refused load"
    assert not [i.name for i in bpy.data.images if i.packed_file is None and i.has_data], "no file read ahead"
    if kind in PICTURE_KINDS:
        assert not [i.name for i in bpy.data.images if i.has_data], "nothing decoded ahead"
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    line = next((x for x in capsys.readouterr().out.splitlines() if "not used" in x), "")
    assert any(reason in line for reason in REASONS[kind]), line
    assert [o.name for o in objects] == ["geometry_0"], "the GLB's object, imported"
    assert loads == [snap], "refused once, ahead: the append does not load it again"
    mod("trellis_addon.ahead").drop("job")
    names = {id_.name for id_ in _everything() - before}
    assert not [n for n in names if n.startswith(("evil", TWIN))] and not bpy.data.libraries, names
    assert all(img.packed_file is not None for img in bpy.data.images if img.source == "FILE")
