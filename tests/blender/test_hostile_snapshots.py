"""A snapshot .blend beside a result's GLB is appended instead of importing the GLB (raw or finished). A
history folder is outside data: another process or a person may have put any .blend there, and a crafted
.blend can hang or crash the Blender that opens it before anything it holds could be checked. So a snapshot
is opened only where its signature verifies (signing.py): each crafted snapshot here is never opened, the GLB
is imported instead and the snapshot written and signed anew; nothing of the crafted one is in the file."""
import json
import os
import secrets
import struct
import threading
import time
import zlib

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod
from servers.base import png_head

TWIN = "trellis2_packed"  # the name earlier versions gave an image's packed twin in a snapshot

KINDS = ["modifier", "constraint", "driver", "camera", "external_image", "image_sequence", "packed_sequence",
         "twin_missing", "twin_reads_a_file", "script_node", "ies_external", "linked", "linked_fifo",
         "deep_properties", "zstd_bomb", "bad_qa", "bad_role", "many_objects", "pixel_bomb", "twin_pixel_bomb",
         "pixels_together", "not_a_picture", "generated_huge", "many_images"]


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
    elif kind == "packed_sequence":  # packed, yet it decodes numbered files elsewhere
        image = _packed(tmp_path, png(8, 8), "evil_sequence")
        image.source = "SEQUENCE"
        _material_with(obj, "ShaderNodeTexImage").image = image
    elif kind == "ies_external":
        node = _material_with(obj, "ShaderNodeTexIES")
        node.mode, node.filepath = "EXTERNAL", EXAMPLE_IMAGE
    elif kind == "deep_properties":  # Blender's reader recurses once per level: it crashes
        obj["evil"] = {}
        group = obj["evil"]
        for _ in range(100_000):
            group["a"] = {}
            group = group["a"]
    elif kind == "zstd_bomb":  # a few hundred kB on disk, hundreds of MB once read
        mesh = obj.data
        mesh.vertices.add(4_000_000)
    elif kind == "script_node":
        node = _material_with(obj, "ShaderNodeScript")
        node.mode, node.script = "INTERNAL", bpy.data.texts.new("evil.osl")
    elif kind in ("linked", "linked_fifo"):
        other = str(tmp_path / "other.blend")
        bpy.data.libraries.write(other, {obj.data}, fake_user=True)
        with bpy.data.libraries.load(other, link=True) as (src, dst):
            dst.meshes = list(src.meshes)
        obj.data = dst.meshes[0]
        if kind == "linked_fifo":  # opening the library blocks until something writes to it: never
            bpy.data.libraries[0].filepath = str(tmp_path / "fifo.blend")
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
    bpy.data.libraries.write(path, ids, path_remap="ABSOLUTE" if kind == "linked" else "NONE", fake_user=False,
                             compress=kind == "zstd_bomb")
    after = {id_ for coll in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.images,
                              bpy.data.texts, bpy.data.cameras, bpy.data.libraries) for id_ in coll}
    bpy.data.batch_remove(after - before)
    os.utime(path)  # newer than the GLB: it is taken for a fresh snapshot


def _everything() -> set:
    return mod("trellis_addon.landing.check").all_ids()


def opened(monkeypatch) -> list:
    """The snapshots the add-on opens from now on (its one way of opening one: the landing's append)."""
    landing, found = mod("trellis_addon.landing"), []
    load = landing._load
    monkeypatch.setattr(landing, "_load", lambda path: found.append(path) or load(path))
    return found


class FifoWatch:
    """Notes whether anything opens the FIFO for reading (Blender following a crafted library path would block
    there for ever): a writer that opens it without blocking succeeds only while a reader has it open, and
    its closing lets that reader go on, so a broken check fails the test instead of hanging it."""

    def __init__(self, path: str):
        os.mkfifo(path)
        self.path, self.opened, self.running = path, False, True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while self.running:
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
                self.opened = True
            except OSError:  # ENXIO: no reader
                pass
            time.sleep(0.01)

    def stop(self) -> bool:
        self.running = False
        self.thread.join()
        return self.opened


def land_and_check(result, snap, key, before, capsys) -> list:
    """import_glb as a script or the CLI calls it (the snapshot verified here): the GLB's object imported,
    one line saying why the snapshot was not opened, nothing of it in the file."""
    importer = mod("trellis_addon.importer")
    objects = importer.import_glb(bpy.context, result, snapshot=True, key=key)
    said = capsys.readouterr().out
    assert f"snapshot {os.path.basename(snap)} not opened" in said, said
    assert [o.name for o in objects] == ["geometry_0"], "the GLB's object, imported"
    names = {id_.name for id_ in _everything() - before}
    assert not [n for n in names if n.startswith("evil")] and not bpy.data.libraries and not bpy.data.texts, names
    assert not objects[0].modifiers and not objects[0].constraints and objects[0].animation_data is None
    return objects


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("finished", [False, True], ids=["raw", "finished"])
def test_a_crafted_snapshot_is_never_opened_and_the_glb_imported(result, kind, finished, tmp_path, capsys,
                                                                monkeypatch):
    importer = mod("trellis_addon.importer")
    key = "0123456789ab" if finished else ""
    snap = importer.snapshot_path(result, key)
    write_hostile(snap, kind, tmp_path)
    fifo = FifoWatch(str(tmp_path / "fifo.blend")) if kind == "linked_fifo" else None
    found = opened(monkeypatch)
    before = _everything()
    try:
        objects = land_and_check(result, snap, key, before, capsys)
    finally:
        reached = fifo is not None and fifo.stop()
    assert found == [] and not reached, "the crafted snapshot was opened"
    if not finished:  # the raw snapshot was written again from the import, signed, and is taken next time
        for obj in objects:
            bpy.data.objects.remove(obj)
        again = importer.import_glb(bpy.context, result, snapshot=True)
        assert "not opened" not in capsys.readouterr().out and found == [snap]
        assert [o.name for o in again] == ["geometry_0"]


@pytest.mark.parametrize("how", ["another key", "another file's signature", "renamed"])
def test_a_signature_that_is_not_this_files_is_refused(result, how, tmp_path, capsys, monkeypatch):
    """A crafted snapshot with a signature beside it: one made with a key of the attacker's, one copied from a
    genuine snapshot of the user's, or a genuine signed snapshot moved to another result's name."""
    importer, signing = mod("trellis_addon.importer"), mod("trellis_addon.signing")
    snap = importer.snapshot_path(result)
    if how == "renamed":
        importer.import_glb(bpy.context, result, snapshot=True, key="")
        bpy.ops.wm.read_homefile(use_empty=True)
        other = importer.snapshot_path(result, "0123456789ab")
        os.replace(snap, other)
        os.replace(signing.signature_path(snap), signing.signature_path(other))
        snap, key = other, "0123456789ab"
    else:
        key = ""
        write_hostile(snap, "driver", tmp_path)
        if how == "another key":
            private = str(tmp_path / "private.blend")
            os.replace(snap, private)
            signing.place_signed(private, snap, secrets.token_bytes(32))
        else:
            genuine = tmp_path / "genuine.glb"
            genuine.write_bytes(open(result, "rb").read())
            importer.import_glb(bpy.context, str(genuine), snapshot=True)
            bpy.ops.wm.read_homefile(use_empty=True)
            os.replace(signing.signature_path(importer.snapshot_path(str(genuine))), signing.signature_path(snap))
        os.utime(snap)
    found = opened(monkeypatch)
    land_and_check(result, snap, key, _everything(), capsys)
    assert found == []


def test_a_snapshot_changed_after_it_was_verified_is_not_opened(result, capsys, monkeypatch):
    """The modal operator's way: verified off the main thread, then appended ticks later; a file replaced
    between (even by a signed one of the same bytes: another inode) is not opened."""
    importer, signing = mod("trellis_addon.importer"), mod("trellis_addon.signing")
    importer.import_glb(bpy.context, result, snapshot=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    snap = importer.snapshot_path(result)
    known, why = signing.verify(snap, mod("trellis_addon.prefs").signing_key())
    assert known is not None and why == ""
    copy = snap + ".copy"
    with open(snap, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    os.replace(copy, snap)
    found = opened(monkeypatch)
    lander = mod("trellis_addon.landing").Landing(snap, known)
    assert lander.tick() is True and lander.tick() is False, "refused in the append's tick"
    objects = importer.import_glb(bpy.context, result, snapshot=True, verified={snap: known}, landing=lander)
    assert "changed since it was verified" in capsys.readouterr().out
    assert [o.name for o in objects] == ["geometry_0"] and found == []


def test_the_snapshot_the_import_writes_passes_the_check(result):
    """What the add-on writes itself is never refused (the check is not too strict for a real result)."""
    importer = mod("trellis_addon.importer")
    objects = importer.import_glb(bpy.context, result, snapshot=True)
    assert os.path.isfile(importer.snapshot_path(result))
    for obj in objects:
        bpy.data.objects.remove(obj)
    known = mod("trellis_addon.signing").verify(importer.snapshot_path(result),
                                                mod("trellis_addon.prefs").signing_key())[0]
    again, _ = mod("trellis_addon.landing").Landing(importer.snapshot_path(result), known).take()
    assert [o.name for o in again] == ["geometry_0"] and not bpy.data.libraries


@pytest.mark.parametrize("kind", ["packed_sequence", "ies_external", "external_image", "script_node", "modifier"])
def test_what_a_signed_snapshot_brings_is_still_checked(result, kind, tmp_path):
    """Defence in depth: a snapshot signed with the user's key (a shared key leaked, say) that holds what the
    background Blender never writes is refused after the append, everything it brought removed again."""
    importer, signing = mod("trellis_addon.importer"), mod("trellis_addon.signing")
    snap = importer.snapshot_path(result)
    private = str(tmp_path / "private.blend")
    write_hostile(private, kind, tmp_path)
    key = mod("trellis_addon.prefs").signing_key()
    signing.place_signed(private, snap, key)
    before = _everything()
    with pytest.raises(RuntimeError):
        mod("trellis_addon.landing").Landing(snap, signing.verify(snap, key)[0]).take()
    assert not [i.name for i in _everything() - before], "nothing it brought stays"
