"""A history folder may be anyone's (a shared, copied or synced drive), and so may a .blend's objects: the
History panel decodes only small PNG thumbnails that are files of their own entry, and Regenerate and
Variations send only the prepared input of an entry in the results folder, never a file a record names."""
import json
import os
import shutil
import struct
import zlib

import bpy
import numpy as np
import pytest

from conftest import DATA, EXAMPLE_IMAGE, PKG, mod
from test_history import FAST, drawn, entries
from test_runware_operator import runware  # noqa: F401 (fixture)


def png_claiming(side: int) -> bytes:
    """A PNG whose header says side x side RGBA pixels, with one row of data: small on disk, huge decoded."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (side * 4 + 1))) + chunk(b"IEND", b""))


def png_of(side: int) -> bytes:
    """A real side x side PNG of one colour."""
    return mod("backend.png").encode_png(np.full((side, side, 4), (200, 60, 30, 255), np.uint8))


def put(path: str, data: bytes) -> None:
    """Write a file as another program would: a new file under the name (a new inode)."""
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.replace(path + ".new", path)


@pytest.fixture()
def loads(monkeypatch):
    """The paths the History panel's preview collection was asked to load."""
    previews = mod("panels.history")._previews
    asked = []
    real = previews.load
    monkeypatch.setattr(previews, "load", lambda name, path, *a, **k: asked.append(path) or real(name, path, *a, **k),
                        raising=False)
    return asked


def one_entry():
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=3, **FAST)
    [entry] = entries()
    return entry


@pytest.mark.parametrize("thumb,shown", [
    (lambda: png_claiming(16000), False), (lambda: png_of(1025), False), (lambda: png_of(1024), True),
    (lambda: png_of(256), True), (lambda: open(os.path.join(DATA, "cmyk.jpg"), "rb").read(), False),
    (lambda: png_of(64) + b"\0" * (4 << 20), False)], ids=["16000 px", "1025 px", "1024 px", "256 px", "a JPEG",
                                                           "over 4 MiB"])
def test_only_a_small_png_thumbnail_is_loaded(scene, loads, thumb, shown):
    entry = one_entry()
    put(os.path.join(entry.folder, "thumb.png"), thumb())
    icon = mod("panels.history").thumbnail(entry)  # 0 in background Blender even when loaded (no icons)
    assert bool(loads) == shown and (entry.id in mod("panels.history")._previews) == shown
    assert shown or icon == 0


@pytest.mark.parametrize("link", ["thumb.png", "entry folder"])
def test_a_thumbnail_behind_a_link_is_not_loaded(scene, loads, tmp_path, link):
    entry = one_entry()
    outside = tmp_path / "outside"
    outside.mkdir()
    picture = outside / "picture.png"
    picture.write_bytes(png_of(64))
    if link == "thumb.png":
        os.remove(os.path.join(entry.folder, "thumb.png"))
        os.symlink(picture, os.path.join(entry.folder, "thumb.png"))
    else:
        moved = str(outside / entry.id)
        shutil.move(entry.folder, moved)
        os.symlink(moved, entry.folder)
        [entry] = entries()
        assert entry.state == "done" and os.path.islink(entry.folder)
    assert mod("panels.history").thumbnail(entry) == 0 and loads == []


def test_a_broken_entry_shows_no_thumbnail(scene, loads):
    entry = one_entry()
    with open(os.path.join(entry.folder, "record.json"), "r+") as f:
        f.truncate(40)
    [entry] = entries()
    assert entry.state == "broken" and os.path.isfile(os.path.join(entry.folder, "thumb.png"))
    assert any("broken" in (text or "") for text in drawn(entry))
    assert loads == [] and entry.id not in mod("panels.history")._previews


def test_a_redraw_reads_no_header_until_the_file_changes(scene, loads, monkeypatch):
    panel, header = mod("panels.history"), mod("backend.image_header")
    read = []
    real = header.png_size_of
    monkeypatch.setattr(header, "png_size_of", lambda f: read.append(f.name) or real(f))
    entry = one_entry()
    first = panel.thumbnail(entry)
    assert panel.thumbnail(entry) == first and len(read) == 1 and len(loads) == 1
    put(os.path.join(entry.folder, "thumb.png"), png_claiming(16000))
    assert panel.thumbnail(entry) == 0 and entry.id not in panel._previews, "the old picture goes too"
    assert panel.thumbnail(entry) == 0 and len(read) == 2 and len(loads) == 1


def secret_picture(folder) -> np.ndarray:
    """A picture of the user's that no history entry holds: a red square on transparent ground."""
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[16:48, 16:48] = (220, 20, 20, 255)
    folder.mkdir(exist_ok=True)
    (folder / "secret.png").write_bytes(mod("backend.png").encode_png(rgba))
    np.save(folder / "input_rgba.npy", rgba)
    return rgba


@pytest.mark.parametrize("operator", ["regenerate", "variations"])
@pytest.mark.parametrize("where", ["image outside", "job folder outside", "entry folder a link out",
                                   "prepared input a link out"])
def test_a_record_never_sends_a_file_outside_its_history_entry(runware, tmp_path, where, operator):  # noqa: F811
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", seed=31) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    record = json.loads(obj["trellis2"])
    outside = tmp_path / "outside"
    secret_picture(outside)
    root = mod("trellis_addon.prefs").jobs_root()
    if where == "image outside":
        record.update(job_folder=str(outside), image=str(outside / "secret.png"))
    elif where == "job folder outside":
        record.update(job_folder=str(outside))
    elif where == "entry folder a link out":
        os.symlink(outside, os.path.join(root, "shared"))
        record.update(job_folder=os.path.join(root, "shared"))
    else:
        prepared = os.path.join(record["job_folder"], "input_rgba.npy")
        os.remove(prepared)
        os.symlink(outside / "input_rgba.npy", prepared)
    obj["trellis2"] = json.dumps(record)
    sent = len(runware.requests)
    with pytest.raises(RuntimeError, match="history entry|History entry"):
        getattr(bpy.ops.trellis, operator)()
    assert runware.requests[sent:] == [], "nothing was sent"
    assert runware.submits == 1 and runware.uploads == 1


def test_variations_send_the_prepared_input_of_the_entry_in_the_results_folder(runware, tmp_path):  # noqa: F811
    """The picture the result was made from is gone and the results folder moved (another drive, a copied
    project): the entry of the same name in the results folder is what Variations send."""
    picture = str(tmp_path / "picture.png")
    shutil.copy(EXAMPLE_IMAGE, picture)
    assert bpy.ops.trellis.generate(image=picture, backend="runware", seed=31) == {"FINISHED"}
    os.remove(picture)
    prefs = bpy.context.preferences.addons[PKG].preferences
    shutil.move(prefs.output_dir, str(tmp_path / "moved"))
    prefs.output_dir = str(tmp_path / "moved")
    assert bpy.ops.trellis.variations(count=1) == {"FINISHED"}
    assert runware.submits == 2 and runware.uploads == 2
    assert len(set(runware.uploaded.values())) == 1, "the same picture both times"
    new = json.loads(bpy.context.view_layer.objects.active["trellis2"])
    assert new["seed"] != 31 and new["image"] == picture
    assert os.path.dirname(new["job_folder"]) == str(tmp_path / "moved")
