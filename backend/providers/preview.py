"""Backend "Preview (no AI)": an offline stand-in for TRELLIS.2 built on preview_mesh.

It exists so a first run, the demo and the tests exercise the whole path with no GPU, network or key.
TRELLIS_PREVIEW_DELAY (seconds per stage) slows it down to watch or test progress and cancel.
"""
from __future__ import annotations

import os
import time

from .. import inputs, preview_mesh
from ..protocol import Cancelled, ErrorCode, Job, JobError

STAGES = ("mask", "shape", "texture", "export")
STAGE_TEXT = {"mask": "Finding foreground", "shape": "Inflating shape",
              "texture": "Baking textures", "export": "Writing GLB"}
MAPPINGS: dict = {}  # it takes every setting (and uses the model ones)


def run(job: Job, ctx) -> dict:
    settings = job.settings
    rgba = inputs.load_rgba(job.input["rgba"])
    count = settings["number_results"]
    delay = float(os.environ.get("TRELLIS_PREVIEW_DELAY", "0") or 0)
    files, seeds, faces = [], [], []
    for index in range(count):
        seed = (settings["seed"] + index) % 2**31
        prefix = f"Result {index + 1}/{count} · " if count > 1 else ""

        def progress(stage, step, total, index=index, prefix=prefix):
            ctx.check_cancel()
            part = STAGES.index(stage) + (step / total if total else 0.0)
            ctx.progress(stage, step, total, (index + part / len(STAGES)) / count, prefix + STAGE_TEXT[stage])
            if delay and step == 0:
                _sleep(delay, ctx)

        out_path = os.path.join(ctx.output_dir, f"result_{index}.glb")
        try:
            info = preview_mesh.generate(
                rgba, resolution=settings["resolution"], texture_size=settings["texture_size"],
                decimation_target=settings["decimation_target"], remesh=settings["remesh"], seed=seed,
                out_path=out_path, progress=progress, cancelled=ctx.cancelled)
        except preview_mesh.Cancelled:
            raise Cancelled() from None
        except ValueError as exc:
            raise JobError(ErrorCode.BAD_INPUT, str(exc)) from None
        files.append(out_path)
        seeds.append(seed)
        faces.append(info["faces"])
        ctx.log(f"result {index + 1}: {info['faces']} faces, seed {seed}")
    return {"files": files, "seeds": seeds, "cost": None, "info": {"faces": faces}}


def _sleep(seconds: float, ctx) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ctx.check_cancel()
        time.sleep(min(0.05, end - time.monotonic()) if end > time.monotonic() else 0)
