"""What an appended snapshot may hold: what the background Blender writes and nothing else. Only a snapshot
signed by this user is ever opened (signing.py); this check still runs after each append, so that nothing a
signed file holds can read another file or run anything (a leaked shared key, say)."""
from __future__ import annotations

import json

import bpy

from ..record import QA_PROPERTY, ROLE, ROLES, valid_qa

MOST_OBJECTS = 64  # a result, its parts, LODs and low-poly: a snapshot with more is not ours
OBJECT_TYPES = {"MESH", "EMPTY"}
IMAGE_SOURCES = {"FILE", "GENERATED"}  # a sequence, movie or tiled image reads files beside its own, packed or not
FILE_NODES = {"ShaderNodeScript", "ShaderNodeTexIES", "ShaderNodeTexPointDensity"}  # read a file or another
# object's data of their own (the glTF importer makes none of them)
ID_TYPES = (bpy.types.Object, bpy.types.Mesh, bpy.types.Material, bpy.types.Image, bpy.types.Collection,
            bpy.types.NodeTree)  # what an import and finishing make; a volume, cache file or sound reads files


def id_collections() -> list[str]:
    return [p.identifier for p in bpy.types.BlendData.bl_rna.properties
            if p.type == "COLLECTION" and p.identifier not in ("window_managers", "workspaces", "screens")]


def all_ids() -> set:
    return {id_ for name in id_collections() for id_ in getattr(bpy.data, name)}


def _drivers(id_) -> bool:
    blocks = [id_, getattr(id_, "node_tree", None), getattr(id_, "shape_keys", None)]
    return any(getattr(b, "animation_data", None) is not None and len(b.animation_data.drivers) for b in blocks)


def _valid_qa_text(text) -> bool:
    try:
        return isinstance(text, str) and len(text) < 1 << 16 and valid_qa(json.loads(text))
    except ValueError:
        return False


def problem(new: set, objects: list) -> str:
    """Why appended datablocks are not what the background Blender writes ("" when they are): meshes and
    empties without modifiers, constraints or drivers, packed images, no texts, scripts or links to other
    files."""
    if len(objects) > MOST_OBJECTS:
        return f"{len(objects)} objects"
    for id_ in new:
        kind = type(id_).__name__
        if isinstance(id_, (bpy.types.Text, bpy.types.Library)):
            return f"a {kind} ({id_.name})"
        if id_.library is not None:
            return f"{id_.name} is linked from another file"
        if _drivers(id_):
            return f"drivers on {id_.name}"
        if isinstance(id_, bpy.types.Object):
            if id_.type not in OBJECT_TYPES or len(id_.modifiers) or len(id_.constraints):
                return (f"{id_.name}: {id_.type.lower()}, {len(id_.modifiers)} modifiers, "
                        f"{len(id_.constraints)} constraints")
            if id_.get(ROLE) is not None and id_.get(ROLE) not in ROLES:
                return f"{id_.name} has an unknown role"
            if id_.get(QA_PROPERTY) is not None and not _valid_qa_text(id_.get(QA_PROPERTY)):
                return f"{id_.name}'s measured quality is not one the background Blender writes"
        if isinstance(id_, bpy.types.Image) and (id_.source not in IMAGE_SOURCES or
                                                  (id_.source == "FILE" and id_.packed_file is None)):
            return f"image {id_.name} reads a file ({id_.source.lower()}: {id_.filepath})"
        if not isinstance(id_, ID_TYPES):
            return f"a {kind} ({id_.name})"
        tree = id_ if isinstance(id_, bpy.types.NodeTree) else getattr(id_, "node_tree", None)
        found = next((n.bl_idname for n in tree.nodes if n.bl_idname in FILE_NODES), "") if tree else ""
        if found:
            return f"a {found} node in {id_.name}"
    return ""
