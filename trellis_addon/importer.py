"""Bring a finished job's GLB files into the scene with Blender's glTF importer and place them."""
from __future__ import annotations

import os
import shutil
import tempfile

import bpy
from mathutils import Vector

from . import prefs, signing
from .finish import roots as top_level
from .landing import Landing
from .record import OBJECT_PROPERTY, Record

COLLECTION_NAME = "TRELLIS"
SPACING = 1.25  # results side by side, in multiples of the widest result


def trellis_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    coll = bpy.data.collections.get(COLLECTION_NAME)
    if coll is None:
        coll = bpy.data.collections.new(COLLECTION_NAME)
    if coll.name not in scene.collection.children and coll != scene.collection:
        if not any(c == coll for c in scene.collection.children_recursive):
            scene.collection.children.link(coll)
    return coll


def _world_bounds(objects) -> tuple[Vector, Vector]:
    lo = Vector((float("inf"),) * 3)
    hi = Vector((float("-inf"),) * 3)
    for obj in objects:
        if obj.type != "MESH":
            continue
        m = obj.matrix_world
        for corner in obj.bound_box:
            p = m @ Vector(corner)
            lo = Vector(map(min, lo, p))
            hi = Vector(map(max, hi, p))
    if lo.x == float("inf"):
        return Vector(), Vector()
    return lo, hi


def snapshot_path(glb_path: str, key: str = "") -> str:
    """Beside a result's GLB: the objects as this Blender version imported them (a .blend is read
    forward-compatibly only, so one per version); with a finishing key (finishing.spec_key), the finished
    result, its LODs and low-poly."""
    major, minor = bpy.app.version[:2]
    return f"{os.path.splitext(glb_path)[0]}.blender-{major}.{minor}{'.' + key if key else ''}.blend"


def fresh_snapshot(glb_path: str, key: str = "") -> bool:
    """Whether the GLB's snapshot .blend exists and is not older than it (appending it is the import)."""
    snap = snapshot_path(glb_path, key)
    return os.path.isfile(snap) and os.path.getmtime(snap) >= os.path.getmtime(glb_path)


def chosen_snapshot(glb_path: str, key: str = "") -> str:
    """The snapshot import_glb appends first for this GLB and key ("" where none is fresh)."""
    if key and fresh_snapshot(glb_path, key):
        return snapshot_path(glb_path, key)
    return snapshot_path(glb_path) if fresh_snapshot(glb_path) else ""


def import_glb(context, filepath: str, snapshot: bool = False, key: str = "", from_glb: bool = False,
               verified: dict | None = None, signing_key: bytes = b"", landing: Landing | None = None
               ) -> list[bpy.types.Object]:
    """The GLB's objects, linked into the active collection. snapshot=True (history results): a snapshot .blend
    beside the GLB, signed by this user, is appended instead (1/17 of the glTF importer's time for a 500k-face
    result, bench/cache_hit.py): the finished one of `key` where there is one, else the raw one; anything
    unsigned, altered or changed since is never opened (signing.py): the GLB is imported and its snapshot
    written and signed anew. verified: {snapshot: fingerprint} checked off the main thread (the builder's); None:
    checked here. landing: that snapshot's landing, part of it done in the modal operator's ticks ahead.
    signing_key: the key (prefs.signing_key() where empty). from_glb (the background Blender, which writes the
    snapshots): never append one."""
    if snapshot and not signing_key:
        if from_glb:
            raise ValueError("the background Blender signs its snapshots with the key its task names")
        signing_key = prefs.signing_key()
    snap = snapshot_path(filepath) if snapshot else ""
    keys = [] if from_glb or not snap else [key, ""] if key else [""]
    for path in [snapshot_path(filepath, k) for k in keys if fresh_snapshot(filepath, k)]:
        if verified is None:
            known, why = signing.verify(path, signing_key)
        else:
            known, why = verified.get(path), "changed since it was verified" if path in verified else "not verified"
        if not signing.still(path, known):
            print(f"TRELLIS: snapshot {os.path.basename(path)} not opened ({why or 'changed since it was verified'})")
            continue
        try:
            lander = landing if landing is not None and landing.snapshot == path else Landing(path, known)
            objects, collections = lander.take()
        except RuntimeError as exc:  # signed but not appendable (another Blender version's): the GLB instead
            print(f"TRELLIS: snapshot {os.path.basename(path)} not used ({exc}), importing the GLB")
            continue
        for coll in collections:
            context.collection.children.link(coll)
        for obj in objects:
            if not obj.users_collection:
                context.collection.objects.link(obj)
        return objects
    before = set(bpy.data.objects)
    result = bpy.ops.import_scene.gltf(filepath=filepath)
    if "FINISHED" not in result:
        raise RuntimeError(f"glTF import failed for {filepath}")
    objects = [o for o in bpy.data.objects if o not in before]
    if snap and objects:
        write_snapshot(snap, set(objects), signing_key)
    return objects


def write_snapshot(path: str, ids: set, signing_key: bytes) -> None:
    """The datablocks (objects, a collection) as a .blend, signed (signing.place_signed: written in a private
    folder first, so that only the bytes written here are signed); a failure is only printed."""
    private = tempfile.mkdtemp(prefix="trellis2-snapshot-")
    tmp = os.path.join(private, os.path.basename(path))
    try:
        bpy.data.libraries.write(tmp, set(ids), path_remap="NONE", fake_user=False, compress=False)
        signing.place_signed(tmp, path, signing_key)
    except Exception as exc:  # a cache only: the import itself succeeded
        print(f"TRELLIS: could not save {os.path.basename(path)}: {exc}")
    finally:
        shutil.rmtree(private, ignore_errors=True)


def anchor_bounds(anchor: bpy.types.Object) -> tuple[Vector, Vector]:
    """World bounds of an object: an image empty's picture (as drawn), another empty's cube, or a mesh."""
    if anchor.type != "EMPTY":
        return _world_bounds([anchor])
    size = anchor.empty_display_size
    if anchor.empty_display_type == "IMAGE":
        w, h = anchor.data.size if anchor.data and anchor.data.size[0] else (1, 1)
        sx, sy = size * w / max(w, h), size * h / max(w, h)
        ox, oy = anchor.empty_image_offset
        corners = [Vector((x * sx, y * sy, 0.0)) for x in (ox, ox + 1) for y in (oy, oy + 1)]
    else:
        corners = [Vector((x, y, z)) for x in (-size, size) for y in (-size, size) for z in (-size, size)]
    points = [anchor.matrix_world @ c for c in corners]
    return Vector(map(min, *points)), Vector(map(max, *points))


def result_name(name: str, index: int, count: int) -> str:
    """What place_results calls result `index` of `count` (the background Blender names it the same)."""
    return name if count == 1 else f"{name}.{index + 1:02d}"


def place_results(context, groups: list[list[bpy.types.Object]], name: str, record: Record,
                  target_size: float | list = 0.0, anchor: bpy.types.Object | None = None,
                  followers: list | None = None) -> list[bpy.types.Object]:
    """Move each result to the 3D cursor standing on it (side by side for several), or beside the
    anchor object (the image empty it came from); into the TRELLIS collection, named after the image,
    rotation in XYZ Euler, record attached, selected and active. target_size: one for all, or one per group
    (0: keep). followers: per group, objects moved along with it (a finished result's LODs and low-poly),
    rotation in XYZ Euler too, nothing else done to them. Returns root objects."""
    scene = context.scene
    coll = trellis_collection(scene)
    context.view_layer.update()
    roots_per_group, sizes = [], []
    sizes_wanted = target_size if isinstance(target_size, list) else [target_size] * len(groups)
    followers = followers or [[] for _ in groups]
    for index, objects in enumerate(groups):
        target_size = sizes_wanted[index]
        roots = top_level(objects)
        for obj in objects:
            for c in list(obj.users_collection):
                c.objects.unlink(obj)
            coll.objects.link(obj)
        for obj in objects + followers[index]:
            obj.rotation_mode = "XYZ"  # what artists expect (the glTF importer leaves quaternions); same rotation
        for i, root in enumerate(roots):
            root.name = result_name(name, index, len(groups)) if i == 0 else f"{name}.{index + 1:02d}"
            root[OBJECT_PROPERTY] = record.for_object(index)
        lo, hi = _world_bounds(objects)
        longest = max(hi - lo) if hi != lo else 0.0
        if target_size > 0 and longest > 0:
            factor = target_size / longest
            for root in roots + [o for o in followers[index] if o.parent is None]:
                root.scale *= factor
                root.location *= factor
        roots_per_group.append(roots)
    context.view_layer.update()
    for objects in groups:
        lo, hi = _world_bounds(objects)
        sizes.append(hi - lo)
    step = max((s.x for s in sizes), default=0.0) * SPACING
    cursor = scene.cursor.location
    if anchor is not None:  # to the right of the anchor, standing on its lowest point
        lo, hi = anchor_bounds(anchor)
        row_half = step * (len(groups) - 1) / 2 + step / SPACING / 2
        cursor = Vector((hi.x + step * (SPACING - 1) / SPACING + row_half, (lo.y + hi.y) / 2, lo.z))
    for index, (objects, roots) in enumerate(zip(groups, roots_per_group)):
        lo, hi = _world_bounds(objects)
        offset_x = (index - (len(groups) - 1) / 2) * step
        target = Vector((cursor.x + offset_x, cursor.y, cursor.z))
        bottom_center = Vector(((lo.x + hi.x) / 2, (lo.y + hi.y) / 2, lo.z))
        for root in roots + [o for o in followers[index] if o.parent is None]:
            root.location += target - bottom_center
    for obj in context.view_layer.objects:
        obj.select_set(False)
    all_roots = [r for roots in roots_per_group for r in roots]
    for obj in (o for objects in groups for o in objects):
        obj.select_set(True)
    if all_roots:
        context.view_layer.objects.active = all_roots[0]
    return all_roots
