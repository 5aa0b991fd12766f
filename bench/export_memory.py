"""Memory of one `bpy` process that appends a large result, exports it with Blender's glTF exporter and
clears it, round after round (what a batch's own Blender does per result): RSS after each round and the
meshes, materials and images left, so growth from kept data and the exporter's own allocations can be told
apart.

    .venv/bin/python bench/export_memory.py [--faces 200000] [--texture 2048] [--rounds 30]
"""
import argparse
import gc
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200000)
    parser.add_argument("--texture", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--gc", action="store_true", help="collect Python's garbage after each round")
    args = parser.parse_args()
    import bpy
    from servers import meshes

    from backend import glb, png
    work = tempfile.mkdtemp(prefix="trellis-bench-memory-")
    source, snapshot = os.path.join(work, "result.glb"), os.path.join(work, "result.blend")
    made = meshes.dense_glb(glb, png, source, args.faces, args.texture)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=source)
    bpy.data.libraries.write(snapshot, set(bpy.data.objects), fake_user=False, compress=False)
    bpy.ops.wm.read_homefile(use_empty=True)
    print(f"{made['faces']}-face result with {args.texture}² textures; RSS before the first round {rss_mib():.0f} MiB")
    for round_ in range(1, args.rounds + 1):
        with bpy.data.libraries.load(snapshot, link=False) as (src, dst):
            dst.objects = list(src.objects)
        for lib in list(bpy.data.libraries):
            bpy.data.libraries.remove(lib)
        for obj in dst.objects:
            bpy.context.scene.collection.objects.link(obj)
            obj.select_set(True)
        bpy.ops.export_scene.gltf(filepath=os.path.join(work, "out.glb"), use_selection=True, export_format="GLB")
        for obj in list(dst.objects):
            bpy.data.objects.remove(obj, do_unlink=True)
        bpy.data.orphans_purge(do_recursive=True)
        if args.gc:
            gc.collect()
        print(f"round {round_}: RSS {rss_mib():.0f} MiB; left: {len(bpy.data.meshes)} meshes, "
              f"{len(bpy.data.materials)} materials, {len(bpy.data.images)} images", flush=True)


if __name__ == "__main__":
    main()
