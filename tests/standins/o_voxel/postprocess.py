"""Stand-in for o_voxel.postprocess: to_glb with the real signature and its six tqdm steps."""
import json
import struct
from typing import Dict, Union

import numpy as np
from tqdm import tqdm

from _record import record


class Trimesh:
    """What to_glb returns: a trimesh.Trimesh; export() writes a real GLB."""

    def __init__(self, vertices, faces):
        self.vertices, self.faces = np.asarray(vertices, np.float32), np.asarray(faces, np.uint32)

    def export(self, file_obj=None, file_type=None, **kwargs):
        record("Trimesh.export", file_obj=file_obj, kwargs=kwargs)
        pos, idx = self.vertices.tobytes(), self.faces.tobytes()
        doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
               "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
               "accessors": [{"bufferView": 0, "componentType": 5126, "count": len(self.vertices), "type": "VEC3",
                              "min": self.vertices.min(0).tolist(), "max": self.vertices.max(0).tolist()},
                             {"bufferView": 1, "componentType": 5125, "count": self.faces.size, "type": "SCALAR"}],
               "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos)},
                               {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx)}],
               "buffers": [{"byteLength": len(pos) + len(idx)}]}
        js = json.dumps(doc).encode()
        js += b" " * (-len(js) % 4)
        binary = pos + idx
        total = 12 + 8 + len(js) + 8 + len(binary)
        with open(file_obj, "wb") as f:
            f.write(b"glTF" + struct.pack("<II", 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
                    + struct.pack("<II", len(binary), 0x004E4942) + binary)


def to_glb(vertices, faces, attr_volume, coords, attr_layout: Dict[str, slice],
           aabb: Union[list, tuple, np.ndarray], voxel_size=None, grid_size=None, decimation_target: int = 1000000,
           texture_size: int = 2048, remesh: bool = False, remesh_band: float = 1, remesh_project: float = 0.9,
           mesh_cluster_threshold_cone_half_angle_rad=np.radians(90.0),  # noqa: B008 (the real signature)
           mesh_cluster_refine_iterations=0,
           mesh_cluster_global_iterations=1, mesh_cluster_smooth_strength=1, verbose: bool = False,
           use_tqdm: bool = False):
    record("to_glb", attr_layout=sorted(attr_layout), aabb=aabb, voxel_size=voxel_size, grid_size=grid_size,
           decimation_target=decimation_target, decimation_target_type=type(decimation_target).__name__,
           texture_size=texture_size, remesh=remesh, remesh_band=remesh_band, remesh_project=remesh_project,
           use_tqdm=use_tqdm)
    if use_tqdm:
        pbar = tqdm(total=6, desc="Extracting GLB")
        for desc in ("Building BVH", "Cleaning mesh", "Parameterizing new mesh", "Sampling attributes",
                     "Finalizing mesh"):
            pbar.update(1)
            pbar.set_description(desc)
        pbar.update(1)
        pbar.close()
    return Trimesh(vertices, faces)
