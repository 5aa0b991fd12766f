"""Runware path figures, one run, against the local Runware server (tests/servers):

1. Bytes sent for a 4096² photo-like PNG vs the PNG's own size (goal: at most 1/8).
2. Time from the server's success item to the object in the scene (download + check + import +
   placement) vs bare bpy.ops.import_scene.gltf of the same 500 000-face GLB with 2048² textures.

    .venv/bin/python bench/runware_bytes.py

Without Blender (`--no-blender`, or when bpy is missing) only figure 1 is measured, with numpy
alone: the picture is synthesized, saved with backend/png.py, area-averaged down to 1024² (the
add-on's long-side limit; it downscales with Blender) and sent by the real worker process.

    python bench/runware_bytes.py --no-blender [--size 4096]
"""
import atexit
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "bl_ext.user_default.trellis2"
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")]


def _photo(size: int):
    """A size² RGB picture with smooth shading and fine grain: float RGBA in 0..1, rows bottom to top."""
    import numpy as np
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    rng = np.random.default_rng(0)
    grain = rng.normal(0, 0.02, (size, size)).astype(np.float32)
    px = np.ones((size, size, 4), np.float32)
    px[..., 0] = 0.5 + 0.4 * np.sin(6 * xx + 2 * yy) + grain
    px[..., 1] = 0.4 + 0.3 * np.cos(5 * yy) * xx + grain
    px[..., 2] = 0.3 + 0.2 * yy + grain
    return np.clip(px, 0, 1)


def photo_png(path: str) -> None:
    """The 4096² picture, saved by Blender as PNG."""
    import bpy
    img = bpy.data.images.new("photo", 4096, 4096)
    img.pixels.foreach_set(_photo(4096).ravel())
    img.filepath_raw, img.file_format = path, "PNG"
    img.save()
    bpy.data.images.remove(img)


def photo_pixels(size: int):
    """The same picture as photo_png, as uint8 RGBA, with numpy only."""
    return (_photo(size) * 255 + 0.5).astype("uint8")


def area_downscale(rgba, limit: int = 1024):
    """Box-filter (area average) so the long side is at most `limit` (integer factors only)."""
    import numpy as np
    h, w = rgba.shape[:2]
    f = -(-max(h, w) // limit)
    if f <= 1:
        return rgba
    h2, w2 = h // f, w // f
    blocks = rgba[:h2 * f, :w2 * f].reshape(h2, f, w2, f, rgba.shape[2]).astype(np.float32)
    return (blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)


def bytes_without_blender(size: int) -> int:
    import numpy as np
    from backend import png
    from servers.runware_server import RunwareServer
    from test_worker import read_until, send, start_worker
    work = tempfile.mkdtemp(prefix="trellis-rw-bench-")
    full = photo_pixels(size)
    png_size = len(png.encode_png(full[..., :3]))  # opaque: saved as RGB, like Blender's PNG saver
    small = area_downscale(full)
    rgba_path = os.path.join(work, "input_rgba.npy")
    np.save(rgba_path, small)
    with RunwareServer(api_key="bench-key") as server:
        server.polls_to_finish = 0
        proc = start_worker()
        send(proc, "job", id="bench", backend="runware", input={"rgba": rgba_path, "name": "photo"},
             settings={"seed": 1}, output_dir=os.path.join(work, "out"),
             options={"base_url": server.url, "poll_first": 0.05}, secrets={"api_key": "bench-key"})
        result = read_until(proc, {"result", "error"})[-1]
        proc.stdin.close()
        proc.wait(10)
        if result["type"] != "result":
            print(f"job failed: {result}")
            return 1
        sent = sum(r["bytes"] for r in server.requests)
        kinds = ", ".join(f"{r['types'][0]} {r['bytes']}" for r in server.requests)
    print(f"{size}² photo-like PNG (numpy, backend/png.py): {png_size / 1e6:.2f} MB; downscaled to "
          f"{small.shape[1]}x{small.shape[0]}; sent to Runware in all requests: {sent / 1e6:.3f} MB "
          f"= 1/{png_size / sent:.1f} of the file (goal: at most 1/8)")
    print(f"requests (bytes): {kinds}")
    return 0


def install_extension(work: str) -> None:
    """Build the zip with Blender's tool and install it into this process's Blender (BLENDER_USER_RESOURCES
    must point into `work` before bpy is imported)."""
    import bpy
    zip_path = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_extension.py"),
                               "--output-dir", work], check=True, capture_output=True, text=True
                              ).stdout.strip().splitlines()[-1]
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)


def bench_blender(prefix: str, faces: int = 500000, texture: int = 2048):
    """A work folder, this process's Blender with the extension installed and online access on, and a
    big test GLB: (work, glb path, face count, the add-on's queue module, its preferences)."""
    work = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, work, True)  # its GLBs and snapshots take 1-2 GB
    os.environ["BLENDER_USER_RESOURCES"] = os.path.join(work, "user")
    from import_ratio import write_test_glb
    glb_path = os.path.join(work, "big.glb")
    faces = write_test_glb(glb_path, faces, texture)
    import bpy
    install_extension(work)
    queue = importlib.import_module(f"{PKG}.trellis_addon.queue")
    bpy.context.preferences.system.use_online_access = True
    return work, glb_path, faces, queue, bpy.context.preferences.addons[PKG].preferences


def main() -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-blender", action="store_true", help="bytes figure only, with numpy alone")
    parser.add_argument("--size", type=int, default=4096, help="side of the synthetic photo (no-blender mode)")
    args = parser.parse_args()
    if importlib.util.find_spec("bpy") is None:  # not imported here: BLENDER_USER_RESOURCES comes first
        args.no_blender = True
    if args.no_blender:
        sys.path.insert(0, os.path.join(ROOT, "tests", "unit"))
        return bytes_without_blender(args.size)
    from servers.runware_server import RunwareServer
    work, glb_path, faces, jobs, prefs = bench_blender("trellis-rw-bench-")
    import bpy
    photo = os.path.join(work, "photo.png")
    photo_png(photo)
    with RunwareServer(api_key="bench-key", glb=open(glb_path, "rb").read()) as server:
        server.polls_to_finish = 0
        prefs.runware_api_key, prefs.runware_url, prefs.session_cap = "bench-key", server.url, 0.0
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.trellis.generate(image=photo, backend="runware", seed=1)
        sent = sum(r["bytes"] for r in server.requests)
        job = jobs.manager.jobs[-1]
        poll_done = server.success_served_at
        to_scene = job.finished_wall - poll_done
    png_size = os.path.getsize(photo)
    bpy.ops.wm.read_homefile(use_empty=True)
    for block in (bpy.data.meshes, bpy.data.materials, bpy.data.images):
        for item in list(block):
            block.remove(item)
    started = time.perf_counter()
    bpy.ops.import_scene.gltf(filepath=glb_path)
    bare = time.perf_counter() - started
    print(f"4096² PNG photo: {png_size / 1e6:.2f} MB; sent to Runware in all requests: {sent / 1e6:.3f} MB "
          f"= 1/{png_size / sent:.1f} of the file (goal: at most 1/8)")
    print(f"success item -> object in scene: {to_scene:.3f} s (download {os.path.getsize(glb_path) / 1e6:.1f} MB, "
          f"check, import, place); bare import_scene.gltf: {bare:.3f} s; ratio {to_scene / bare:.2f} "
          f"({faces} faces, 2048² textures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
