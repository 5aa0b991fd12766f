"""Stand-in for the parts of trimesh the local retexture path touches: load() of a GLB (first mesh, its
node's matrix or TRS applied, like Scene.to_mesh()), Trimesh with vertices/faces/export."""
import json
import struct

import numpy as np

from _record import record

__version__ = "0.0-standin"


class Trimesh:
    def __init__(self, vertices=None, faces=None, process=True, visual=None, vertex_normals=None, **kwargs):
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.visual = visual

    def export(self, file_obj=None, file_type=None, **kwargs):
        """A GLB with UVs and a PBR material, as the texturing pipeline's result has."""
        from backend import glb, png
        record("trimesh.export", file_obj=file_obj, kwargs=kwargs, vertices=len(self.vertices))
        lo, hi = self.vertices.min(0), self.vertices.max(0)
        uvs = (self.vertices[:, :2] - lo[:2]) / np.maximum(hi[:2] - lo[:2], 1e-9)
        normals = np.tile([0.0, 1.0, 0.0], (len(self.vertices), 1))
        pixel = png.encode_png(np.array([[[200, 40, 40, 255]]], np.uint8))
        glb.write_glb(file_obj, self.vertices, normals, uvs, self.faces, pixel, pixel, name="retextured")


class Scene:
    def __init__(self, mesh):
        self._mesh = mesh

    def to_mesh(self):
        return self._mesh


def _node_matrix(node) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], np.float64).reshape(4, 4).T
    t = np.array(node.get("translation", [0, 0, 0]), np.float64)
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = r * np.array(node.get("scale", [1, 1, 1]), np.float64)
    m[:3, 3] = t
    return m


def load(file_obj, file_type=None, **kwargs):
    """A Scene holding the GLB's first mesh in scene coordinates."""
    data = open(file_obj, "rb").read()
    json_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + json_len])
    binary = data[20 + json_len + 8:]

    def accessor(index):
        acc = doc["accessors"][index]
        view = doc["bufferViews"][acc["bufferView"]]
        dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}[acc["componentType"]]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        return np.frombuffer(binary, dtype, acc["count"] * width, start).reshape(-1, width)

    primitive = doc["meshes"][0]["primitives"][0]
    vertices = accessor(primitive["attributes"]["POSITION"]).astype(np.float64)
    faces = (accessor(primitive["indices"]).reshape(-1, 3) if "indices" in primitive
             else np.arange(len(vertices)).reshape(-1, 3))
    node = next((n for n in doc.get("nodes", []) if n.get("mesh") == 0), {})
    m = _node_matrix(node)
    vertices = vertices @ m[:3, :3].T + m[:3, 3]
    record("trimesh.load", file_obj=file_obj, vertices=len(vertices), faces=len(faces))
    return Scene(Trimesh(vertices, faces))
