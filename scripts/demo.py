"""Headless demo: build and install the extension, generate from an image, write .glb, .blend and a render.

Usage: python scripts/demo.py [IMAGE] [--out DIR] [--backend preview] [--seed N]
Run with a Python that has the `bpy` module (scripts/setup_and_run.sh makes one).
"""
import argparse
import importlib
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=os.path.join(ROOT, "examples", "mushroom.png"))
    parser.add_argument("--out", default=os.path.join(ROOT, "out"))
    parser.add_argument("--backend", default="preview")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples of the preview render")
    return parser.parse_args()


def install_extension(bpy) -> None:
    build = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_extension.py")],
                           check=True, capture_output=True, text=True)
    zip_path = build.stdout.strip().splitlines()[-1]
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    print(f"installed {zip_path}")


def stage_scene(bpy, obj) -> None:
    """Camera, lights and floor for a three-quarter view of the result."""
    from mathutils import Vector
    scene = bpy.context.scene
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    lo, hi = Vector(map(min, *corners)), Vector(map(max, *corners))
    center, size = (lo + hi) / 2, max(hi - lo)
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    direction = Vector((0.55, -1.0, 0.45)).normalized()
    cam.location = center + direction * size * 2.6
    cam.rotation_euler = (center - cam.location).to_track_quat("-Z", "Y").to_euler()
    cam.data.lens = 50
    scene.camera = cam
    for name, energy, rot in (("Key", 3.0, (50, 0, 30)), ("Fill", 1.0, (60, 0, -120))):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        light.data.energy = energy
        light.rotation_euler = tuple(math.radians(a) for a in rot)
        scene.collection.objects.link(light)
    bpy.ops.mesh.primitive_plane_add(size=size * 60, location=(center.x, center.y, lo.z))
    world = bpy.data.worlds.new("World")
    world.color = (0.6, 0.62, 0.66)
    scene.world = world


def render(bpy, path: str, samples: int) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"  # runs on the CPU with no display, unlike Eevee/Workbench
    scene.cycles.samples = samples
    scene.cycles.use_denoising = True
    scene.render.resolution_x = scene.render.resolution_y = 640
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)


def main() -> int:
    args = parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    # A private Blender user folder: the demo never touches your real Blender preferences.
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(out, ".blender-user"))
    import bpy

    install_extension(bpy)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.trellis.generate(image=os.path.abspath(args.image), backend=args.backend.lower(), seed=args.seed)
    obj = bpy.context.view_layer.objects.active
    record = json.loads(obj["trellis2"])
    name = obj.name
    glb_path = os.path.join(out, f"{name}.glb")
    addon = "bl_ext.user_default.trellis2.trellis_addon"
    importlib.import_module(f"{addon}.finish").export([obj], glb_path)  # the finished result, glTF exporter
    quality = importlib.import_module(f"{addon}.finishing").qa_line(record["qa"][record["index"]])
    stage_scene(bpy, obj)
    png_path = os.path.join(out, f"{name}.png")
    render(bpy, png_path, args.samples)
    blend_path = os.path.join(out, f"{name}.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend_path)
    faces = len(obj.data.polygons)
    print(f"\nTRELLIS demo ({record['backend']} backend, seed {record['seed']}, {faces} faces; {quality}):")
    for path in (glb_path, blend_path, png_path):
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
