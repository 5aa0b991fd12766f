"""Measured quality of a result: counts, holes, size and texel density, from the mesh data (no context).

Definitions (each over all mesh objects of the result):
- triangles: faces after triangulation; vertices; parts: connected pieces (faces sharing a vertex).
- boundary_edges: edges with one face (hole rims); non_manifold_edges: edges with more than two faces
  or none (wire); watertight: neither.
- size_m: world-space size of the bounds (x, y, z), metres.
- texture_px: [width, height] of the base colour texture (the largest image when none feeds Base Color).
- texel_density: texels per metre at the final size, sqrt(texture pixels x UV area used / surface area),
  the UV area being the summed area of the UV triangles in the unit square.
"""
from __future__ import annotations

import numpy as np

from .common import face_parts, mesh_objects, positions, triangle_count
from .naming import channel_of
from .transform import world_matrix, world_bounds


def _edge_face_counts(mesh) -> np.ndarray:
    edges = np.empty(len(mesh.loops), np.int64)
    mesh.loops.foreach_get("edge_index", edges)
    return np.bincount(edges, minlength=len(mesh.edges))


def _areas(mesh, matrix) -> tuple[float, float]:
    """(surface area in world space, UV area of the active UV map)."""
    mesh.calc_loop_triangles()
    count = len(mesh.loop_triangles)
    if not count:
        return 0.0, 0.0
    verts = np.empty(count * 3, np.int64)
    mesh.loop_triangles.foreach_get("vertices", verts)
    m = np.array(matrix)
    p = (positions(mesh) @ m[:3, :3].T + m[:3, 3])[verts].reshape(-1, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
    if mesh.uv_layers.active is None:
        return float(area), 0.0
    loops = np.empty(count * 3, np.int64)
    mesh.loop_triangles.foreach_get("loops", loops)
    uv = np.empty(len(mesh.loops) * 2, np.float64)
    mesh.uv_layers.active.data.foreach_get("uv", uv)
    t = uv.reshape(-1, 2)[loops].reshape(-1, 3, 2)
    a, b = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return float(area), float(0.5 * np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum())


def base_color_image(materials):
    """The image feeding Base Color in the first material that has one; else the largest image."""
    images = []
    for mat in materials:
        for node in (mat.node_tree.nodes if mat and mat.node_tree else ()):
            if node.bl_idname == "ShaderNodeTexImage" and node.image is not None:
                if channel_of(node) == "basecolor":
                    return node.image
                images.append(node.image)
    return max(images, key=lambda im: im.size[0] * im.size[1], default=None)


def measure(objects) -> dict:
    meshes = mesh_objects(objects)
    totals = {"triangles": 0, "vertices": 0, "parts": 0, "boundary_edges": 0, "non_manifold_edges": 0}
    area = uv_area = 0.0
    materials = []
    for obj in meshes:
        mesh = obj.data
        counts = _edge_face_counts(mesh)
        totals["triangles"] += triangle_count(mesh)
        totals["vertices"] += len(mesh.vertices)
        totals["parts"] += face_parts(mesh)[1]
        totals["boundary_edges"] += int((counts == 1).sum())
        totals["non_manifold_edges"] += int(((counts > 2) | (counts == 0)).sum())
        a, u = _areas(mesh, world_matrix(obj))
        area, uv_area = area + a, uv_area + u
        materials += [m for m in mesh.materials if m is not None]
    lo, hi = world_bounds(meshes)
    image = base_color_image(materials)
    px = [int(image.size[0]), int(image.size[1])] if image is not None else [0, 0]
    density = (px[0] * px[1] * min(uv_area, 1.0) / area) ** 0.5 if area > 0 else 0.0
    return dict(totals, watertight=totals["boundary_edges"] == 0 and totals["non_manifold_edges"] == 0,
                size_m=[round(float(v), 6) for v in hi - lo], texture_px=px, texel_density=round(density, 3))

