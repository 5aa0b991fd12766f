"""Renders examples/mushroom.png: a toy mushroom on a transparent background (Cycles, CPU).

    blender -b --python examples/make_mushroom.py -- examples/mushroom.png
    .venv/bin/python examples/make_mushroom.py examples/mushroom.png
"""
import math
import sys

import bpy

DOTS = [(0.3, 0.5), (-0.5, 0.7), (0.9, 0.3), (-1.1, 0.35), (0.0, 1.2), (0.6, 0.95), (-0.2, 0.25)]


def material(name, color, roughness=0.5):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1)
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def add(primitive, mat, **kwargs):
    primitive(**kwargs)
    obj = bpy.context.object
    obj.data.materials.append(mat)
    bpy.ops.object.shade_smooth()
    return obj


def main(out):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    add(bpy.ops.mesh.primitive_cylinder_add, material("stem", (0.85, 0.78, 0.62), 0.7),
        vertices=48, radius=0.32, depth=1.0, location=(0, 0, 0.5))
    cap = add(bpy.ops.mesh.primitive_uv_sphere_add, material("cap", (0.75, 0.06, 0.04), 0.35),
              segments=64, ring_count=32, radius=1.0, location=(0, 0, 0.95))
    cap.scale = (1, 1, 0.62)
    dot_mat = material("dot", (0.95, 0.93, 0.88), 0.6)
    for az, el in DOTS:
        x, y, z = math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)
        dot = add(bpy.ops.mesh.primitive_uv_sphere_add, dot_mat, radius=0.11, location=(x, y, 0.95 + z * 0.62))
        dot.scale = (1, 1, 0.45)
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler, cam.data.lens = (0, -5.2, 2.2), (math.radians(74), 0, 0), 75
    scene.camera = cam
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    scene.collection.objects.link(sun)
    sun.data.energy, sun.rotation_euler = 3.5, (math.radians(55), 0, math.radians(-35))
    scene.world = bpy.data.worlds.new("world")
    scene.world.color = (0.8, 0.8, 0.8)
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.use_denoising = 48, False
    scene.render.film_transparent = True
    scene.render.resolution_x = scene.render.resolution_y = 768
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = out
    bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    main(sys.argv[-1])
