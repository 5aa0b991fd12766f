"""The image read off the main thread: in the UI a background Blender reads, checks and downsizes the image
file with Blender's own image code and writes the prepared input and thumbnail, while the job waits in
PREPARING (the main thread only checks that the file exists and reads its header). Every format the
main-thread read accepts gives the same prepared input; what it refuses is refused with the same message,
with nothing sent and no entry left; history still answers a repeated request at no cost; where no
background Blender starts, the image is read on the main thread and the job says so; a background Blender
killed while reading fails that one job and the next works."""
import os
import re
import signal
import struct
import time
import zlib

import bpy
import numpy as np
import pytest

from conftest import DATA, EXAMPLE_IMAGE, mod
from test_bad_files import DEEP_REFUSED, flat_png, huge_png, write_png

FAST = dict(backend="preview", resolution=512, texture_size=1024, decimation_target=100000)


def save(image, path, fmt, scene, **settings):
    """The datablock written by Blender's own writer."""
    render = scene.render.image_settings
    render.file_format = fmt
    for name, value in settings.items():
        setattr(render, name, value)
    image.save_render(path, scene=scene)
    bpy.data.images.remove(image)
    return path


def disc(w, h, alpha=True, float_buffer=False):
    image = bpy.data.images.new("disc", w, h, alpha=alpha, float_buffer=float_buffer)
    y, x = np.mgrid[0:h, 0:w]
    inside = ((x - w / 2) ** 2 + (y - h / 2) ** 2) < (min(w, h) / 3) ** 2
    px = np.zeros((h, w, 4), np.float32)
    px[..., 0], px[..., 1], px[..., 2] = 0.8 * inside, x / w, 0.3
    px[..., 3] = np.where(inside, 1.0, 0.0 if alpha else 1.0)
    image.pixels.foreach_set(px.ravel())
    return image


def palette_png(path):
    """An indexed (palette) PNG, colour type 3, written by hand."""
    w, h = 48, 32
    index = np.zeros((h, w), np.uint8)
    index[8:24, 10:38] = 1
    raw = b"".join(b"\0" + row.tobytes() for row in index)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
                + chunk(b"PLTE", bytes([250, 250, 250, 200, 40, 30])) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))
    return path


def make(kind, tmp_path, scene):
    p = str(tmp_path / kind)
    if kind == "rgba.png":
        return save(disc(64, 48), p, "PNG", scene, color_mode="RGBA")
    if kind == "rgb.jpg":
        return save(disc(64, 48, alpha=False), p, "JPEG", scene, color_mode="RGB", quality=90)
    if kind == "large.png":  # downsized to 1024 on the long side
        return save(disc(1600, 900), p, "PNG", scene, color_mode="RGBA")
    if kind == "tiny.png":
        return save(disc(6, 4, alpha=False), p, "PNG", scene, color_mode="RGB")
    if kind == "half.exr":
        return save(disc(64, 48, float_buffer=True), p, "OPEN_EXR", scene, color_mode="RGBA", color_depth="16")
    if kind == "grey16.png":
        ramp = np.zeros((16, 64, 4))
        ramp[..., :3] = np.arange(64)[None, :, None] * 4 * 257
        ramp[..., 3] = 65535
        write_png(p, ramp, bits=16)
        return p
    if kind == "palette.png":
        return palette_png(p)
    if kind == "webp":
        return save(disc(64, 48), p + ".webp", "WEBP", scene, color_mode="RGBA", quality=90)
    return os.path.join(DATA, kind)  # cmyk.jpg, grey_alpha.png (written by Pillow)


def prepared_in_background(builder, path, folder, colorspace="", source=None):
    """A PREPARING job for the file, handed to the background Blender alone (never started)."""
    queue, history = mod("trellis_addon.queue"), mod("trellis_addon.history")
    os.makedirs(folder, exist_ok=True)
    job = queue.Job(name="t", backend="preview", settings={}, output_dir=folder,
                    rgba_path=os.path.join(folder, history.INPUT), state=queue.PREPARING,
                    source=source or {"path": path, "colorspace": colorspace})
    builder.prepare(job)
    end = time.monotonic() + 60
    while job.state == queue.PREPARING and time.monotonic() < end:
        builder.poll()
        time.sleep(0.01)
    return job


FORMATS = ["rgba.png", "rgb.jpg", "large.png", "tiny.png", "half.exr", "grey16.png", "palette.png", "webp",
           "cmyk.jpg", "grey_alpha.png"]


@pytest.mark.parametrize("kind", FORMATS)
def test_the_background_blender_prepares_every_format_as_the_main_thread_does(builder, scene, tmp_path, kind):
    request, history = mod("trellis_addon.request"), mod("trellis_addon.history")
    path = make(kind, tmp_path, scene)
    here, _, _ = request.read_image(path, keep_image=False)  # the main thread's read
    job = prepared_in_background(builder, path, str(tmp_path / "job"))
    assert job.state == "queued", job.error
    there = np.load(job.rgba_path, allow_pickle=False)
    assert there.dtype == np.uint8 and there.shape == here.shape and max(there.shape[:2]) <= 1024
    assert np.array_equal(there, here)
    assert job.image_sha == history.image_hash(here) and job.cache_key
    assert os.path.getsize(os.path.join(job.output_dir, history.THUMB)) > 0
    with open(builder.worker.log_path, encoding="utf-8", errors="replace") as f:
        assert f"task {job.id}-prepare (prepare) done" in f.read()


def bad(kind, tmp_path, scene):
    p = str(tmp_path / kind)
    if kind == "missing.png":
        return p
    if kind == "empty.png":
        open(p, "wb").close()
    elif kind == "garbage.png":
        with open(p, "wb") as f:
            f.write(os.urandom(4096))
    elif kind == "huge.png":
        huge_png(p)
    elif kind == "blank.png":
        image = bpy.data.images.new("blank", 32, 32, alpha=True)
        image.pixels.foreach_set(np.ones(32 * 32 * 4, np.float32))
        save(image, p, "PNG", scene, color_mode="RGBA")
    return p


@pytest.mark.parametrize("kind", ["missing.png", "empty.png", "garbage.png", "huge.png", "blank.png"])
def test_what_the_main_thread_refused_is_refused_with_the_same_message(builder, scene, tmp_path, kind):
    request, queue = mod("trellis_addon.request"), mod("trellis_addon.queue")
    path = bad(kind, tmp_path, scene)
    keywords = dict(image=path, backend="preview", settings={"seed": 3, "random_seed": False})
    builder.enabled = False
    with pytest.raises(request.RequestError) as refused:
        request.prepare_job(**keywords)
    builder.enabled = True
    root = mod("trellis_addon.prefs").jobs_root()
    before = {n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))}
    try:  # missing, empty and too many pixels: the main thread's header check, nothing started
        job = queue.manager.add(request.prepare_job(**keywords))
    except request.RequestError as exc:
        assert kind in ("missing.png", "empty.png", "huge.png") and str(exc) == str(refused.value)
        return
    assert kind in ("garbage.png", "blank.png") and job.state == "preparing"
    end = time.monotonic() + 60
    while not job.is_finished and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.01)
    assert job.state == "failed" and job.error == str(refused.value) and job.error_code.value == "bad_input"
    assert job.worker is None, "nothing was sent"
    queue.flush_records()
    assert {n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))} <= before, "no entry left"


def test_a_deep_picture_is_refused_by_the_background_blender_before_decoding(builder, scene, tmp_path):
    """A 16-bit 8000 x 8000 PNG handed to the background Blender directly (as a request the main thread passed
    would be): refused from its header with the main thread's message, nothing decoded."""
    path = flat_png(tmp_path / "deep.png", 8000, 16)
    start = time.monotonic()
    job = prepared_in_background(builder, path, str(tmp_path / "job"))
    assert job.state == "failed" and job.error_code.value == "bad_input"
    assert re.search(DEEP_REFUSED, job.error), job.error
    assert time.monotonic() - start < 20 and not os.path.exists(job.rgba_path)


def test_a_repeated_request_is_answered_from_history_without_reading_the_image_again(builder, scene, tmp_path):
    request, queue, image_input = (mod(m) for m in ("trellis_addon.request", "trellis_addon.queue",
                                                     "trellis_addon.image_input"))
    path = str(tmp_path / "mushroom.png")
    with open(EXAMPLE_IMAGE, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    settings = request.resolve_settings(scene.trellis2.to_settings(), dict(FAST, seed=21))
    settings.pop("backend")
    req = request.Request(image=path, backend="preview", settings=settings)
    assert not request.answered_from_cache(req), "not read in this session: asked, never decoded here"
    assert bpy.ops.trellis.generate(image=path, seed=21, **FAST) == {"FINISHED"}
    first = queue.manager.jobs[-1]
    assert first.state == "done" and not first.from_cache
    assert request.answered_from_cache(req), "the background read's hash is remembered"
    again = request.prepare(req)
    assert again.from_cache and again.state == "importing", "answered at once"
    image_input._HASHES.clear()  # a new session: the background Blender reads it, then history answers
    job = queue.manager.add(request.prepare(req))
    assert job.state == "preparing"
    own = job.output_dir
    end = time.monotonic() + 60
    while job.state == "preparing" and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.01)
    assert job.from_cache and job.output_dir == first.output_dir and job.cost == 0.0
    queue.flush_records()
    assert not os.path.exists(own), "the folder made for it is gone"
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # the file changed: read again
    assert not request.answered_from_cache(req)


def test_without_a_background_blender_the_image_is_read_on_the_main_thread(builder, scene, tmp_path, monkeypatch):
    queue_builder = mod("trellis_addon.queue.builder")
    spec = queue_builder.blender_spec()
    monkeypatch.setattr(queue_builder, "blender_spec", lambda: spec.__class__(
        key=("missing",), command=("/nonexistent/blender",), log_path=spec.log_path))
    job = prepared_in_background(builder, EXAMPLE_IMAGE, str(tmp_path / "job"))
    assert job.state == "queued" and job.text == queue_builder.READ_FALLBACK
    assert np.array_equal(np.load(job.rgba_path), mod("trellis_addon.request").read_image(EXAMPLE_IMAGE)[0])
    assert builder.unavailable and not builder.on
    assert mod("trellis_addon.request").background_source(
        mod("trellis_addon.request").Request(image=EXAMPLE_IMAGE, backend="preview")) is None


def test_a_background_blender_killed_while_reading_fails_one_job_and_the_next_works(builder, scene, tmp_path):
    queue = mod("trellis_addon.queue")
    builder._worker()
    os.kill(builder.worker.proc.pid, signal.SIGSTOP)  # it takes the task and never answers
    folder = str(tmp_path / "job")
    os.makedirs(folder)
    job = queue.Job(name="t", backend="preview", settings={}, output_dir=folder,
                    rgba_path=os.path.join(folder, "input_rgba.npy"), state=queue.PREPARING,
                    source={"path": EXAMPLE_IMAGE, "colorspace": ""})
    builder.prepare(job)
    os.kill(builder.worker.proc.pid, signal.SIGKILL)
    end = time.monotonic() + 30
    while not job.is_finished and time.monotonic() < end:
        builder.poll()
        time.sleep(0.01)
    assert job.state == "failed" and "background Blender stopped unexpectedly (exit code -9, memory bound" in job.error
    mod("trellis_addon.queue").flush_records()
    assert not os.path.exists(folder), "nothing was sent: no entry stays"
    assert prepared_in_background(builder, EXAMPLE_IMAGE, str(tmp_path / "next")).state == "queued"


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_the_background_blender_yields_the_cpu_to_the_ui(builder, scene, tmp_path):
    job = prepared_in_background(builder, EXAMPLE_IMAGE, str(tmp_path / "job"))
    assert job.state == "queued"
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    theirs = os.getpriority(os.PRIO_PROCESS, builder.worker.proc.pid)
    assert theirs == min(19, ours + mod("trellis_addon.blend_main").NICENESS)


def autogroup_nice(pid):
    """The nice value of the process's session group, or None where the process is in no group of its own
    (the file is empty: it never left the first session, or the kernel could not make its group; it is
    then scheduled in the root group, each of its threads against the worker's whole group)."""
    with open(f"/proc/{pid}/autogroup") as f:  # "/autogroup-12 nice 0"
        words = f.read().split()
    return int(words[-1]) if words else None


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="Linux's scheduling by session")
def test_the_background_blenders_session_yields_the_cpu_too(builder, scene, tmp_path):
    """The worker has a session of its own; under autogroup scheduling its nice value alone would weigh
    only against its own session, so the UI's Blender and it would share the cores evenly."""
    job = prepared_in_background(builder, EXAMPLE_IMAGE, str(tmp_path / "job"))
    assert job.state == "queued"
    pid = builder.worker.proc.pid
    assert os.getsid(pid) != os.getsid(0), "a session of its own (stopped as a group)"
    niceness = mod("trellis_addon.blend_main").NICENESS
    assert autogroup_nice(pid) == niceness
    ours = autogroup_nice(os.getpid())
    assert ours is None or ours < niceness, "ours is left below it (or in the root group, at nice 0)"


def test_a_datablock_set_to_ignore_its_alpha_reads_the_same_in_the_background(builder, scene, tmp_path):
    request, image_input = mod("trellis_addon.request"), mod("trellis_addon.image_input")
    path = make("rgba.png", tmp_path, scene)
    image = bpy.data.images.load(path)
    image.alpha_mode = "NONE"
    here, _, _ = request.read_image(image)  # the main thread's read of the datablock
    assert (here[..., 3] == 255).all(), "the file's alpha ignored, as the datablock says"
    source = image_input.file_source(image)
    assert source["alpha_mode"] == "NONE"
    job = prepared_in_background(builder, path, str(tmp_path / "job"), source=source)
    assert job.state == "queued", job.error
    assert np.array_equal(np.load(job.rgba_path, allow_pickle=False), here)
    plain = prepared_in_background(builder, path, str(tmp_path / "plain"))
    assert (np.load(plain.rgba_path, allow_pickle=False)[..., 3] < 255).any(), "the file itself has alpha"
