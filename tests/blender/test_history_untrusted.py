"""A history folder may be anyone's (a shared, copied or synced drive): the History panel decodes only small
PNG thumbnails that are files of their own entry."""
import os
import shutil
import struct
import zlib

import bpy
import numpy as np
import pytest

from conftest import DATA, EXAMPLE_IMAGE, mod
from test_history import FAST, drawn, entries


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
