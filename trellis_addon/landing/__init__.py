"""A finished result's way into the scene from its signed snapshot, top to bottom. Where a window is open each
step is a modal tick of its own (Landing.tick), so that no tick does it all; a blocking run (a script, the CLI)
takes what is left at once (Landing.take).

  verify   the snapshot's signature, checked off the main thread (queue.builder's verify task); here only
           its fingerprint is compared again, before the file is opened
  append   its objects and what they use, appended into no scene, kept by a fake user, checked (check.py),
           each datablock marked with this landing's token
  warm     each image an open viewport draws (viewports.py): decoded, then its GPU texture made, a tick each
  normals  each mesh's normals computed, a tick each (the viewport's first draw does it otherwise)
  place    handed over (take) and placed by importer.place_results

A landing belongs to the job it lands (job.landings, made by the modal operator's ticks); nothing here is
module-level state. What it appended is found again by name and mark, never by a Python reference that an undo
could leave dangling: where an undo or a file load between the ticks took any of it, take() appends anew, and
drop() removes only what still carries the mark and nothing else uses."""
from __future__ import annotations

import os
import time

import bpy

from .. import signing
from . import check, viewports

MARK = "trellis2_landing"  # a custom property: the token of the landing that appended the datablock
DATA = {"OBJECT": "objects", "COLLECTION": "collections", "MESH": "meshes", "MATERIAL": "materials",
        "IMAGE": "images", "NODETREE": "node_groups"}  # id_type: where bpy.data keeps it (what a snapshot brings)
APPEND = ("append", "")


class Landing:
    """One result's landing from its snapshot, verified off the main thread with this fingerprint."""

    def __init__(self, snapshot: str, fingerprint):
        self.snapshot, self.fingerprint = snapshot, fingerprint
        self.steps: list[tuple[str, str]] = [APPEND]  # left to take: append, (read|upload, image), (normals, mesh)
        self.token = ""  # MARK's value on what the append brought
        self.objects: list[str] = []  # names of the objects appended, in no scene until placed
        self.collections: list[str] = []  # names of its collections (a finished result's LODs)
        self.brought: list[tuple[str, str]] = []  # (id_type, name) of everything it appended
        self.problem = ""  # why the snapshot was not appended ("": it was, or is still to be)

    def tick(self) -> bool:
        """Take the next step; whether there was one (False: placing is left)."""
        if not self.steps:
            return False
        kind, name = self.steps.pop(0)
        if kind == "append":
            self._append()
            if viewports.any_open():  # a window: what its first draw of the result would do, a tick each
                images = [i for i in self._found() if isinstance(i, bpy.types.Image)]
                self.steps += viewports.warm_steps(images, viewports.kinds())
                self.steps += [("normals", mesh) for mesh in sorted({bpy.data.objects[o].data.name for o in self.objects
                                                                     if bpy.data.objects[o].type == "MESH"})]
        elif kind == "normals":
            _normals(self._marked("meshes", name))
        else:
            _warm(kind, self._marked("images", name))
        return True

    def take(self) -> tuple[list, list]:
        """The appended (objects, collections), handed over once (marks cleared, no fake user, linked nowhere
        yet): appended now where no tick did, or anew where an undo or a file load took any of it since.
        RuntimeError with the reason where the snapshot was refused or changed."""
        if APPEND in self.steps or self._taken_away():
            self.drop()
            self.steps, self.problem = [], ""
            self._append()
        if self.problem:
            raise RuntimeError(self.problem)
        self.steps = []
        found = self._found()
        objects = [bpy.data.objects[n] for n in self.objects]
        collections = [bpy.data.collections[n] for n in self.collections]
        for id_ in found:
            del id_[MARK]
        for id_ in objects + collections:
            id_.use_fake_user = False
        _forget_library(self.snapshot)  # its removal redraws every editor: in the placing tick, which redraws anyway
        self.brought = []
        return objects, collections

    def drop(self) -> None:
        """Remove what this landing appended and nothing else uses (its job failed or was cancelled between
        the ticks; the user may have used one of its materials since)."""
        self.steps = []
        gone = self._found()
        users = bpy.data.user_map(subset=gone)
        while True:
            kept = {i for i in gone if users[i] - gone or getattr(i, "users_scene", ())}
            if not kept:
                break
            gone -= kept
        bpy.data.batch_remove(gone)
        _forget_library(self.snapshot)
        self.brought = []

    def _append(self) -> None:
        """The append step: refused (problem) where the file is not the one verified, or holds what the
        background Blender never writes."""
        if not signing.still(self.snapshot, self.fingerprint):
            self.problem = "changed since it was verified"
            return
        try:
            objects, collections, new = _load(self.snapshot)
        except Exception as exc:  # noqa: BLE001 - not appendable (another version's, refused): the GLB instead
            self.problem = str(exc) or type(exc).__name__
            return
        for id_ in objects + collections:
            id_.use_fake_user = True  # kept by an undo step or a save until placed
        self.token = f"{self.snapshot}#{time.monotonic_ns()}"
        for id_ in new:
            id_[MARK] = self.token
        self.objects, self.collections = [o.name for o in objects], [c.name for c in collections]
        self.brought = [(id_.id_type, id_.name) for id_ in new]

    def _found(self) -> set:
        """What the append brought that is still here, by name and mark."""
        ids = {getattr(bpy.data, DATA[kind]).get(name) for kind, name in self.brought if kind in DATA} - {None}
        return {id_ for id_ in ids if id_.get(MARK) == self.token}

    def _marked(self, data: str, name: str):
        found = getattr(bpy.data, data).get(name)
        return found if found is not None and self.token and found.get(MARK) == self.token else None

    def _taken_away(self) -> bool:
        """Whether an undo or a file load took any object or collection appended ahead (or put one in a scene)."""
        objects = [bpy.data.objects.get(n) for n in self.objects]
        collections = [bpy.data.collections.get(n) for n in self.collections]
        return (None in objects or None in collections or any(o.users_scene for o in objects)
                or any(i.get(MARK) != self.token for i in objects + collections))


def _load(path: str) -> tuple[list, list, set]:
    """(objects, collections, every datablock) appended from a snapshot, in no scene; RuntimeError where it
    holds more than the background Blender writes (check.problem), all it brought removed again."""
    before = check.all_ids()
    with bpy.data.libraries.load(path, link=False) as (src, dst):
        dst.objects = list(src.objects)
        dst.collections = list(src.collections)
    objects = [o for o in dst.objects if o is not None]
    collections = [c for c in dst.collections if c is not None]
    new = check.all_ids() - before - set(_libraries_of(path))
    found = "no objects in it" if not objects else check.problem(new, objects)
    if found:
        bpy.data.batch_remove(new)
        _forget_library(path)
        raise RuntimeError(found)
    return objects, collections, new


def _normals(mesh) -> None:
    """Compute and cache the mesh's normals: the evaluated mesh the viewport draws shares the cache."""
    if mesh is not None and mesh.library is None and len(mesh.loops):
        normals = {"POINT": "vertex_normals", "FACE": "polygon_normals"}.get(mesh.normals_domain, "corner_normals")
        getattr(mesh, normals)[0]


def _warm(kind: str, image) -> None:
    """Decode an image ("read": what a first draw does to know its size) or make its GPU texture ("upload")."""
    if image is None or image.packed_file is None or image.source != "FILE":
        return
    try:
        if kind == "read":
            image.size[0]
        else:
            import gpu  # only in a window: the viewport's own texture of the image, made now
            gpu.texture.from_image(image)
    except Exception as exc:  # noqa: BLE001 - a head start only: the first draw does what this could not
        print(f"TRELLIS: {kind} {image.name} ahead: {exc}")


def _libraries_of(path: str) -> list:
    """The Library datablocks an append from this file leaves."""
    same = os.path.normpath(os.path.abspath(path))
    return [lib for lib in bpy.data.libraries if os.path.normpath(bpy.path.abspath(lib.filepath)) == same]


def _forget_library(path: str) -> None:
    for lib in _libraries_of(path):
        bpy.data.libraries.remove(lib)  # appended data is local: no reference to the file stays
