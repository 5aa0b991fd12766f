"""Result meshes the test servers can hand back."""
import os
import tempfile

import numpy as np


def textured_box_glb(glb, png) -> bytes:
    """A unit-cube result as a hosted service may return it: normalized, with UVs and a material.
    glb, png: the extension's backend.glb and backend.png modules (from the repository or the installed zip)."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float32)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.uint32)
    vertices = corners[faces.reshape(-1)]
    uvs = np.tile([[0, 0], [1, 0], [0, 1]], (12, 1)).astype(np.float32)
    pixel = png.encode_png(np.array([[[10, 200, 30, 255]]], np.uint8))
    path = os.path.join(tempfile.mkdtemp(), "box.glb")
    glb.write_glb(path, vertices, np.tile([0, 1, 0], (36, 1)), uvs, np.arange(36, dtype=np.uint32).reshape(-1, 3),
                  pixel, pixel, name="retextured")
    with open(path, "rb") as f:
        return f.read()


def _cube_sphere(k: int, radius: float, center=(0.0, 0.0, 0.0)):
    """Triangles (T, 3, 3) of a cube subdivided k x k per side and blown onto a sphere, UVs (T, 3, 2) with
    one island per cube side (a 3 x 2 atlas), smooth normals. Shared corners get bit-identical positions."""
    tris, uvs = [], []
    for side in range(6):
        axis, sign = side // 2, (-1, 1)[side % 2]
        u_axis, v_axis = [a for a in range(3) if a != axis]
        if sign < 0:
            u_axis, v_axis = v_axis, u_axis  # keep every side's winding outward
        ox, oy = (side % 3) / 3, (side // 3) / 2
        for i in range(k):
            for j in range(k):
                quad = []
                for di, dj in ((0, 0), (1, 0), (1, 1), (0, 1)):
                    p = [0, 0, 0]
                    p[axis], p[u_axis], p[v_axis] = sign * k, 2 * (i + di) - k, 2 * (j + dj) - k
                    quad.append((p, (ox + (i + di) / k / 3 * 0.95, oy + (j + dj) / k / 2 * 0.95)))
                for a, b, c in ((0, 1, 2), (0, 2, 3)):
                    tris.append([quad[a][0], quad[b][0], quad[c][0]])
                    uvs.append([quad[a][1], quad[b][1], quad[c][1]])
    ints = np.array(tris, np.float64)
    unit = ints / np.linalg.norm(ints, axis=2, keepdims=True)
    return (unit * radius + np.array(center)).astype(np.float32), unit.astype(np.float32), np.array(uvs, np.float32)


def defect_glb(glb, png, path: str) -> dict:
    """A result with the defects TRELLIS.2 results have, written with backend.glb to `path`:
    - every vertex split (each triangle has its own three; the glTF importer keeps them apart),
    - an outer sphere (radius 0.5, 6 x 18 x 18 x 2 triangles) with a hole (one quad left out),
    - a closed inner shell (radius 0.2, 192 triangles, 4.6 % of the faces: kept by the part filter),
    - a floating box (12 triangles, 0.29 % of the faces: under the default 0.5 %) at x = +0.8.
    Names like TRELLIS.2's ("geometry_0"). Returns the triangle counts per part and the design."""
    outer = _cube_sphere(18, 0.5)
    keep = np.ones(len(outer[0]), bool)
    keep[[100, 101]] = False  # one quad of the first side: a hole with four boundary edges
    outer = tuple(a[keep] for a in outer)
    inner = _cube_sphere(4, 0.2)
    box = _cube_sphere(1, 0.05 * 3 ** 0.5, center=(0.8, 0.0, 0.0))
    parts = (outer, inner, box)
    positions = np.concatenate([p[0] for p in parts]).reshape(-1, 3)
    normals = np.concatenate([p[1] for p in parts]).reshape(-1, 3)
    uvs = np.concatenate([p[2] for p in parts]).reshape(-1, 2)
    yy, xx = np.mgrid[0:64, 0:64]
    color = np.stack([xx * 4, yy * 4, (xx + yy) * 2, np.full_like(xx, 255)], -1).astype(np.uint8)
    mr = np.stack([np.zeros_like(xx), 60 + xx * 2, (yy > 32) * 255], -1).astype(np.uint8)
    glb.write_glb(path, positions, normals, uvs, np.arange(len(positions), dtype=np.uint32).reshape(-1, 3),
                  png.encode_png(color), png.encode_png(mr), name="geometry_0")
    return {"outer": len(outer[0]), "inner": len(inner[0]), "floater": len(box[0]), "hole_edges": 4}


def noisy_picture(side: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 picture: smooth colour fields with grain (compresses like a photo, not like a flat
    test card); a darker disc in the middle as the subject."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    subject = ((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.09
    base = np.stack([200 * x + 30, 180 * y + 40, 120 * (1 - x) + 60, np.full_like(x, 255)][:channels], -1)
    base[subject, :3] *= 0.45
    grain = rng.integers(-24, 25, size=base.shape[:2] + (min(channels, 3),), dtype=np.int16)
    base[..., :3] += grain
    return np.clip(base, 0, 255).astype(np.uint8)


def dense_glb(glb, png, path: str, faces: int, texture_px: int) -> dict:
    """A result as large as TRELLIS.2's: a sphere of about `faces` triangles (vertices shared within each
    UV island, as an exported unwrapped mesh has them) with texture_px² base colour and metallic-roughness
    textures with grain, written with backend.glb to `path`. Returns the counts."""
    k = max(1, int(round((faces / 12) ** 0.5)))
    positions, normals, uvs = (a.reshape(-1, a.shape[-1]) for a in _cube_sphere(k, 0.5))
    keys = np.concatenate([positions, uvs], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    indices = inverse.reshape(-1, 3).astype(np.uint32)
    mr = noisy_picture(texture_px, 3, seed=1)
    mr[..., 0] = 0
    glb.write_glb(path, positions[first], normals[first], uvs[first], indices,
                  png.encode_png(noisy_picture(texture_px, 4)), png.encode_png(mr), name="geometry_0")
    return {"faces": int(len(indices)), "vertices": int(len(first)), "bytes": os.path.getsize(path)}
