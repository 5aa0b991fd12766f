# Renders the bundled example image: a toy mushroom on a transparent background (Cycles, CPU).
import bpy, math, sys
out = sys.argv[-1]
bpy.ops.wm.read_factory_settings(use_empty=True)
sc = bpy.context.scene
def mat(name, color, rough=0.5, metal=0.0):
    m = bpy.data.materials.new(name); m.use_nodes = True
    b = m.node_tree.nodes["Principled BSDF"]; b.inputs["Base Color"].default_value = (*color, 1)
    b.inputs["Roughness"].default_value = rough; b.inputs["Metallic"].default_value = metal
    return m
bpy.ops.mesh.primitive_cylinder_add(vertices=48, radius=0.32, depth=1.0, location=(0, 0, 0.5))
stem = bpy.context.object; stem.data.materials.append(mat("stem", (0.85, 0.78, 0.62), 0.7))
bpy.ops.object.shade_smooth()
bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32, radius=1.0, location=(0, 0, 0.95))
cap = bpy.context.object; cap.scale = (1, 1, 0.62); cap.data.materials.append(mat("cap", (0.75, 0.06, 0.04), 0.35))
bpy.ops.object.shade_smooth()
for i, (az, el) in enumerate([(0.3, 0.5), (-0.5, 0.7), (0.9, 0.3), (-1.1, 0.35), (0.0, 1.2), (0.6, 0.95), (-0.2, 0.25)]):
    x = math.sin(az) * math.cos(el); y = -math.cos(az) * math.cos(el); z = math.sin(el)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.11, location=(x, y * 1.0, 0.95 + z * 0.62))
    d = bpy.context.object; d.scale = (1, 1, 0.45); d.data.materials.append(mat("dot", (0.95, 0.93, 0.88), 0.6))
cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam")); sc.collection.objects.link(cam)
cam.location = (0, -5.2, 2.2); cam.rotation_euler = (math.radians(74), 0, 0); sc.camera = cam
cam.data.lens = 75
sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN")); sc.collection.objects.link(sun)
sun.data.energy = 3.5; sun.rotation_euler = (math.radians(55), math.radians(0), math.radians(-35))
world = bpy.data.worlds.new("w"); sc.world = world; world.use_nodes = True
world.node_tree.nodes["Background"].inputs[1].default_value = 0.8
sc.render.engine = "CYCLES"; sc.cycles.samples = 48; sc.cycles.use_denoising = False
sc.render.film_transparent = True; sc.render.resolution_x = 768; sc.render.resolution_y = 768
sc.render.image_settings.color_mode = "RGBA"; sc.render.filepath = out
bpy.ops.render.render(write_still=True)
