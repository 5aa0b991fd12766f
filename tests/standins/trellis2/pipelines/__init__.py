"""Stand-in for trellis2.pipelines: Trellis2ImageTo3DPipeline with the real surface."""
import os
import time
from typing import List, Optional

import numpy as np

from _record import record
import torch

from . import samplers

DEFAULTS = {  # pipeline.json sampler params
    "sparse_structure": {"steps": 12, "guidance_strength": 7.5, "guidance_rescale": 0.7,
                         "guidance_interval": [0.6, 1.0], "rescale_t": 5.0},
    "shape_slat": {"steps": 12, "guidance_strength": 7.5, "guidance_rescale": 0.5,
                   "guidance_interval": [0.6, 1.0], "rescale_t": 3.0},
    "tex_slat": {"steps": 12, "guidance_strength": 1.0, "guidance_rescale": 0.0,
                 "guidance_interval": [0.6, 0.9], "rescale_t": 3.0},
}


class MeshWithVoxel:
    def __init__(self, vertices, faces, origin, voxel_size, coords, attrs, voxel_shape, layout):
        self.vertices, self.faces, self.origin = vertices, faces, origin
        self.voxel_size, self.coords, self.attrs = voxel_size, coords, attrs
        self.voxel_shape, self.layout = voxel_shape, layout


class Trellis2ImageTo3DPipeline:
    @classmethod
    def from_pretrained(cls, path: str, config_file: str = "pipeline.json") -> "Trellis2ImageTo3DPipeline":
        record("from_pretrained", path=path, config_file=config_file)
        if os.environ.get("TRELLIS_STANDIN_GATED") == "1":
            raise OSError(f"You are trying to access a gated repo. Cannot access gated repo for url "
                          f"https://huggingface.co/{path}/resolve/main/{config_file}.")
        time.sleep(float(os.environ.get("TRELLIS_STANDIN_LOAD_SECONDS", "0") or 0))
        pipeline = cls()
        pipeline.sparse_structure_sampler = samplers.FlowEulerGuidanceIntervalSampler()
        pipeline.shape_slat_sampler = samplers.FlowEulerGuidanceIntervalSampler()
        pipeline.tex_slat_sampler = samplers.FlowEulerGuidanceIntervalSampler()
        pipeline.sparse_structure_sampler_params = dict(DEFAULTS["sparse_structure"])
        pipeline.shape_slat_sampler_params = dict(DEFAULTS["shape_slat"])
        pipeline.tex_slat_sampler_params = dict(DEFAULTS["tex_slat"])
        pipeline.low_vram = True
        pipeline.default_pipeline_type = "1024_cascade"
        pipeline.pbr_attr_layout = {"base_color": slice(0, 3), "metallic": slice(3, 4),
                                    "roughness": slice(4, 5), "alpha": slice(5, 6)}
        pipeline._device = "cpu"
        return pipeline

    def cuda(self):
        record("pipeline.cuda", low_vram=self.low_vram)
        self._device = "cuda"
        return self

    def preprocess_image(self, input):
        return input

    def run(self, image, num_samples: int = 1, seed: int = 42,  # noqa: B006 (the real signature)
            sparse_structure_sampler_params: dict = {}, shape_slat_sampler_params: dict = {},  # noqa: B006
            tex_slat_sampler_params: dict = {},  # noqa: B006
            preprocess_image: bool = True, return_latent: bool = False, pipeline_type: Optional[str] = None,
            max_num_tokens: int = 49152) -> List[MeshWithVoxel]:
        record("pipeline.run", image_size=list(image.size), image_mode=image.mode, num_samples=num_samples,
               seed=seed, sparse_structure_sampler_params=sparse_structure_sampler_params,
               shape_slat_sampler_params=shape_slat_sampler_params, tex_slat_sampler_params=tex_slat_sampler_params,
               preprocess_image=preprocess_image, return_latent=return_latent, pipeline_type=pipeline_type,
               max_num_tokens=max_num_tokens)
        if pipeline_type not in ("512", "1024", "1024_cascade", "1536_cascade"):
            raise ValueError(f"Invalid pipeline type: {pipeline_type}")
        flag = os.environ.get("TRELLIS_STANDIN_OOM_ONCE")
        if flag and not os.path.exists(flag):
            open(flag, "w").close()
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        shape_passes = 2 if pipeline_type.endswith("cascade") else 1  # cascades sample shape twice
        stages = ([("sparse_structure", "Sampling sparse structure", sparse_structure_sampler_params)]
                  + [("shape_slat", "Sampling shape SLat", shape_slat_sampler_params)] * shape_passes
                  + [("tex_slat", "Sampling texture SLat", tex_slat_sampler_params)])
        for stage, desc, params in stages:
            merged = {**getattr(self, f"{stage}_sampler_params"), **params}
            getattr(self, f"{stage}_sampler").sample(None, np.zeros(4), verbose=True, tqdm_desc=desc, **merged)
        res = {"512": 512, "1024": 1024, "1024_cascade": 1024, "1536_cascade": 1536}[pipeline_type]
        verts = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]], np.float32) - 0.25
        faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
        mesh = MeshWithVoxel(verts, faces, [-0.5] * 3, 1 / res, np.zeros((8, 3), np.int32),
                             np.zeros((8, 6), np.float32), (res,) * 3, self.pbr_attr_layout)
        return [mesh]


class Trellis2TexturingPipeline:
    """run(mesh, image, ...) as in trellis2_texturing.py: the mesh is centred and scaled into the unit cube
    (Z-up inside, Y-up again on output), UVs rebuilt (each face gets its own corners here, so the vertex
    count changes as with the real uv_unwrap), and the result stays normalized."""

    @classmethod
    def from_pretrained(cls, path: str, config_file: str = "pipeline.json") -> "Trellis2TexturingPipeline":
        record("from_pretrained", path=path, config_file=config_file, pipeline="texturing")
        pipeline = cls()
        pipeline.tex_slat_sampler = samplers.FlowEulerGuidanceIntervalSampler()
        pipeline.tex_slat_sampler_params = dict(DEFAULTS["tex_slat"])
        pipeline.low_vram = True
        pipeline._device = "cpu"
        return pipeline

    def cuda(self):
        record("pipeline.cuda", low_vram=self.low_vram, pipeline="texturing")
        self._device = "cuda"
        return self

    def preprocess_mesh(self, mesh):
        import trimesh
        vertices = np.array(mesh.vertices, np.float64)
        vertices_min, vertices_max = vertices.min(axis=0), vertices.max(axis=0)
        center = (vertices_min + vertices_max) / 2
        scale = 0.99999 / (vertices_max - vertices_min).max()
        vertices = (vertices - center) * scale
        tmp = vertices[:, 1].copy()
        vertices[:, 1] = -vertices[:, 2]
        vertices[:, 2] = tmp
        assert np.all(vertices >= -0.5) and np.all(vertices <= 0.5), "vertices out of range"
        return trimesh.Trimesh(vertices=vertices, faces=mesh.faces, process=False)

    def run(self, mesh, image, seed: int = 42, tex_slat_sampler_params: dict = {},  # noqa: B006 (real signature)
            preprocess_image: bool = True, resolution: int = 1024, texture_size: int = 2048):
        import trimesh
        record("texturing.run", vertices=len(mesh.vertices), faces=len(mesh.faces), image_size=list(image.size),
               seed=seed, tex_slat_sampler_params=tex_slat_sampler_params, preprocess_image=preprocess_image,
               resolution=resolution, texture_size=texture_size)
        mesh = self.preprocess_mesh(mesh)
        merged = {**self.tex_slat_sampler_params, **tex_slat_sampler_params}
        self.tex_slat_sampler.sample(None, np.zeros(4), verbose=True, tqdm_desc="Sampling texture SLat", **merged)
        vertices = mesh.vertices[mesh.faces.reshape(-1)]
        faces = np.arange(len(vertices)).reshape(-1, 3)
        vertices[:, 1], vertices[:, 2] = vertices[:, 2], -vertices[:, 1]
        return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
