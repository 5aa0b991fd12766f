"""Cleanup stages on one mesh: weld split vertices and drop small loose parts; remove interior shells.

Both edit through bmesh, which keeps UV maps, materials and sharp edges. Custom split normals (the glTF
importer sets them) are stored relative to each corner's automatic normal space, which welding changes, so
the final corner normals are read before and set again after, matched by a corner index attribute that
bmesh carries through. The mesh is written only at the end: a failure leaves it as it was.
"""
from __future__ import annotations

import bmesh
import numpy as np
from mathutils import Vector
from mathutils.bvhtree import BVHTree

from .common import face_parts, positions

_INDEX = "trellis_corner"
# Ray directions for the inside test: the axes and the cube diagonals, not quite aligned with anything.
_DIRECTIONS = [Vector(d).normalized() for d in (
    (1, 0.013, 0.007), (-1, 0.011, -0.017), (0.009, 1, 0.013), (-0.015, -1, 0.005), (0.012, -0.008, 1),
    (0.006, 0.014, -1), (1, 1, 1), (-1, 1, -1), (1, -1, -1), (-1, -1, 1))]


def _corner_normals(mesh) -> np.ndarray | None:
    if not mesh.has_custom_normals:
        return None
    out = np.empty(len(mesh.loops) * 3, np.float32)
    mesh.corner_normals.foreach_get("vector", out)
    return out.reshape(-1, 3)


def edit_bmesh(mesh, edit) -> None:
    """Run edit(bm) on a bmesh of `mesh` and write it back with the same corner normals."""
    normals = _corner_normals(mesh)
    if normals is not None:
        mesh.attributes.new(_INDEX, "INT", "CORNER").data.foreach_set("value", np.arange(len(mesh.loops)))
    bm = bmesh.new()
    written = False
    try:
        bm.from_mesh(mesh)
        edit(bm)
        bm.to_mesh(mesh)
        written = True
    finally:
        bm.free()
        attr = mesh.attributes.get(_INDEX)
        if attr is not None:
            source = np.empty(len(mesh.loops), np.int64)
            attr.data.foreach_get("value", source)
            mesh.attributes.remove(attr)
            if written:
                mesh.normals_split_custom_set(normals[source])
    mesh.update()


def weld_distance(mesh, relative: float = 1e-5) -> float:
    pos = positions(mesh)
    extent = float((pos.max(axis=0) - pos.min(axis=0)).max()) if len(pos) else 1.0
    return max(extent * relative, 1e-8)


def weld_and_drop(mesh, min_part_fraction: float, relative_distance: float = 1e-5) -> dict:
    """Weld vertices closer than relative_distance of the mesh's extent, drop the loose parts (faces
    joined by welded vertices) with fewer than min_part_fraction of the faces; never the largest part.
    Returns {"welded_vertices", "dropped_parts", "dropped_faces"}."""
    if not len(mesh.polygons):
        return {"welded_vertices": 0, "dropped_parts": 0, "dropped_faces": 0}
    dist = weld_distance(mesh, relative_distance)
    _, same_place = np.unique(np.round(positions(mesh) / dist).astype(np.int64), axis=0, return_inverse=True)
    part, count = face_parts(mesh, same_place.reshape(-1))
    faces_per_part = np.bincount(part, minlength=count)
    small = faces_per_part < min_part_fraction * len(mesh.polygons)
    small[int(np.argmax(faces_per_part))] = False
    drop = np.flatnonzero(small[part])
    counts = {"dropped_parts": int(small.sum()), "dropped_faces": int(len(drop))}

    def edit(bm):
        bm.faces.ensure_lookup_table()
        if len(drop):
            bmesh.ops.delete(bm, geom=[bm.faces[i] for i in drop], context="FACES")
        before = len(bm.verts)
        bmesh.ops.remove_doubles(bm, verts=list(bm.verts), dist=dist)
        counts["welded_vertices"] = before - len(bm.verts)

    edit_bmesh(mesh, edit)
    return counts


def interior_parts(mesh, max_parts: int = 256, samples: int = 12) -> np.ndarray:
    """Faces of the connected parts that lie inside another part: from a few points of the part, rays in
    ten directions cross the other parts' surface an odd number of times (ray parity) for most directions,
    at every point. Holes in the outer part let a few rays out; the majority still holds."""
    part, count = face_parts(mesh)
    if count < 2:
        return np.zeros(0, np.int64)
    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        tree = BVHTree.FromBMesh(bm)
        bm.faces.ensure_lookup_table()
        centers = np.array([f.calc_center_median() for f in bm.faces])
    finally:
        bm.free()
    extent = float((centers.max(axis=0) - centers.min(axis=0)).max()) or 1.0
    faces_per_part = np.bincount(part, minlength=count)
    inside = []
    for p in np.argsort(-faces_per_part)[:max_parts]:
        own = np.flatnonzero(part == p)
        picks = own[np.linspace(0, len(own) - 1, min(samples, len(own))).astype(np.int64)]
        if all(_is_inside(tree, Vector(centers[i]), part, p, extent) for i in picks):
            inside.append(own)
    return np.concatenate(inside) if inside else np.zeros(0, np.int64)


def _is_inside(tree, origin: Vector, part: np.ndarray, own: int, extent: float) -> bool:
    step = extent * 1e-6
    odd = 0
    for direction in _DIRECTIONS:
        point, crossings = origin.copy(), 0
        for _ in range(256):
            hit, _normal, index, _dist = tree.ray_cast(point, direction, extent * 4)
            if hit is None:
                break
            if part[index] != own:
                crossings += 1
            point = hit + direction * step
        odd += crossings % 2
    return odd * 2 > len(_DIRECTIONS)


def remove_interior(mesh) -> int:
    """Delete the faces of interior parts; returns how many."""
    faces = interior_parts(mesh)
    if len(faces):
        def edit(bm):
            bm.faces.ensure_lookup_table()
            bmesh.ops.delete(bm, geom=[bm.faces[i] for i in faces], context="FACES")
        edit_bmesh(mesh, edit)
    return int(len(faces))
