"""Decimated copies: levels of detail `<name>_LOD1` ... and the low-poly base of a bake.

The Decimate modifier (collapse, triangulated) is evaluated through the depsgraph and its result made the
copy's own mesh: the copy must be in the view layer the depsgraph belongs to while that happens (the
caller's context: a scene in a `blender -b` process or the bpy module does, no window needed). UV seams
are marked from the UV islands first, which the collapse keeps; materials stay on the mesh.
"""
from __future__ import annotations

import bpy
import numpy as np

from .common import corner_verts, face_sizes, triangle_count


def mark_uv_seams(mesh) -> int:
    """Mark the edges where the active UV map is discontinuous as seams; returns how many."""
    if mesh.uv_layers.active is None or not len(mesh.loops):
        return 0
    verts = corner_verts(mesh)
    edges = np.empty(len(mesh.loops), np.int64)
    mesh.loops.foreach_get("edge_index", edges)
    uv = np.empty(len(mesh.loops) * 2, np.float64)
    mesh.uv_layers.active.data.foreach_get("uv", uv)
    keys = np.column_stack([verts, np.round(uv.reshape(-1, 2) * 2 ** 20).astype(np.int64)])
    _, uv_vertex = np.unique(keys, axis=0, return_inverse=True)
    uv_vertex = uv_vertex.reshape(-1)
    sizes = face_sizes(mesh)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    following = starts + (np.arange(len(verts)) - starts + 1) % np.repeat(sizes, sizes)
    pair = np.sort(np.column_stack([uv_vertex, uv_vertex[following]]), axis=1)
    rows = np.unique(np.column_stack([edges, pair]), axis=0)
    seam = np.bincount(rows[:, 0], minlength=len(mesh.edges)) > 1
    old = np.empty(len(mesh.edges), bool)
    mesh.edges.foreach_get("use_seam", old)
    mesh.edges.foreach_set("use_seam", old | seam)
    return int(seam.sum())


def decimated_copy(source, name: str, ratio: float, collection, depsgraph=None):
    """A new object `name` in `collection`, placed like `source`, with `ratio` of its faces."""
    obj = bpy.data.objects.new(name, source.data.copy())
    obj.data.name = name
    obj.matrix_basis = source.matrix_basis.copy()
    collection.objects.link(obj)
    try:
        if ratio < 1.0:
            mark_uv_seams(obj.data)
            mod = obj.modifiers.new("Decimate", "DECIMATE")
            mod.decimate_type, mod.ratio, mod.use_collapse_triangulate = "COLLAPSE", ratio, True
            graph = depsgraph or bpy.context.evaluated_depsgraph_get()
            graph.update()
            mesh = bpy.data.meshes.new_from_object(obj.evaluated_get(graph))
            obj.modifiers.remove(mod)
            old, obj.data = obj.data, mesh
            bpy.data.meshes.remove(old)
            mesh.name = name
    except Exception:
        remove_objects([obj])
        raise
    return obj


def remove_objects(objects) -> None:
    """Delete objects with their own meshes (a failed stage's partial result)."""
    for obj in objects:
        mesh = obj.data if obj.type == "MESH" else None
        bpy.data.objects.remove(obj)
        if mesh is not None and mesh.users == 0:
            bpy.data.meshes.remove(mesh)


def make_lods(obj, name: str, levels: int, ratio: float, parent_collection, depsgraph=None):
    """`levels` objects `<name>_LOD1` ..., each `ratio` of the faces of the one before, in a collection
    `<name> LODs` inside parent_collection, hidden in viewport and render. Returns (collection, objects,
    triangle counts)."""
    collection = bpy.data.collections.new(f"{name} LODs")
    parent_collection.children.link(collection)
    made = []
    try:
        previous = obj
        for level in range(1, levels + 1):
            previous = decimated_copy(previous, f"{name}_LOD{level}", ratio, collection, depsgraph)
            made.append(previous)
    except Exception:
        remove_objects(made)
        bpy.data.collections.remove(collection)
        raise
    collection.hide_viewport = collection.hide_render = True
    return collection, made, [triangle_count(o.data) for o in made]
