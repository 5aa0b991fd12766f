"""A result's objects loaded ahead of the tick that places it (importer.preload, where a 3D viewport is open):
the snapshot's objects loaded and checked as the append checks them, in no scene and kept by a fake user, in
a tick of their own; then each mesh's normals computed, a tick each (the viewport's first draw does it
otherwise: 120 ms for 1M faces with custom normals, bpy 5.0.1); the placing tick only links and moves them
(take). Their twins are adopted and the Library the load leaves removed only there: each remap and removal
redraws every editor, the viewport too, and the placing tick redraws anyway. Everything a load brings carries
its mark (marks.py) until placed."""
from __future__ import annotations

import os
from typing import NamedTuple

import bpy

from . import marks, snapshot_check
from . import twins as twin_images


class Loaded(NamedTuple):
    owner: str  # the job that loaded it (drop)
    objects: list  # names of the objects loaded, in no scene
    collections: list  # names of its collections (a finished result's LODs)
    meshes: list  # names of the meshes whose normals are still to be computed, a tick each
    mark: str  # marks.MARK's value on everything it brought
    brought: list  # [(id_type, name)] of everything it brought
    twins: dict  # {a twin's name in the snapshot: its name here}, adopted when placed
    problem: str = ""  # why the snapshot was refused ("": loaded): the append imports the GLB instead


_LOADED: dict[str, Loaded] = {}  # snapshot path: its load ahead


def load(snap: str, owner: str) -> bool:
    """The preload call after the images': the objects loaded, then a mesh's normals a call each. Whether this
    call did anything."""
    entry = _LOADED.get(snap)
    if entry is not None:
        if not entry.meshes:
            return False
        mesh = bpy.data.meshes.get(entry.meshes.pop(0))
        if mesh is not None and mesh.library is None and len(mesh.loops):
            normals = {"POINT": "vertex_normals", "FACE": "polygon_normals"}.get(mesh.normals_domain, "corner_normals")
            getattr(mesh, normals)[0]  # computed and cached: the evaluated mesh the viewport draws shares the cache
        return True
    try:
        objects, collections, new, twins = snapshot_check.load(snap, ahead=True)
    except Exception as exc:  # noqa: BLE001 - kept: the append says why and imports the GLB, not loading it again
        print(f"TRELLIS: {os.path.basename(snap)} not loaded ahead ({exc})")
        _LOADED[snap] = Loaded(owner, [], [], [], "", [], {}, problem=str(exc) or type(exc).__name__)
        return True
    for id_ in objects + collections:
        id_.use_fake_user = True
    mark, brought = marks.put(new, snap)
    _LOADED[snap] = Loaded(owner, [o.name for o in objects], [c.name for c in collections],
                           sorted({o.data.name for o in objects if o.type == "MESH"}), mark, brought,
                           {name: twin.name for name, twin in twins.items()})
    return True


def loading(snap: str) -> bool:
    """Whether a load ahead of this snapshot was made (its normals may still be coming)."""
    return snap in _LOADED


def take(snap: str) -> tuple[list, list] | None:
    """The load's (objects, collections), its twins adopted, handed over once; None where it loaded none or an
    undo or a file load took any of them away since (the rest is removed; the append loads it itself).
    RuntimeError with the reason where it refused the snapshot."""
    entry = _LOADED.pop(snap, None)
    if entry is None:
        return None
    if entry.problem:
        raise RuntimeError(entry.problem)
    twin_images.forget_library(snap)
    objects = [bpy.data.objects.get(n) for n in entry.objects]
    collections = [bpy.data.collections.get(n) for n in entry.collections]
    twins = {name: bpy.data.images.get(here) for name, here in entry.twins.items()}
    if None in objects or None in collections or None in twins.values() or any(o.users_scene for o in objects):
        marks.remove(entry.mark, entry.brought)
        return None
    found = marks.found(entry.mark, entry.brought)
    marks.clear(found)
    twin_images.adopt(found, twins)
    for id_ in objects + collections:
        id_.use_fake_user = False
    return objects, collections


def drop(owner: str = "") -> None:
    """Remove what was brought ahead for owner (a job's id) that no append took (its job failed or was
    cancelled between): the images appended ahead (twins.drop) and the datablocks loaded ahead."""
    twin_images.drop(owner)
    for snap, entry in list(_LOADED.items()):
        if entry.owner == owner:
            del _LOADED[snap]
            marks.remove(entry.mark, entry.brought)
            twin_images.forget_library(snap)
