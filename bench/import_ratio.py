"""Result-to-scene cost: our import path vs bare bpy.ops.import_scene.gltf on the same GLB.

The GLB: a 500 000-face closed mesh with 2048² base-colour and metallic-roughness textures, written
by the add-on's own GLB writer. Each round imports it once each way into an emptied scene, order
alternating; the figure is the ratio of the medians, measured in one run.

    .venv/bin/python bench/import_ratio.py [--rounds 5] [--faces 500000] [--texture 2048]
"""
import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "bl_ext.user_default.trellis2"


def dense_sphere(faces: int):
    import numpy as np
    n = int((faces / 2) ** 0.5)
    lat = np.linspace(0, np.pi, n + 1)
    lon = np.linspace(0, 2 * np.pi, n + 1)
    lo, la = np.meshgrid(lon, lat)
    pos = np.stack([np.sin(la) * np.cos(lo), np.cos(la), np.sin(la) * np.sin(lo)], -1).reshape(-1, 3) * 0.5
    uv = np.stack([lo / (2 * np.pi), la / np.pi], -1).reshape(-1, 2)
    idx = np.arange((n + 1) * (n + 1)).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tris = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    normals = pos / np.linalg.norm(pos, axis=1, keepdims=True).clip(1e-9)
    return pos.astype(np.float32), normals.astype(np.float32), uv.astype(np.float32), tris.astype(np.uint32)


def write_test_glb(path: str, faces: int, texture: int) -> int:
    import numpy as np
    from backend import glb, png
    pos, normals, uv, tris = dense_sphere(faces)
    rng = np.random.default_rng(0)
    color = rng.integers(0, 255, (texture, texture, 4), dtype=np.uint8)
    color[..., 3] = 255
    mr = np.zeros((texture, texture, 3), np.uint8)
    mr[..., 1] = rng.integers(80, 200, (texture, texture), dtype=np.uint8)
    glb.write_glb(path, pos, normals, uv, tris, png.encode_png(color), png.encode_png(mr), name="bench",
                  alpha_mode="OPAQUE", extras=None)
    return len(tris)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--faces", type=int, default=500000)
    parser.add_argument("--texture", type=int, default=2048)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    work = tempfile.mkdtemp(prefix="trellis-bench-")
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(work, "user"))
    glb_path = os.path.join(work, "bench.glb")
    faces = write_test_glb(glb_path, args.faces, args.texture)

    import bpy
    zip_path = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_extension.py"),
                               "--output-dir", work], check=True, capture_output=True, text=True
                              ).stdout.strip().splitlines()[-1]
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    jobs = importlib.import_module(f"{PKG}.trellis_addon.queue")
    results = importlib.import_module(f"{PKG}.trellis_addon.results")

    def bare():
        bpy.ops.import_scene.gltf(filepath=glb_path)

    def ours():
        job = jobs.Job(name="bench", backend="preview", settings={}, rgba_path="", output_dir=work,
                       image_ref="bench.png", result={"files": [glb_path], "seeds": [1]}, state=jobs.IMPORTING)
        results.import_job(bpy.context, job)

    times = {"bare": [], "ours": []}
    for round_index in range(args.rounds):
        order = (("bare", bare), ("ours", ours)) if round_index % 2 == 0 else (("ours", ours), ("bare", bare))
        for label, fn in order:
            bpy.ops.wm.read_homefile(use_empty=True)
            for block in (bpy.data.meshes, bpy.data.materials, bpy.data.images):
                for item in list(block):
                    block.remove(item)
            started = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - started)
    bare_s, ours_s = statistics.median(times["bare"]), statistics.median(times["ours"])
    print(f"GLB: {faces} faces, {args.texture}² textures, {os.path.getsize(glb_path) / 1e6:.1f} MB")
    print(f"bare import_scene.gltf: median {bare_s:.3f} s  {[round(t, 3) for t in times['bare']]}")
    print(f"our import path:        median {ours_s:.3f} s  {[round(t, 3) for t in times['ours']]}")
    print(f"ratio ours/bare: {ours_s / bare_s:.3f} (goal <= 1.15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
