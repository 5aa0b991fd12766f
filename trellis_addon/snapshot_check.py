"""What a snapshot .blend may bring (importer appends it instead of importing its GLB): a history folder
another process edited may hold any .blend, so what an append brought is checked before it is used."""
from __future__ import annotations

import json

import bpy

from .record import QA_PROPERTY, ROLE, ROLES, valid_qa

SNAPSHOT_OBJECTS = 64  # a result, its parts, LODs and low-poly: a snapshot with more is not ours
SNAPSHOT_TYPES = {"MESH", "EMPTY"}
FILE_SOURCES = {"FILE", "SEQUENCE", "MOVIE", "TILED"}  # an image of these reads files unless packed


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
    """Why appended datablocks are not what the background Blender writes ("" when they are): a history
    folder another process edited may hold any .blend. Only meshes and empties without modifiers,
    constraints or drivers, packed images, no texts, scripts or links to other files."""
    if len(objects) > SNAPSHOT_OBJECTS:
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
            if id_.type not in SNAPSHOT_TYPES or len(id_.modifiers) or len(id_.constraints):
                return (f"{id_.name}: {id_.type.lower()}, {len(id_.modifiers)} modifiers, "
                        f"{len(id_.constraints)} constraints")
            if id_.get(ROLE) is not None and id_.get(ROLE) not in ROLES:
                return f"{id_.name} has an unknown role"
            if id_.get(QA_PROPERTY) is not None and not _valid_qa_text(id_.get(QA_PROPERTY)):
                return f"{id_.name}'s measured quality is not one the background Blender writes"
        if isinstance(id_, bpy.types.Image) and id_.source in FILE_SOURCES and id_.packed_file is None:
            return f"image {id_.name} reads a file ({id_.filepath})"
        tree = id_ if isinstance(id_, bpy.types.NodeTree) else getattr(id_, "node_tree", None)
        if tree is not None and any(n.bl_idname == "ShaderNodeScript" for n in tree.nodes):
            return f"a script node in {id_.name}"
    return ""
