"""What a snapshot .blend may bring (importer appends it instead of importing its GLB). Only a snapshot signed
by this user is ever opened (signing.py); what its append brought is still checked against what the background
Blender writes before it is used (load), so that nothing a signed file holds can read another file."""
from __future__ import annotations

import json

import bpy

from . import twins as twin_images
from .record import QA_PROPERTY, ROLE, ROLES, valid_qa

SNAPSHOT_OBJECTS = 64  # a result, its parts, LODs and low-poly: a snapshot with more is not ours
SNAPSHOT_TYPES = {"MESH", "EMPTY"}
IMAGE_SOURCES = {"FILE", "GENERATED"}  # a sequence, movie or tiled image reads files beside its own, packed or not
FILE_NODES = {"ShaderNodeScript", "ShaderNodeTexIES", "ShaderNodeTexPointDensity"}  # read a file or another
# object's data of their own (the glTF importer makes none of them)


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
        if isinstance(id_, bpy.types.Image) and (id_.source not in IMAGE_SOURCES or
                                                  (id_.source == "FILE" and id_.packed_file is None)):
            return f"image {id_.name} reads a file ({id_.source.lower()}: {id_.filepath})"
        if not isinstance(id_, (bpy.types.Object, bpy.types.Mesh, bpy.types.Material, bpy.types.Image,
                                bpy.types.Collection, bpy.types.NodeTree)):
            return f"a {kind} ({id_.name})"  # a volume, cache file, sound, movie clip... reads files of its own
        tree = id_ if isinstance(id_, bpy.types.NodeTree) else getattr(id_, "node_tree", None)
        found = next((n.bl_idname for n in tree.nodes if n.bl_idname in FILE_NODES), "") if tree else ""
        if found:
            return f"a {found} node in {id_.name}"
    return ""


def load(path: str, ahead: bool = False) -> tuple[list, list, set, dict]:
    """(objects, collections, every datablock, twins) appended from a verified snapshot, in no scene yet
    (collections: a finished result's LODs). ahead: its Library kept and its twins not adopted (a removal or
    remap redraws every editor) until the placing tick (ahead.take); the check looks at what adopt will leave.
    A snapshot holding more than the background Blender writes (problem) is refused: RuntimeError, all it
    brought removed again."""
    twins = twin_images.taken_ahead(path)  # appended in a tick before (preload)
    before = all_ids()
    with bpy.data.libraries.load(path, link=False) as (src, dst):
        dst.objects = list(src.objects)
        dst.collections = list(src.collections)
        wanted = twin_images.wanted(src.images, twins)
        dst.images = list(wanted)
    twins.update((name, image) for name, image in zip(wanted, dst.images) if image is not None)
    objects = [o for o in dst.objects if o is not None]
    collections = [c for c in dst.collections if c is not None]
    if not ahead:
        twin_images.forget_library(path)
    new = (all_ids() - before - set(twin_images.libraries_of(path))) | set(twins.values())
    if ahead:  # adopt is left to the placing tick (ahead.take): its remaps and removals redraw every editor
        final = twin_images.adopted(new, twins)
    else:
        twin_images.adopt(new, twins)
        final = new
    found = "no objects in it" if not objects else problem(final, objects)
    if found:
        bpy.data.batch_remove(new)
        twin_images.forget_library(path)
        raise RuntimeError(found)
    return objects, collections, new, twins
