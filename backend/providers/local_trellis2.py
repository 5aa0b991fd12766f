"""Backend "Local GPU": microsoft/TRELLIS.2 on the user's CUDA GPU, in the TRELLIS.2 environment's Python.

The worker keeps the loaded pipeline between jobs, so only the first job pays for loading the weights.
The calls follow microsoft/TRELLIS.2 (app.py and trellis2/pipelines/trellis2_image_to_3d.py):
Trellis2ImageTo3DPipeline.from_pretrained(model) -> .cuda() -> .run(...) -> o_voxel.postprocess.to_glb
-> .export(path). Runs on Python 3.10+. ATTN_BACKEND / SPARSE_ATTN_BACKEND are set by the add-on in
the worker's environment before anything imports trellis2.

Options (protocol.LocalOptions): model (hub id or local folder), low_vram, gpu, webp.
Mode "generate" takes every schema setting (no mapping); mode "retexture" (job.input["mesh"]: a GLB) runs
Trellis2TexturingPipeline (texturing_pipeline.json) with the settings of MAPPINGS["retexture"].
The local-only knobs (guidance interval, max_num_tokens, preprocess_image, remesh band/project) are
schema settings (schema.LOCAL_PARAMS).
"""
from __future__ import annotations

import gc
import os
import sys

from .. import glb, inputs, registry, schema
from ..protocol import Cancelled, ErrorCode, Job, JobError, LocalOptions
from .mapping import SEED_MAX, Knob, Mapping, snake, stage_knobs

# The local texturing pipeline: run(mesh, image, seed, tex_slat_sampler_params, preprocess_image,
# resolution, texture_size); its sampler dict takes the guidance interval too.
LOCAL_RETEXTURE = Mapping("local_retexture", "Local retexture", (
    Knob("resolution", "resolution", choices=(512, 1024)),
    Knob("texture_size", "texture_size", choices=(1024, 2048, 4096)),
    Knob("seed", "seed", 0, SEED_MAX),
    Knob("preprocess_image", "preprocess_image"),
) + stage_knobs(snake({"tex_slat": "tex_slat"}), {}, stages=(schema.STAGES[2],), interval=True))
MAPPINGS = {"retexture": LOCAL_RETEXTURE}  # generate: every schema setting
STAGE_LABELS = {"sparse_structure": "Sparse structure", "shape_slat": "Shape", "tex_slat": "Texture",
                "export": "Export"}
# Share of one result's progress bar per stage (sampling dominates).
WEIGHTS = {"sparse_structure": 0.15, "shape_slat": 0.45, "tex_slat": 0.25, "export": 0.15}

_loaded: dict = {}  # {"key": (model, low_vram, gpu), "pipeline": ...}: survives between jobs


def _require_python() -> None:
    if sys.version_info < (3, 10):
        raise JobError(ErrorCode.PYTHON, f"The TRELLIS.2 environment runs Python {sys.version.split()[0]}; the worker "
                               "needs Python 3.10 or newer (TRELLIS.2's setup.sh makes a 3.10 environment)")


def _import(name: str):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as exc:
        missing = exc.name or name
        raise JobError(ErrorCode.MISSING_PACKAGE, f"The TRELLIS.2 environment lacks the package {missing!r} (needed "
                                                  f"by {name}); install it there (see TRELLIS.2's setup.sh)") from None


PIPELINES = {"generate": ("Trellis2ImageTo3DPipeline", "pipeline.json"),
             "retexture": ("Trellis2TexturingPipeline", "texturing_pipeline.json")}


def load_pipeline(options: LocalOptions, ctx, mode: str = "generate"):
    """The cached pipeline for the mode, or a new one loaded once and moved to the GPU."""
    model = options.model or registry.get("local").model
    low_vram, gpu = options.low_vram, options.gpu
    key = (model, low_vram, gpu, mode)
    if _loaded.get("key") == key:
        return _loaded["pipeline"]
    unload()
    torch = _import("torch")
    if not torch.cuda.is_available():
        raise JobError(ErrorCode.NO_CUDA, "No CUDA GPU is visible to the TRELLIS.2 environment (torch.cuda."
                                          "is_available() is False): check the NVIDIA driver and that torch is a CUDA "
                                          "build")
    torch.cuda.set_device(gpu)
    pipelines = _import("trellis2.pipelines")
    ctx.progress("load", 0, 1, 0.0, f"Loading TRELLIS.2 ({model})")
    try:
        class_name, config_file = PIPELINES[mode]
        cls = getattr(pipelines, class_name)
        if mode == "generate":
            pipeline = cls.from_pretrained(model)
        else:
            pipeline = cls.from_pretrained(model, config_file=config_file)
    except (OSError, ValueError) as exc:
        text = str(exc)
        if "gated" in text.lower() or "401" in text or "403" in text:
            raise JobError(ErrorCode.WEIGHTS, f"The weights of {model} (or a model it uses) are gated: accept the "
                                          "licence on huggingface.co and log in (huggingface-cli login)") from None
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise JobError(ErrorCode.WEIGHTS, f"Could not load the weights from {model}: {first_line}") from None
    pipeline.low_vram = low_vram  # before .cuda(): off keeps every model on the GPU
    pipeline.cuda()
    _loaded.update(key=key, pipeline=pipeline)
    ctx.log(f"loaded {model} {PIPELINES[mode][0]} (low_vram={low_vram}, gpu {gpu})")
    return pipeline


def unload() -> None:
    if _loaded.pop("pipeline", None) is not None:
        _loaded.clear()
        gc.collect()
        try:
            __import__("torch").cuda.empty_cache()
        except ImportError:
            pass


def sampler_params(settings: dict, stage: schema.Stage) -> dict:
    """The stage's sampler dict: {} when not overridden (pipeline.json applies), else the four shared
    knobs plus the local-only guidance interval. Never verbose/tqdm_desc: the pipeline passes those."""
    params = schema.sampler_params(settings, stage)
    if params is None:
        return {}
    prefix = f"{stage.name}_guidance_interval_"
    params["guidance_interval"] = [float(settings[prefix + "start"]), float(settings[prefix + "end"])]
    return params


class Progress:
    """Per-step progress from the pipeline's sampler instances and o_voxel's tqdm, cancel between steps."""

    def __init__(self, ctx, index: int, count: int, shape_passes: int, weights: dict = WEIGHTS):
        self.ctx, self.index, self.count = ctx, index, count
        self.shape_passes, self.shape_pass = shape_passes, 0
        self.weights = weights
        self.stage, self.step, self.total = "", 0, 0

    def fraction(self) -> float:
        weights = self.weights
        order = list(weights)
        done = sum(weights[s] for s in order[:order.index(self.stage)]) if self.stage in weights else 0.0
        share = self.step / self.total if self.total else 0.0
        if self.stage == "shape_slat":
            share = (self.shape_pass - 1 + share) / self.shape_passes
        return (self.index + done + weights.get(self.stage, 0) * share) / self.count

    def report(self) -> None:
        label = STAGE_LABELS[self.stage]
        if self.stage == "shape_slat" and self.shape_passes > 1:
            label += f" ({self.shape_pass}/{self.shape_passes})"
        prefix = f"Result {self.index + 1}/{self.count} · " if self.count > 1 else ""
        self.ctx.progress(self.stage, self.step, self.total, self.fraction(), prefix + label)

    def wrap(self, pipeline) -> list:
        """Instance attributes shadowing each sampler's sample/sample_once; returns what to undo."""
        patched = []
        for stage in ("sparse_structure", "shape_slat", "tex_slat"):
            sampler = getattr(pipeline, f"{stage}_sampler", None)
            if sampler is None:  # the texturing pipeline samples textures only
                continue
            sample, sample_once = sampler.sample, sampler.sample_once

            def sample_hook(*args, _stage=stage, _sample=sample, **kwargs):
                self.ctx.check_cancel()
                self.stage, self.step, self.total = _stage, 0, int(kwargs.get("steps") or 0)
                if _stage == "shape_slat":
                    self.shape_pass += 1
                self.report()
                return _sample(*args, **kwargs)

            def sample_once_hook(*args, _once=sample_once, **kwargs):
                self.ctx.check_cancel()
                out = _once(*args, **kwargs)
                self.step += 1
                self.report()
                return out

            sampler.sample, sampler.sample_once = sample_hook, sample_once_hook
            patched.append(sampler)
        return patched

    def tqdm_class(self):
        """A tqdm look-alike for o_voxel.postprocess: its six GLB steps become export progress."""
        progress = self

        class ExportBar:
            def __init__(self, total=None, desc="", **kwargs):
                progress.stage, progress.step, progress.total = "export", 0, int(total or 6)
                progress.report()

            def update(self, n=1):
                progress.ctx.check_cancel()
                progress.step = min(progress.step + n, progress.total)
                progress.report()

            def set_description(self, desc=None, refresh=True):
                pass

            def close(self):
                pass

        return ExportBar


def _unwrap(samplers: list) -> None:
    for sampler in samplers:
        for name in ("sample", "sample_once"):
            sampler.__dict__.pop(name, None)


def _is_oom(exc: BaseException, torch) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return (oom and isinstance(exc, oom)) or "CUDA out of memory" in str(exc)


RETEXTURE_WEIGHTS = {"tex_slat": 0.85, "export": 0.15}


def normalization(vertices) -> tuple:
    """(center, scale) the texturing pipeline applies: (v - center) * scale fits the unit cube."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    return (lo + hi) / 2, 0.99999 / float((hi - lo).max())


def _export(ctx, options: LocalOptions, index: int, make, oom_text: str) -> str:
    """output_dir/result_{index}.glb from make() -> a mesh with .export, checked; a CUDA OOM becomes
    JobError(CUDA_OOM, oom_text) with the GPU memory freed, so the worker stays up for the next job."""
    path = os.path.join(ctx.output_dir, f"result_{index}.glb")
    torch = _import("torch")
    try:
        out = make()
        out.export(path, extension_webp=True) if options.webp else out.export(path)
    except Cancelled:
        raise
    except Exception as exc:
        if _is_oom(exc, torch):
            gc.collect()
            torch.cuda.empty_cache()
            raise JobError(ErrorCode.CUDA_OOM, oom_text) from None
        raise
    try:
        glb.validate_glb(path)
    except ValueError as exc:
        raise JobError(ErrorCode.BAD_OUTPUT, f"TRELLIS.2 wrote an unreadable GLB: {exc}") from None
    return path


def _seeds(settings: dict) -> list[int]:
    return [(settings["seed"] + i) % 2**31 for i in range(settings["number_results"])]  # one run per seed


def retexture(job: Job, ctx) -> dict:
    """Trellis2TexturingPipeline.run on the job's mesh, as in TRELLIS.2's app_texturing.py. Its output is
    centred and scaled to the unit cube (same axes as the input); the worker scales it back, so the
    result lies where the input mesh did (scene coordinates of the GLB)."""
    settings = job.settings
    pipeline = load_pipeline(job.options, ctx, "retexture")
    trimesh = _import("trimesh")
    image = _import("PIL.Image").fromarray(inputs.load_rgba(job.input["rgba"]), "RGBA")
    try:
        mesh = trimesh.load(job.input["mesh"])
    except (OSError, ValueError) as exc:
        raise JobError(ErrorCode.BAD_INPUT, f"cannot read the mesh {os.path.basename(job.input['mesh'])}: "
                                            f"{exc}") from None
    if hasattr(mesh, "to_mesh"):  # a Scene
        mesh = mesh.to_mesh()
    center, scale = normalization(mesh.vertices)
    params = sampler_params(settings, schema.STAGES[2])
    seeds = _seeds(settings)
    files = []
    for index, seed in enumerate(seeds):
        progress = Progress(ctx, index, len(seeds), 1, RETEXTURE_WEIGHTS)

        def make(seed=seed, progress=progress):
            out = pipeline.run(mesh, image, seed=seed, tex_slat_sampler_params=params,
                               preprocess_image=bool(settings["preprocess_image"]),
                               resolution=int(settings["resolution"]), texture_size=int(settings["texture_size"]))
            progress.stage, progress.step, progress.total = "export", 0, 1
            progress.report()
            out.vertices = out.vertices / scale + center
            return out

        patched = progress.wrap(pipeline)
        try:
            oom = f"CUDA out of memory retexturing at resolution {settings['resolution']}: turn on Low VRAM or " \
                  "choose 512"
            files.append(_export(ctx, job.options, index, make, oom))
        finally:
            _unwrap(patched)
    return {"files": files, "seeds": seeds, "cost": None,
            "info": {"mode": "retexture", "restored": True,
                     "normalization": {"center": [float(c) for c in center], "scale": scale}}}


def run(job: Job, ctx) -> dict:
    _require_python()
    if job.mode == "retexture":
        return retexture(job, ctx)
    settings = job.settings
    pipeline = load_pipeline(job.options, ctx)
    postprocess = _import("o_voxel.postprocess")
    image = _import("PIL.Image").fromarray(inputs.load_rgba(job.input["rgba"]), "RGBA")
    pipeline_type = schema.PIPELINE_TYPES[settings["resolution"]]
    stage_params = {s.name: sampler_params(settings, s) for s in schema.STAGES}
    seeds = _seeds(settings)  # num_samples > 1 is not safe
    files = []
    for index, seed in enumerate(seeds):
        progress = Progress(ctx, index, len(seeds), 2 if pipeline_type.endswith("cascade") else 1)

        def make(seed=seed):
            mesh = pipeline.run(
                image, num_samples=1, seed=seed,
                sparse_structure_sampler_params=stage_params["sparse_structure"],
                shape_slat_sampler_params=stage_params["shape_slat"],
                tex_slat_sampler_params=stage_params["tex_slat"],
                preprocess_image=bool(settings["preprocess_image"]), pipeline_type=pipeline_type,
                max_num_tokens=int(settings["max_num_tokens"]))[0]
            return postprocess.to_glb(
                vertices=mesh.vertices, faces=mesh.faces, attr_volume=mesh.attrs, coords=mesh.coords,
                attr_layout=mesh.layout, voxel_size=mesh.voxel_size, aabb=[[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]],
                decimation_target=int(settings["decimation_target"]), texture_size=int(settings["texture_size"]),
                remesh=bool(settings["remesh"]), remesh_band=float(settings["remesh_band"]),
                remesh_project=float(settings["remesh_project"]), use_tqdm=True)

        patched = progress.wrap(pipeline)
        original_tqdm = getattr(postprocess, "tqdm", None)
        postprocess.tqdm = progress.tqdm_class()
        try:
            oom = (f"CUDA out of memory at resolution {settings['resolution']}: turn on Low VRAM, choose a lower "
                   "resolution or fewer max tokens")
            files.append(_export(ctx, job.options, index, make, oom))
        finally:
            _unwrap(patched)
            if original_tqdm is not None:
                postprocess.tqdm = original_tqdm
        ctx.log(f"result {index + 1}: seed {seed}, {pipeline_type}")
    return {"files": files, "seeds": seeds, "cost": None, "info": {"pipeline_type": pipeline_type}}
