"""Cache hit figure, one run: Generate -> object in scene when history already answered the same request
(explicit seed), for a 500 000-face GLB with 2048² textures from the Runware test server, and the number
of requests the second Generate sent (goal: at most 1 s, none). Bare import_scene.gltf of the same file
is timed in the same run for scale, and a hit whose saved .blend import is gone (GLB imported again).

    .venv/bin/python bench/cache_hit.py [--rounds 3]
"""
import argparse
import importlib
import os
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "bl_ext.user_default.trellis2"
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from runware_bytes import bench_blender
    from servers.runware_server import RunwareServer
    work, glb_path, faces, jobs, prefs = bench_blender("trellis-cache-bench-")
    import bpy
    image = os.path.join(ROOT, "examples", "mushroom.png")
    hits, bare = [], []
    with RunwareServer(api_key="bench-key", glb=open(glb_path, "rb").read()) as server:
        server.polls_to_finish = 0
        prefs.runware_api_key, prefs.runware_url, prefs.session_cap = "bench-key", server.url, 0.0
        bpy.ops.wm.read_homefile(use_empty=True)
        started = time.perf_counter()
        bpy.ops.trellis.generate(image=image, backend="runware", seed=5)
        first = time.perf_counter() - started
        before = len(server.requests) + len(server.gets)
        for _ in range(args.rounds):
            bpy.ops.wm.read_homefile(use_empty=True)
            started = time.perf_counter()
            bpy.ops.trellis.generate(image=image, backend="runware", seed=5)
            hits.append(time.perf_counter() - started)
            assert jobs.manager.jobs[-1].from_cache, "expected a cache hit"
        sent = len(server.requests) + len(server.gets) - before
        importer = importlib.import_module(f"{PKG}.trellis_addon.importer")
        for path in jobs.manager.jobs[-1].result["files"]:  # as after a Blender upgrade: the GLB only
            os.remove(importer.snapshot_path(path))
        bpy.ops.wm.read_homefile(use_empty=True)
        started = time.perf_counter()
        bpy.ops.trellis.generate(image=image, backend="runware", seed=5)
        from_glb = time.perf_counter() - started
    for _ in range(args.rounds):
        bpy.ops.wm.read_homefile(use_empty=True)
        started = time.perf_counter()
        bpy.ops.import_scene.gltf(filepath=glb_path)
        bare.append(time.perf_counter() - started)
    print(f"first Generate (request, download {os.path.getsize(glb_path) / 1e6:.1f} MB, import): {first:.3f} s")
    print(f"cache hit, Generate -> object in scene: median {statistics.median(hits):.3f} s over {args.rounds} "
          f"(max {max(hits):.3f} s), requests sent: {sent} (goal <= 1 s, 0 requests); bare import_scene.gltf of "
          f"the same file: median {statistics.median(bare):.3f} s ({faces} faces, 2048² textures)")
    print(f"cache hit without the saved import (GLB imported again, e.g. after a Blender upgrade): {from_glb:.3f} s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
