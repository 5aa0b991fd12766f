"""The baked low-poly: `<name>_low`, decimated from the result, its own UVs (Smart UV Project), and base
colour, tangent-space normal, roughness and metallic baked from the dense result with Cycles (selected to
active, the cage extruded by a fraction of the size) into images on a material `<name>_low`.

Needs a context with a scene and a view layer holding the result (Smart UV Project and the bake are
operators; no window: they run in `blender -b` and the bpy module). Cycles bakes on the CPU unless the
scene says otherwise. Normals come out in Cycles' tangent convention: +X right, +Y up (OpenGL, as glTF
wants). Metallic has no bake pass: it is baked as emission, the dense materials' Metallic input wired into
their emission for that pass and restored after.
"""
from __future__ import annotations

import bpy

from .common import mesh_objects, triangle_count
from .lods import decimated_copy, remove_objects
from .transform import world_bounds

# channel -> (bake type, colour space, Principled input)
PASSES = (("basecolor", "DIFFUSE", "sRGB", "Base Color"), ("normal", "NORMAL", "Non-Color", "Normal"),
          ("roughness", "ROUGHNESS", "Non-Color", "Roughness"), ("metallic", "EMIT", "Non-Color", "Metallic"))
LABELS = {"basecolor": "Baking base colour", "normal": "Baking normal map", "roughness": "Baking roughness",
          "metallic": "Baking metallic"}


def _low_material(name: str, size: int):
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True  # always on from 5.0
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    images = {}
    for i, (channel, _kind, space, socket) in enumerate(PASSES):
        image = bpy.data.images.new(f"{name}_{channel}", size, size, alpha=False)
        image.colorspace_settings.name = space
        node = nodes.new("ShaderNodeTexImage")
        node.name, node.image, node.location = channel, image, (-700, 300 - 300 * i)
        if channel == "normal":
            normal_map = nodes.new("ShaderNodeNormalMap")
            normal_map.location = (-300, -300)
            links.new(node.outputs["Color"], normal_map.inputs["Color"])
            links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
        else:
            links.new(node.outputs["Color"], bsdf.inputs[socket])
        images[channel] = image
    return mat, images


def _unwrap(context, obj) -> None:
    mesh = obj.data
    while mesh.uv_layers:
        mesh.uv_layers.remove(mesh.uv_layers[0])
    mesh.uv_layers.new(name="UVMap")
    _select(context, [obj], obj)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project(island_margin=0.01)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")


def _select(context, objects, active) -> None:
    for obj in context.view_layer.objects:
        obj.select_set(obj in objects)
    context.view_layer.objects.active = active


class _MetallicAsEmission:
    """While active: each dense material's Metallic drives its emission (strength 1), colour cut off."""

    def __init__(self, materials):
        self.materials, self.saved = materials, []

    def __enter__(self):
        for mat in self.materials:
            tree = mat.node_tree
            for bsdf in (n for n in tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled"):
                color, strength, metal = (bsdf.inputs[k] for k in ("Emission Color", "Emission Strength", "Metallic"))
                self.saved.append((tree, color, strength, [lk.from_socket for lk in color.links],
                                   tuple(color.default_value), strength.default_value))
                for link in list(color.links):
                    tree.links.remove(link)
                if metal.links:
                    tree.links.new(metal.links[0].from_socket, color)
                else:
                    color.default_value = (metal.default_value,) * 3 + (1.0,)
                strength.default_value = 1.0
        return self

    def __exit__(self, *exc):
        for tree, color, strength, sources, value, power in self.saved:
            for link in list(color.links):
                tree.links.remove(link)
            for source in sources:
                tree.links.new(source, color)
            color.default_value, strength.default_value = value, power


class _ImagesUnlinked:
    """While active: the low material's image nodes feed nothing, so Cycles does not read the images it
    bakes into ("Circular dependency for image ..."); linked again after."""

    def __init__(self, material):
        self.tree, self.links = material.node_tree, []

    def __enter__(self):
        for link in [lk for lk in self.tree.links if lk.from_node.bl_idname == "ShaderNodeTexImage"]:
            self.links.append((link.from_socket, link.to_socket))
            self.tree.links.remove(link)
        return self

    def __exit__(self, *exc):
        for from_socket, to_socket in self.links:
            self.tree.links.new(from_socket, to_socket)


def _saved_settings(scene) -> dict:
    bake = scene.render.bake
    return {(scene.render, "engine"): scene.render.engine, (scene.cycles, "samples"): scene.cycles.samples,
            (scene.cycles, "device"): scene.cycles.device, (scene.cycles, "use_denoising"): scene.cycles.use_denoising,
            (bake, "margin"): bake.margin}


def _bake_passes(material, extrusion: float, margin: int, dense_materials, progress) -> None:
    """Each of PASSES into its image node of the low material (made active), selected to active."""
    for step, (channel, kind, _space, _socket) in enumerate(PASSES):
        if progress:
            progress(LABELS[channel], step / len(PASSES))
        material.node_tree.nodes.active = material.node_tree.nodes[channel]
        options = dict(type=kind, use_selected_to_active=True, cage_extrusion=extrusion,
                       max_ray_distance=extrusion * 4, use_clear=True, margin=margin)
        if kind == "DIFFUSE":
            options["pass_filter"] = {"COLOR"}
        if kind == "NORMAL":
            options.update(normal_space="TANGENT", normal_r="POS_X", normal_g="POS_Y", normal_b="POS_Z")
        if kind == "EMIT":
            with _MetallicAsEmission(dense_materials):
                bpy.ops.object.bake(**options)
        else:
            bpy.ops.object.bake(**options)


def bake_low_poly(context, objects, name: str, faces: int, texture_size: int, collection,
                  samples: int = 16, progress=None) -> tuple:
    """Make `<name>_low` in `collection` with at most ~`faces` triangles and baked textures of
    texture_size². Returns (object, material, triangles). Everything it made is removed if it fails."""
    dense = mesh_objects(objects)
    source = dense[0]
    total = sum(triangle_count(o.data) for o in dense)
    low = decimated_copy(source, f"{name}_low", min(1.0, faces / max(total, 1)), collection)
    material, images = None, {}
    scene = context.scene
    saved = _saved_settings(scene)
    selection = [o for o in context.view_layer.objects if o.select_get()], context.view_layer.objects.active
    try:
        _unwrap(context, low)
        material, images = _low_material(f"{name}_low", texture_size)
        low.data.materials.clear()
        low.data.materials.append(material)
        scene.render.engine = "CYCLES"
        scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", samples, False
        scene.render.bake.margin = max(2, texture_size // 128)
        lo, hi = world_bounds(dense)
        extrusion = max(hi - lo) * 0.02
        _select(context, dense + [low], low)
        dense_materials = {m for o in dense for m in o.data.materials if m is not None and m.node_tree}
        with _ImagesUnlinked(material):
            _bake_passes(material, extrusion, scene.render.bake.margin, dense_materials, progress)
        for image in images.values():
            image.pack()
    except Exception:
        remove_objects([low])
        if material is not None:
            bpy.data.materials.remove(material)
        for image in images.values():
            bpy.data.images.remove(image)
        raise
    finally:
        for (owner, attr), value in saved.items():
            setattr(owner, attr, value)
        if all(o.name in context.view_layer.objects for o in selection[0]):
            _select(context, selection[0], selection[1])
    return low, material, triangle_count(low.data)
