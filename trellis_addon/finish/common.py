"""Shared by the finishing stages: the errors, mesh arrays read with foreach_get, connected parts."""
from __future__ import annotations

import numpy as np


class FinishError(RuntimeError):
    """A finishing stage failed; its own partial changes were undone, earlier stages' results stay."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message


class FinishCancelled(FinishError):
    """cancelled() said so before `stage` began; what was done so far stays."""

    def __init__(self, stage: str):
        super().__init__(stage, "cancelled")


def positions(mesh) -> np.ndarray:
    out = np.empty(len(mesh.vertices) * 3, np.float64)
    mesh.vertices.foreach_get("co", out)
    return out.reshape(-1, 3)


def corner_verts(mesh) -> np.ndarray:
    out = np.empty(len(mesh.loops), np.int64)
    mesh.loops.foreach_get("vertex_index", out)
    return out


def face_sizes(mesh) -> np.ndarray:
    out = np.empty(len(mesh.polygons), np.int64)
    mesh.polygons.foreach_get("loop_total", out)
    return out


def corner_faces(mesh) -> np.ndarray:
    """The face of each corner (loop)."""
    return np.repeat(np.arange(len(mesh.polygons)), face_sizes(mesh))


def triangle_count(mesh) -> int:
    return int((face_sizes(mesh) - 2).sum()) if len(mesh.polygons) else 0


def components(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of `count` nodes joined by the pairs (a[i], b[i]): a root label per node
    (hooking roots onto smaller roots, then pointer jumping; a few passes of numpy, any mesh size)."""
    parent = np.arange(count)
    while True:
        pa, pb = parent[a], parent[b]
        lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        joined = lo != hi
        if not joined.any():
            return parent
        np.minimum.at(parent, hi[joined], lo[joined])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def face_parts(mesh, vertex_ids: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(part index per face, part count): faces sharing a vertex are one part. vertex_ids: another id per
    vertex to join by (the welded position of each vertex), else the vertex itself."""
    if not len(mesh.polygons):
        return np.zeros(0, np.int64), 0
    verts = corner_verts(mesh)
    if vertex_ids is not None:
        verts = vertex_ids[verts]
    sizes = face_sizes(mesh)
    starts = np.cumsum(sizes) - sizes
    roots = components(int(verts.max()) + 1, verts, np.repeat(verts[starts], sizes))
    labels, per_face = np.unique(roots[verts[starts]], return_inverse=True)
    return per_face.reshape(-1), len(labels)


def mesh_objects(objects) -> list:
    return [o for o in objects if o.type == "MESH" and o.data is not None]


def roots(objects) -> list:
    """The objects whose parent is not among them (a result's top level)."""
    return [o for o in objects if o.parent is None or o.parent not in objects]
