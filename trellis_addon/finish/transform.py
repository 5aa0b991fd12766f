"""Origin and scale of a placed result, changed without moving it on screen. No context needed: the
matrices are composed from each object's own basis (matrix_world is only current after a depsgraph
update)."""
from __future__ import annotations

import numpy as np
from mathutils import Matrix, Vector

from .common import positions, roots

ORIGINS = ("BOTTOM", "CENTER", "KEEP")


def world_matrix(obj) -> Matrix:
    """World matrix from the bases up the parent chain (constraints and drivers aside)."""
    matrix = obj.matrix_basis.copy()
    while obj.parent is not None:
        matrix = obj.parent.matrix_basis @ obj.matrix_parent_inverse @ matrix
        obj = obj.parent
    return matrix


def _private_mesh(obj):
    """obj's mesh, copied first when other objects use it too (so they are not changed with it)."""
    if obj.data.users > 1:
        obj.data = obj.data.copy()
    return obj.data


def apply_scale(objects) -> None:
    """Bake each root's scale into its mesh (and its children's placement), so every scale is (1, 1, 1).
    Exact for uniform scale (the target-size factor) and for unrotated children."""
    def bake(obj, scale: Vector):
        if obj.type == "MESH" and obj.data is not None and scale != Vector((1, 1, 1)):
            _private_mesh(obj).transform(Matrix.Diagonal(scale).to_4x4())
        for child in obj.children:
            child.location = Vector(a * b for a, b in zip(scale, child.location))
            bake(child, Vector(a * b for a, b in zip(scale, child.scale)))
            child.scale = (1, 1, 1)

    for root in roots(objects):
        scale = root.scale.copy()
        root.scale = (1, 1, 1)
        bake(root, scale)


def world_bounds(objects) -> tuple[Vector, Vector]:
    """Bounds of the objects' mesh vertices in world space (from the bases, no depsgraph)."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for obj in objects:
        if obj.type != "MESH" or obj.data is None or not len(obj.data.vertices):
            continue
        m = np.array(world_matrix(obj))
        points = positions(obj.data) @ m[:3, :3].T + m[:3, 3]
        lo, hi = np.minimum(lo, points.min(axis=0)), np.maximum(hi, points.max(axis=0))
    if not np.isfinite(lo).all():
        return Vector(), Vector()
    return Vector(lo), Vector(hi)


def set_origin(objects, where: str) -> Vector | None:
    """Move each root's origin to the bottom centre (BOTTOM) or centre (CENTER) of the result's world
    bounds, geometry unchanged on screen; returns the new origin in world space (None for KEEP)."""
    if where not in ORIGINS:
        raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, not {where!r}")
    if where == "KEEP":
        return None
    lo, hi = world_bounds(objects)
    target = (lo + hi) / 2
    if where == "BOTTOM":
        target.z = lo.z
    for root in roots(objects):
        basis = root.matrix_basis.copy()
        parent = world_matrix(root.parent) @ root.matrix_parent_inverse if root.parent else Matrix()
        local = (parent @ basis).inverted() @ target  # the new origin in the root's own space
        shift = Matrix.Translation(-local)
        if root.type == "MESH" and root.data is not None:
            _private_mesh(root).transform(shift)
        for child in root.children:
            child.matrix_parent_inverse = shift @ child.matrix_parent_inverse
        root.matrix_basis = basis @ Matrix.Translation(local)
    return target
