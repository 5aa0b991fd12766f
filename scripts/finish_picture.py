"""The README's Finish picture: the same result as Blender's glTF importer gives it (left) and finished by the
add-on (right: the result, two LODs and a baked low-poly, LODs shown for the picture), rendered with Cycles.

Usage: python scripts/finish_picture.py [IMAGE] [--out examples/finish.png] [--samples 16]
Run with a Python that has the `bpy` module (scripts/setup_and_run.sh makes one). Prints the QA line of
the finished result.
"""
import argparse
import json
import math
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
PKG = "bl_ext.user_default.trellis2"


def label(bpy, text: str, location, size: float):
    curve = bpy.data.curves.new(f"label {text}", "FONT")
    curve.body, curve.size, curve.align_x = text, size, "CENTER"
    obj = bpy.data.objects.new(f"label {text}", curve)
    obj.location = location  # lying on the floor in front of its object
    mat = bpy.data.materials.new("label")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.02, 0.02, 0.02, 1)
    curve.materials.append(mat)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=os.path.join(ROOT, "examples", "mushroom.png"))
    parser.add_argument("--out", default=os.path.join(ROOT, "examples", "finish.png"))
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="trellis-picture-"))
    import bpy
    import importlib

    from demo import install_extension
    from mathutils import Vector

    install_extension(bpy)
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.output_dir = tempfile.mkdtemp(prefix="trellis-picture-jobs-")
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.trellis.generate(image=os.path.abspath(args.image), backend="preview", seed=42, resolution=512,
                             texture_size=1024, decimation_target=100000, lod_levels=2, lod_ratio=0.25,
                             bake_faces=2000, target_size=1.0)
    obj = bpy.context.view_layer.objects.active
    record = json.loads(obj["trellis2"])
    finishing = importlib.import_module(f"{PKG}.trellis_addon.finishing")
    qa = record["qa"][record["index"]]
    print(f"finished: {finishing.qa_line(qa)}")

    # before: the model's GLB as the glTF importer brings it in (origin, size and names as they come)
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=record["files"][0])
    raw = [o for o in bpy.data.objects if o not in before and o.type == "MESH"][0]
    raw_faces = len(raw.data.polygons)
    lods = bpy.data.collections[f"{obj.name} LODs"]
    lods.hide_viewport = lods.hide_render = False
    low = bpy.data.objects[f"{obj.name}_low"]
    row = [raw, obj] + sorted(lods.objects, key=lambda o: o.name) + [low]
    step = 1.35
    for i, item in enumerate(row):
        item.location.x = (i - (len(row) - 1) / 2) * step + (-0.3 if i == 0 else 0.0)
    texts = [f"glTF import\n{raw.name}, {raw_faces:,} faces\norigin at its centre",
             f"finished\n{obj.name}, {qa['triangles']:,} tris\norigin at the base"] + [
        f"{o.name}\n{n:,} tris" for o, n in zip(sorted(lods.objects, key=lambda o: o.name), qa["lod_triangles"])] + [
        f"{low.name}\n{qa['low_triangles']:,} tris, baked"]
    for item, text in zip(row, texts):
        label(bpy, text.replace(",", " "), (item.location.x, -0.75, 0.001), 0.11)

    scene = bpy.context.scene
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = Vector((0.0, -8.0, 3.6))
    cam.rotation_euler = (Vector((0.0, -0.3, 0.3)) - cam.location).to_track_quat("-Z", "Y").to_euler()
    cam.data.lens = 36
    scene.camera = cam
    for name, energy, rot in (("Key", 3.0, (50, 0, 30)), ("Fill", 1.0, (60, 0, -120))):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        light.data.energy, light.rotation_euler = energy, tuple(math.radians(a) for a in rot)
        scene.collection.objects.link(light)
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, 0))
    world = bpy.data.worlds.new("World")
    world.color = (0.6, 0.62, 0.66)
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.use_denoising = args.samples, True
    scene.render.resolution_x, scene.render.resolution_y = 1600, 560
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    scene.render.filepath = os.path.abspath(args.out)
    bpy.ops.render.render(write_still=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
