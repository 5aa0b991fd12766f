"""Bring a finished job's GLB files into the scene with Blender's glTF importer and place them."""
from __future__ import annotations

import json
import os

import bpy
from mathutils import Vector

from . import twins as twin_images
from .finish import roots as top_level
from .record import OBJECT_PROPERTY, QA_PROPERTY, ROLE, ROLES, Record, valid_qa

COLLECTION_NAME = "TRELLIS"
SPACING = 1.25  # results side by side, in multiples of the widest result
SNAPSHOT_SIZE_FACTOR, SNAPSHOT_SLACK = 8, 256 << 20  # a snapshot .blend above 8× its GLB + 256 MiB is refused


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


def import_glb(context, filepath: str, snapshot: bool = False, key: str = "",
               twins: bool = False) -> list[bpy.types.Object]:
    """The GLB's objects, linked into the active collection. snapshot=True (history results): the first
    import also saves them as a .blend beside the GLB, later imports append from it (1/17 of the glTF
    importer's time for a 500k-face result, bench/cache_hit.py) and fall back to the GLB if that fails.
    key: append the finished snapshot of that key where there is one (else as without). twins (the
    background Blender): the snapshot keeps its images' bytes apart (write_snapshot)."""
    if snapshot and key and fresh_snapshot(filepath, key):
        try:
            return _append_snapshot(context, snapshot_path(filepath, key), filepath)
        except Exception as exc:  # unreadable or from elsewhere: finished again from the import
            print(f"TRELLIS: snapshot {os.path.basename(snapshot_path(filepath, key))} not used ({exc})")
    snap = snapshot_path(filepath) if snapshot else ""
    if snap and fresh_snapshot(filepath):
        try:
            return _append_snapshot(context, snap, filepath)
        except Exception as exc:  # unreadable or from elsewhere: the GLB is the truth
            print(f"TRELLIS: snapshot {os.path.basename(snap)} not used ({exc}), importing the GLB")
    before = set(bpy.data.objects)
    result = bpy.ops.import_scene.gltf(filepath=filepath)
    if "FINISHED" not in result:
        raise RuntimeError(f"glTF import failed for {filepath}")
    objects = [o for o in bpy.data.objects if o not in before]
    if snap and objects:
        write_snapshot(snap, set(objects), twins)
    return objects


def write_snapshot(path: str, ids: set, twins: bool = False) -> None:
    """The datablocks (objects, a collection) as a .blend, atomically; a failure is only printed.
    twins (the background Blender's snapshots): each packed image's bytes are kept apart (twins.py), so that
    a big snapshot's images can be appended in a tick of their own (preload); this Blender's images are left
    as they were."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    made = []
    try:
        if twins:
            twin_images.make(made)
        bpy.data.libraries.write(tmp, set(ids) | {twin for _, twin, _ in made}, path_remap="NONE",
                                 fake_user=False, compress=False)
        os.replace(tmp, path)
    except Exception as exc:  # a cache only: the import itself succeeded
        print(f"TRELLIS: could not save {os.path.basename(path)}: {exc}")
        if os.path.exists(tmp):
            os.remove(tmp)
    finally:
        twin_images.restore(made)


def preload(glb_path: str, key: str = "", owner: str = "") -> bool:
    """Append the twins of the snapshot import_glb will append for this GLB and key ahead of it (the UI's
    modal operator, a tick before the one that appends the mesh), and then read and upload those the open
    viewports draw, a call each (twins.append_ahead), where that snapshot is twins.PRELOAD_BYTES or bigger or
    a viewport draws textures, and not too big for its GLB; whether this call did anything. owner:
    twins.drop's."""
    snap = chosen_snapshot(glb_path, key)
    if not snap:
        return False
    size = os.path.getsize(snap)
    if size > SNAPSHOT_SIZE_FACTOR * os.path.getsize(glb_path) + SNAPSHOT_SLACK:
        return False
    if size < twin_images.PRELOAD_BYTES and not twin_images.viewports():  # where a viewport draws textures,
        return False  # their reading and upload, out of the first draw, are worth a second opening of the file
    return twin_images.append_ahead(snap, owner)


SNAPSHOT_OBJECTS = 64  # a result, its parts, LODs and low-poly: a snapshot with more is not ours
SNAPSHOT_TYPES = {"MESH", "EMPTY"}
FILE_SOURCES = {"FILE", "SEQUENCE", "MOVIE", "TILED"}  # an image of these reads files unless packed


def _id_collections() -> list[str]:
    return [p.identifier for p in bpy.types.BlendData.bl_rna.properties
            if p.type == "COLLECTION" and p.identifier not in ("window_managers", "workspaces", "screens")]


def _all_ids() -> set:
    return {id_ for name in _id_collections() for id_ in getattr(bpy.data, name)}


def _drivers(id_) -> bool:
    blocks = [id_, getattr(id_, "node_tree", None), getattr(id_, "shape_keys", None)]
    return any(getattr(b, "animation_data", None) is not None and len(b.animation_data.drivers) for b in blocks)


def _valid_qa_text(text) -> bool:
    try:
        return isinstance(text, str) and len(text) < 1 << 16 and valid_qa(json.loads(text))
    except ValueError:
        return False


def snapshot_problem(new: set, objects: list) -> str:
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


def _append_snapshot(context, path: str, glb_path: str = "") -> list[bpy.types.Object]:
    """Its objects appended and linked into the active collection, its collections (a finished result's
    LODs) as children of it, their objects inside them. A snapshot that is too big for its GLB, holds more
    than the background Blender writes (snapshot_problem) or images too big to decode (twins.pictures_problem,
    from their headers, as a GLB's) is refused: RuntimeError, with everything it brought removed again."""
    if glb_path and os.path.getsize(path) > SNAPSHOT_SIZE_FACTOR * os.path.getsize(glb_path) + SNAPSHOT_SLACK:
        raise RuntimeError(f"{os.path.getsize(path) >> 20} MiB, too big for its GLB")
    twins, checked = twin_images.taken_ahead(path)  # appended (and their sizes read) in ticks before (preload)
    before = _all_ids()
    with bpy.data.libraries.load(path, link=False) as (src, dst):
        dst.objects = list(src.objects)
        dst.collections = list(src.collections)
        wanted = twin_images.wanted(src.images, twins)
        dst.images = list(wanted)
    twins.update((name, image) for name, image in zip(wanted, dst.images) if image is not None)
    objects = [o for o in dst.objects if o is not None]
    collections = [c for c in dst.collections if c is not None]
    twin_images.forget_library(path)
    new = (_all_ids() - before) | set(twins.values())
    twin_images.adopt(new, twins)
    problem = "no objects in it" if not objects else snapshot_problem(new, objects) or twin_images.pictures_problem(
        [i for i in new if isinstance(i, bpy.types.Image)], checked)
    if problem:
        bpy.data.batch_remove(new)
        raise RuntimeError(problem)
    for coll in collections:
        context.collection.children.link(coll)
    for obj in objects:
        if not obj.users_collection:
            context.collection.objects.link(obj)
    return objects


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
    record attached, selected and active. target_size: one for all, or one per group (0: keep).
    followers: per group, objects moved along with it (a finished result's LODs and low-poly), nothing
    else done to them. Returns root objects."""
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
