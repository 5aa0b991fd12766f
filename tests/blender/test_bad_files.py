"""Nothing a file sends can hurt the user: a history record with a wrong field type is one BROKEN entry,
record paths outside the history are refused, a picture huge in pixels is refused before it is decoded,
16-bit PNGs are sent with the right brightness; the history index and the worker logs stay bounded."""
import json
import math
import os
import shutil
import struct
import time
import zlib

import bpy
import numpy as np
import pytest

from conftest import EXAMPLE_IMAGE, mod
from test_history import FAST, _resume_at_start, drawn, entries


def write_png(path, rgba, bits=8):
    """An RGBA PNG written with zlib (8 or 16 bits a channel)."""
    h, w = rgba.shape[:2]
    kind = ">u2" if bits == 16 else "u1"
    raw = b"".join(b"\0" + row.astype(kind).tobytes() for row in rgba)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, 6, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("field,value", [("created", "yesterday"), ("files", None), ("files", 5), ("seeds", 5),
                                         ("created", math.nan), ("files", ["../../outside.glb"])])
def test_a_bad_record_is_one_broken_entry_and_everything_else_works(scene, field, value):
    for seed in (1, 2):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=seed, **FAST)
    newest, oldest = entries()
    path = os.path.join(newest.folder, "record.json")
    with open(path) as f:
        data = json.load(f)
    data[field] = value
    with open(path, "w") as f:
        json.dump(data, f)
    states = {e.id: e.state for e in entries()}
    assert states == {newest.id: "broken", oldest.id: "done"}
    assert all(drawn(e) for e in entries()), "the History panel draws every entry"
    with pytest.raises(RuntimeError):
        bpy.ops.trellis.history_import(entry=newest.id)
    if not isinstance(value, list):  # a wrong type: the object panel's record is unreadable too
        obj = bpy.context.view_layer.objects.active
        obj["trellis2"] = json.dumps(data)
        assert mod("trellis_addon.record").Record.from_text(obj["trellis2"]) is None
        assert not bpy.ops.trellis.regenerate.poll()
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=1, **FAST) == {"FINISHED"}
    assert json.loads(bpy.context.view_layer.objects.active["trellis2"])["from_cache"] is True, "cache lookup"
    assert mod("trellis_addon.history").history.prune(mod("trellis_addon.prefs").jobs_root(), 1 << 40) == []
    assert mod("trellis_addon.resume").resume_pending() == [] and _resume_at_start() == []


def test_result_paths_outside_the_entry_are_never_imported(scene, tmp_path):
    importer = mod("trellis_addon.importer")
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=8, **FAST)
    [entry] = entries()
    outside = str(tmp_path / "outside.glb")
    shutil.copy(entry.files[0], outside)
    os.symlink(outside, os.path.join(entry.folder, "link.glb"))
    path = os.path.join(entry.folder, "record.json")
    with open(path) as f:
        record = json.load(f)
    for files in (["../../outside.glb"], [outside], ["link.glb"], ["result_0.glb", "../../outside.glb"]):
        with open(path, "w") as f:
            json.dump(dict(record, files=files), f)
        [entry] = entries()
        assert entry.state == "broken" and "outside" in entry.problem, files
        bpy.ops.wm.read_homefile(use_empty=True)
        with pytest.raises(RuntimeError):
            bpy.ops.trellis.history_import(entry=entry.id)
        assert not bpy.data.objects and not os.path.exists(importer.snapshot_path(outside))


def test_a_history_glb_that_would_allocate_10m_vertices_is_never_imported(scene, monkeypatch):
    """A GLB of 396 bytes whose accessor has count 10 000 000 and no bufferView passed the check; Blender's glTF
    importer then made 10M vertices of zeros (+951 MiB). Now the import fails with the reason, and the user's
    Blender never runs the importer on it."""
    from servers.base import MALFORMED_GLBS
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=11, **FAST)
    [entry] = entries()
    with open(entry.files[0], "wb") as f:
        f.write(MALFORMED_GLBS["10M zeros"]())
    bpy.ops.wm.read_homefile(use_empty=True)
    importer, calls = mod("trellis_addon.importer"), []
    monkeypatch.setattr(importer, "import_glb", lambda *args, **kwargs: calls.append(args) or [])
    meshes, objects = len(bpy.data.meshes), len(bpy.data.objects)
    with pytest.raises(RuntimeError, match=r"Import failed: result_0\.glb: .*accessor 0 has no bufferView and a count "
                                           r"of 10000000: the importer would make that many elements of zeros; at most "
                                           r"65536 are accepted"):
        bpy.ops.trellis.history_import(entry=entry.id)
    assert calls == [], "the glTF importer never ran (importer.import_glb runs it)"
    assert (len(bpy.data.meshes), len(bpy.data.objects)) == (meshes, objects) == (0, 0)


def test_delete_never_leaves_the_history_folder(scene, tmp_path):
    bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=9, **FAST)
    [entry] = entries()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "job.json").write_text("{}")
    os.symlink(str(victim), os.path.join(mod("trellis_addon.prefs").jobs_root(), "link"))
    for name in (str(victim), "..", "../victim", "link", entry.folder, "."):
        with pytest.raises(RuntimeError, match="No history entry"):
            bpy.ops.trellis.history_delete(entry=name)
    assert os.path.isfile(victim / "job.json") and os.path.isdir(entry.folder)
    assert bpy.ops.trellis.history_delete(entry=entry.id) == {"FINISHED"} and not os.path.exists(entry.folder)


def huge_png(path, side=12000):
    """A valid small PNG whose header says side x side pixels."""
    write_png(path, np.full((4, 4, 4), 200))
    with open(path, "r+b") as f:
        f.seek(16)
        f.write(struct.pack(">II", side, side))


def test_a_picture_huge_in_pixels_is_refused_before_decoding(scene, tmp_path):
    path = str(tmp_path / "huge.png")
    huge_png(path)
    images = len(bpy.data.images)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"12000 x 12000 pixels \(144\.0 megapixels\).*limit of 64 megapixels"):
        bpy.ops.trellis.generate(image=path, **FAST)
    assert time.perf_counter() - start < 1.0
    assert len(bpy.data.images) == images, "never loaded"
    huge_png(path, side=8000)  # 64 megapixels: at the limit, left to Blender (which finds the data short)
    assert mod("trellis_addon.image_input").image_header.size(path) == (8000, 8000)


def flat_png(path, side, bits):
    """A valid side x side RGBA PNG of one grey (8 or 16 bits a channel), compressed as it is written: a
    16-bit one of 8000 x 8000 pixels is 2 MB on disk and 976.6 MiB decoded into floats."""
    row = b"\0" + (b"\x80\x00" if bits == 16 else b"\x80") * 4 * side
    packer = zlib.compressobj(1)
    data = b"".join(packer.compress(row * 40) for _ in range(side // 40)) + packer.compress(row * (side % 40))

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, bits, 6, 0, 0, 0))
                + chunk(b"IDAT", data + packer.flush()) + chunk(b"IEND", b""))
    return str(path)


DEEP_REFUSED = (r"'deep\.png' is 8000 x 8000 pixels, 16-bit: it decodes to 976\.6 MiB; the limit is "
                r"244\.1 MiB \(64 megapixels at 8 bits, preferences: Max Megapixels\): save it as 8-bit or smaller")


def test_a_deep_picture_is_refused_by_what_it_decodes_to(scene, tmp_path):
    """Blender decodes a 16-bit picture into floats (16 bytes a pixel): at 64 megapixels that is 976.6 MiB, four
    times an 8-bit one's, refused from the header; the 8-bit one and a 16-bit quarter of it still pass."""
    image_input = mod("trellis_addon.image_input")
    deep = flat_png(tmp_path / "deep.png", 8000, 16)
    images = len(bpy.data.images)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=DEEP_REFUSED):
        bpy.ops.trellis.generate(image=deep, **FAST)
    assert time.perf_counter() - start < 1.0
    assert len(bpy.data.images) == images, "never loaded"
    header = image_input.image_header.depth(deep)
    assert (header.bits, header.is_float, header.decoded_bytes) == (16, True, 8000 * 8000 * 16)
    image_input.check_file(flat_png(tmp_path / "flat8.png", 8000, 8))
    image_input.check_file(flat_png(tmp_path / "quarter16.png", 4000, 16))
    with pytest.raises(image_input.InputError, match=r"decodes to 244\.3 MiB; the limit is 244\.1 MiB"):
        image_input.check_file(flat_png(tmp_path / "more16.png", 4001, 16))


@pytest.mark.parametrize("fmt,ext,quality", [("PNG", "png", 90), ("JPEG", "jpg", 90), ("BMP", "bmp", 90),
                                             ("TIFF", "tif", 90), ("OPEN_EXR", "exr", 90), ("WEBP", "webp", 80),
                                             ("WEBP", "webp", 100)])
def test_image_header_reads_what_blender_writes(scene, tmp_path, fmt, ext, quality):
    header = mod("backend.image_header")
    image = bpy.data.images.new("header", 37, 23, alpha=True)
    settings = scene.render.image_settings
    settings.file_format, settings.quality = fmt, quality
    path = str(tmp_path / f"image.{ext}")
    image.save_render(path, scene=scene)
    assert header.size(path) == (37, 23)
    with open(path, "rb") as f:
        head = f.read(40)
    with open(path, "wb") as f:
        f.write(head[:10])  # a cut header: unknown, left to Blender
    assert header.size(path) in (None, (37, 23))


@pytest.mark.parametrize("fmt,ext,bits,deep", [("PNG", "png", "8", (8, False)), ("PNG", "png", "16", (16, True)),
                                               ("TIFF", "tif", "8", (8, False)), ("TIFF", "tif", "16", (16, True)),
                                               ("OPEN_EXR", "exr", "16", (16, True)),
                                               ("OPEN_EXR", "exr", "32", (32, True)), ("JPEG", "jpg", "8", (8, False)),
                                               ("WEBP", "webp", "8", (8, False))])
def test_image_header_reads_the_depth_blender_writes_and_decodes(scene, tmp_path, fmt, ext, bits, deep):
    header = mod("backend.image_header")
    image = bpy.data.images.new("depth", 37, 23, alpha=True, float_buffer=bits != "8")
    settings = scene.render.image_settings
    settings.file_format, settings.color_mode = fmt, "RGB" if fmt == "JPEG" else "RGBA"
    if bits != "8":
        settings.color_depth = bits
    path = str(tmp_path / f"image.{ext}")
    image.save_render(path, scene=scene)
    found = header.depth(path)
    assert (found.width, found.height, found.bits, found.is_float) == (37, 23, *deep)
    loaded = bpy.data.images.load(path)
    assert loaded.size[0] == 37 and loaded.is_float == deep[1], "Blender decodes it as the header says"


def test_16_bit_png_is_as_bright_as_its_8_bit_twin(scene, tmp_path):
    image_input = mod("trellis_addon.image_input")
    ramp = np.zeros((8, 256, 4))
    ramp[..., :3] = np.arange(256)[None, :, None]
    ramp[..., 3] = 255
    write_png(str(tmp_path / "grey8.png"), ramp)
    write_png(str(tmp_path / "grey16.png"), ramp * 257, bits=16)
    eight = image_input.to_rgba8(image_input.resolve(str(tmp_path / "grey8.png")))
    sixteen = image_input.to_rgba8(image_input.resolve(str(tmp_path / "grey16.png")))
    assert bpy.data.images["grey16.png"].is_float
    assert np.abs(eight.astype(int) - sixteen.astype(int)).max() <= 2
    assert abs(float(sixteen[..., :3].mean()) - 127.5) < 1.0


def _synthetic_entry(h, root, i):
    folder = os.path.join(root, f"entry-{i:05d}")
    os.makedirs(folder)
    with open(os.path.join(folder, "result_0.glb"), "wb") as f:
        f.write(b"glTF")
    h.write_json_atomic(os.path.join(folder, "record.json"), {
        "id": str(i), "backend": "preview", "state": "done", "created": 1e9 + i, "files": ["result_0.glb"],
        "seeds": [i], "cache_key": f"key-{i}"})
    return f"key-{i}"


def test_history_index_makes_a_batch_of_cache_lookups_linear(scene, tmp_path):
    """2 000 entries; 50 new entries, each followed by a cache lookup: a full rescan each time (as
    before) against the index."""
    h = mod("trellis_addon.history")
    root = str(tmp_path / "bench")
    keys = [_synthetic_entry(h, root, i) for i in range(2000)]
    index = h.History()
    h.history, shared = index, h.history  # write_json_atomic marks entries of this index
    try:
        assert len(index.entries(root)) == 2000
        start = time.perf_counter()
        for i in range(2000, 2050):
            key = _synthetic_entry(h, root, i)
            assert index.find_cached(root, key).record["seeds"] == [i]
        after = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(2050, 2100):
            key = _synthetic_entry(h, root, i)
            assert any(e.record.get("cache_key") == key for e in h.History.scan(root))
        before = time.perf_counter() - start
    finally:
        h.history = shared
    print(f"\n50 new entries + 50 cache lookups at 2000 entries: full rescans {before:.2f} s, index {after:.3f} s")
    assert index.find_cached(root, keys[0]) is not None
    assert after * 3 < before


def test_worker_logs_are_rotated(scene, tmp_path):
    process = mod("trellis_addon.queue.process")
    log = tmp_path / "worker-pool.log"
    log.write_bytes(b"x" * (process.LOG_MAX_BYTES + 1))
    for _ in range(2):
        worker = process.WorkerProcess(process.python_worker(log_path=str(log))).start()
        worker.close_stdin()
        worker.wait_exit(10.0)
    assert (tmp_path / "worker-pool.log.1").stat().st_size == process.LOG_MAX_BYTES + 1, "one old log kept"
    assert log.stat().st_size < process.LOG_MAX_BYTES, "a small log is written on"
    assert mod("trellis_addon.queue.manager").pool_spec().log_path.endswith("worker-pool.log")
