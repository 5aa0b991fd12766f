"""Per-stage time of finishing a result: a 500 000-face GLB with 2048² textures (bench/import_ratio.py's
write_test_glb, every vertex split as TRELLIS.2's are), imported with Blender's glTF importer, then
trellis_addon.finish's stages one by one: naming, cleanup (weld + loose parts), interior removal, size and
origin, QA, the asset mark (its preview a Workbench render), each LOD, Blender's own preview render for
comparison, and the Cycles bake of a low-poly at 1024² and 2048². Prints a Markdown table.

    .venv/bin/python bench/finish_stages.py [--faces 500000] [--texture 2048] [--bake-faces 20000]
        [--samples 16] [--bakes 1024 2048] [--quick]

--quick: 100 000 faces, 1024² textures, one bake at 512² with 1 sample (about a minute on 2 cores).
"""
import argparse
import importlib
import os
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=500000)
    parser.add_argument("--texture", type=int, default=2048)
    parser.add_argument("--bake-faces", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=16)  # finishing.BAKE_SAMPLES, what jobs bake with
    parser.add_argument("--bakes", type=int, nargs="*", default=[1024, 2048])
    parser.add_argument("--lods", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.faces, args.texture, args.bakes, args.samples = 100000, 1024, [512], 1
    work = tempfile.mkdtemp(prefix="trellis-bench-")
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(work, "user"))
    from import_ratio import write_test_glb
    glb_path = os.path.join(work, "bench.glb")
    faces = write_test_glb(glb_path, args.faces, args.texture)

    import bpy
    # trellis_addon.finish imports nothing outside trellis_addon: load it by path, without the extension
    package = types.ModuleType("bench_addon")
    package.__path__ = [os.path.join(ROOT, "trellis_addon")]
    sys.modules["bench_addon"] = package
    fin = importlib.import_module("bench_addon.finish")
    lods, bake = importlib.import_module("bench_addon.finish.lods"), importlib.import_module("bench_addon.finish.bake")
    from backend import schema

    rows = []

    def timed(label, fn):
        started = time.perf_counter()
        out = fn()
        rows.append((label, time.perf_counter() - started))
        return out

    bpy.ops.wm.read_homefile(use_empty=True)
    timed("glTF import (not finishing)", lambda: bpy.ops.import_scene.gltf(filepath=glb_path))
    obj = bpy.context.view_layer.objects.active or bpy.data.objects[0]
    marks = []
    settings = schema.validate_finish({"remove_interior": True})
    started = time.perf_counter()
    fin.finish([obj], "bench", settings, target_size=1.0, preview_image=os.path.join(ROOT, "examples", "mushroom.png"),
               progress=lambda text, f: marks.append((text, time.perf_counter())))
    marks.append(("end", time.perf_counter()))
    for (text, at), (_, after) in zip(marks, marks[1:]):
        if text != "Finished":
            rows.append((f"finish: {text}", after - at))
    rows.append(("finish: all default stages + interior", time.perf_counter() - started))
    triangles = fin.measure([obj])["triangles"]
    coll = bpy.data.collections.new("bench LODs")
    bpy.context.scene.collection.children.link(coll)
    previous = obj
    for level in range(1, args.lods + 1):
        previous = timed(f"LOD{level} (0.5 of the one before)",
                         lambda p=previous, n=level: lods.decimated_copy(p, f"bench_LOD{n}", 0.5, coll))
    timed("Blender's own asset preview of the result (asset_generate_preview; not used: the asset mark renders "
          "with Workbench)", lambda: obj.asset_generate_preview())
    for size in args.bakes:
        timed(f"bake {size}² ({args.bake_faces} faces, {args.samples} samples, 4 passes)",
              lambda s=size: bake.bake_low_poly(bpy.context, [obj], f"bench{s}", args.bake_faces, s,
                                                bpy.context.scene.collection, args.samples))
    print(f"\n{faces} faces ({triangles} after cleanup), {args.texture}² textures, "
          f"Blender {bpy.app.version_string}, {os.cpu_count()} CPUs\n")
    print("| stage | seconds |\n| --- | ---: |")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} |")
    print(f"\ncommand: {os.path.basename(sys.executable)} bench/finish_stages.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
