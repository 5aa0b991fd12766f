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
