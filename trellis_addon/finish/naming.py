"""Names after the image: object and mesh `<name>`, material `<name>`, images `<name>_<channel>`, with the
channel read from where the glTF importer's node setup feeds each image."""
from __future__ import annotations

import bpy

from .common import mesh_objects, roots as top_level

# Principled BSDF (and glTF settings group) inputs -> channel word
_SOCKETS = {"Base Color": "basecolor", "Alpha": "alpha", "Metallic": "metallic", "Roughness": "roughness",
            "Normal": "normal", "Emission Color": "emissive", "Emission": "emissive", "Occlusion": "occlusion",
            "Specular Tint": "specular", "Specular IOR Level": "specular", "Transmission Weight": "transmission"}


def _fed_inputs(socket, depth: int = 4) -> set[str]:
    """The BSDF/group input names an output socket reaches, through converter nodes (Separate Color,
    Normal Map, Mix ...)."""
    found = set()
    for link in socket.links:
        to = link.to_node
        if to.bl_idname in ("ShaderNodeBsdfPrincipled", "ShaderNodeGroup") and link.to_socket.name in _SOCKETS:
            found.add(link.to_socket.name)
        elif depth:
            for out in to.outputs:
                found |= _fed_inputs(out, depth - 1)
    return found


def channel_of(node) -> str:
    """The channel an Image Texture node feeds: basecolor, normal, metallic_roughness, orm, ..."""
    words = {_SOCKETS[name] for out in node.outputs for name in _fed_inputs(out)}
    if "basecolor" in words:
        words.discard("alpha")
    if {"metallic", "roughness"} <= words:
        return "orm" if "occlusion" in words else "metallic_roughness"
    return "_".join(sorted(words)) or "texture"


_DATA = {"Object": "objects", "Mesh": "meshes", "Material": "materials", "Image": "images"}


def _rename(block, name: str) -> None:
    """Take `name`, moving whatever held it before out of the way (to `<name>.old`)."""
    if block.name == name:
        return
    block.name = name
    if block.name != name:
        holder = getattr(bpy.data, _DATA[type(block).bl_rna.identifier]).get(name)
        if holder is not None:
            holder.name = f"{name}.old"
        block.name = name


def name_result(objects, name: str) -> dict:
    """Rename the result's objects, meshes, materials and images; returns {old name: new name}."""
    done = {}

    def rename(block, new):
        old = block.name
        _rename(block, new)
        if old != block.name:
            done[old] = block.name

    meshes = mesh_objects(objects)
    roots = top_level(objects)
    for i, obj in enumerate(roots + [o for o in objects if o not in roots and o.type != "MESH"]):
        rename(obj, name if i == 0 else f"{name}_{i}")
    materials = []
    for i, obj in enumerate(meshes):
        if obj not in roots:
            rename(obj, f"{name}_part{i}")
        rename(obj.data, obj.name)
        materials += [m for m in obj.data.materials if m is not None and m not in materials]
    for i, mat in enumerate(materials):
        label = name if i == 0 else f"{name}_{i}"
        rename(mat, label)
        if mat.node_tree is None:
            continue
        used = set()
        for node in mat.node_tree.nodes:
            if node.bl_idname == "ShaderNodeTexImage" and node.image is not None and node.image not in used:
                used.add(node.image)
                rename(node.image, f"{label}_{channel_of(node)}")
    return done
