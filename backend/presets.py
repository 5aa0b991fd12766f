"""Bundled generation presets (users add their own through Blender's preset system).

Quality presets set the model settings and turn sampler overrides off; the four examples are the
configurations from Runware's TRELLIS.2 documentation, seed included.
"""
from __future__ import annotations

from . import schema


def _quality(resolution: int, texture_size: int, faces: int) -> dict:
    values = {"resolution": resolution, "texture_size": texture_size, "decimation_target": faces, "remesh": True}
    for stage in schema.STAGES:
        values[stage.override] = False
        values.update({p.name: p.default for p in stage.params})
    return values


def _example(seed: int, resolution: int, texture_size: int, samplers: dict) -> dict:
    """samplers: stage name -> (guidance_strength, guidance_rescale, steps, rescale_t), doc order."""
    values = {"seed": seed, "random_seed": False, "resolution": resolution, "texture_size": texture_size,
              "decimation_target": 500000, "remesh": True}
    for stage in schema.STAGES:
        strength, rescale, steps, rescale_t = samplers[stage.name]
        values[stage.override] = True
        values.update({f"{stage.name}_guidance_strength": strength, f"{stage.name}_guidance_rescale": rescale,
                       f"{stage.name}_steps": steps, f"{stage.name}_rescale_t": rescale_t})
    return values


BUNDLED = {
    "Draft": _quality(512, 1024, 100000),
    "Standard": _quality(1024, 2048, 500000),
    "High": _quality(1536, 4096, 1000000),
    "Orc Character Bust": _example(424242, 1024, 2048, {
        "sparse_structure": (8, 0.7, 30, 3), "shape_slat": (7.5, 0.7, 28, 3), "tex_slat": (8.5, 0.6, 30, 3)}),
    "Ornate Dragon Figurine": _example(246813579, 1536, 4096, {
        "sparse_structure": (8, 0.7, 30, 3), "shape_slat": (7.5, 0.7, 28, 3), "tex_slat": (8.5, 0.6, 32, 3)}),
    "Ornate Fantasy Helmet": _example(424242, 1536, 4096, {
        "sparse_structure": (8, 0.7, 30, 3), "shape_slat": (7.5, 0.7, 28, 3), "tex_slat": (8.5, 0.6, 32, 3)}),
    "Hero Product Figurine": _example(424242, 1536, 4096, {
        "sparse_structure": (8, 0.7, 28, 3), "shape_slat": (7.5, 0.7, 30, 3), "tex_slat": (8.5, 0.6, 32, 3)}),
}

# What a user preset file stores: every schema setting, the finish settings too.
PRESET_SETTINGS = tuple(p.name for p in schema.PARAMS + schema.FINISH_PARAMS)
