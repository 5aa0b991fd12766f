"""A mark on what a load ahead of placing brings (twins.append_ahead's images, ahead.load's datablocks): a
custom property holding a fresh token per load, cleared when the result is placed. Only marked datablocks
are adopted or removed by name, so a user's datablock that took one of their names (after an undo) is never
touched, and a crafted snapshot cannot know the token."""
from __future__ import annotations

import time

import bpy

MARK = "trellis2_ahead"
DATA = {"OBJECT": "objects", "COLLECTION": "collections", "MESH": "meshes", "MATERIAL": "materials",
        "IMAGE": "images", "NODETREE": "node_groups"}  # id_type: where bpy.data keeps it (what a snapshot brings)


def put(ids, source: str) -> tuple[str, list]:
    """Mark the datablocks as one load from source: (the token, [(id_type, name)] to find them by)."""
    token = f"{source}#{time.monotonic_ns()}"
    for id_ in ids:
        id_[MARK] = token
    return token, [(id_.id_type, id_.name) for id_ in ids]


def found(token: str, names: list) -> set:
    """What one load brought that is still here, by name and its mark."""
    ids = {getattr(bpy.data, DATA[kind]).get(name) for kind, name in names if kind in DATA} - {None}
    return {id_ for id_ in ids if id_.get(MARK) == token}


def clear(ids) -> None:
    for id_ in ids:
        if MARK in id_:
            del id_[MARK]


def remove(token: str, names: list) -> None:
    """Remove what one load brought that nothing else uses (the user may have used a material of it since)."""
    gone = found(token, names)
    users = bpy.data.user_map(subset=gone)
    while True:
        kept = {i for i in gone if users[i] - gone or getattr(i, "users_scene", ())}
        if not kept:
            break
        gone -= kept
    bpy.data.batch_remove(gone)
