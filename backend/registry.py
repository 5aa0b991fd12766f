"""The backends a worker can run, with what the UI needs to know about each."""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class BackendInfo:
    id: str
    label: str
    description: str
    module: str  # module in this package with run(job, ctx) -> dict
    is_ai: bool  # False for the offline stand-in
    needs_network: bool
    price_per_result: dict | None = None  # resolution -> rough USD estimate, for the spending guard
    cost_unit: str = "USD"  # what the result's cost counts: USD, or Scenario's creative units ("CU")
    modes: tuple = ("generate",)  # job modes: "generate" (image to mesh), "retexture" (mesh + image)
    model: str = ""  # the hosted model's id (part of history's cache key)
    can_quote: bool = False  # answers a cost quote without generating (options["quote_only"])

    def estimate_cost(self, settings: dict) -> float:
        if not self.price_per_result:
            return 0.0
        return self.price_per_result[settings["resolution"]] * settings["number_results"]


BACKENDS = (
    BackendInfo("preview", "Preview (no AI)",
                "Offline stand-in, not TRELLIS.2: inflates the image's foreground into a textured "
                "2.5-D mesh. Needs no GPU, network or key", "preview", False, False),
    BackendInfo("runware", "Runware (cloud)",
                "TRELLIS.2 on Runware's hosted API, about $0.03 per model at 1024. Needs an API key "
                "and online access; a submitted task is billed even if cancelled", "runware", True, True,
                # Runware bills by processing time: $0.0256 listed for 1024, $0.02-0.055 in its examples.
                {512: 0.02, 1024: 0.03, 1536: 0.05}, model="microsoft:trellis-2@4b"),
    BackendInfo("empiriolabs", "EmpirioLabs (cloud)",
                "TRELLIS.2 on EmpirioLabs' hosted API, about $0.25 per model at 1024 ($0.025 at 512). Needs an "
                "API key and online access; a submitted job is billed even if cancelled", "empiriolabs", True, True,
                {512: 0.025, 1024: 0.249, 1536: 0.499}, model="trellis-2-4b"),
    BackendInfo("scenario", "Scenario (cloud)",
                "TRELLIS.2 on Scenario's hosted API, paid in creative units (CU); can also retexture a mesh. "
                "Needs an API key and secret and online access", "scenario", True, True, None, "CU",
                ("generate", "retexture"), model="model_trellis-2", can_quote=True),
    BackendInfo("local", "Local GPU (TRELLIS.2)",
                "TRELLIS.2 on your NVIDIA GPU (24 GB+), in your TRELLIS.2 environment's Python: free, private, "
                "no upload. The model stays loaded between jobs", "local_trellis2", True, False,
                modes=("generate", "retexture")),
)
BY_ID = {b.id: b for b in BACKENDS}


def load(backend_id: str):
    info = BY_ID.get(backend_id)
    if info is None:
        raise KeyError(f"unknown backend {backend_id!r} (known: {', '.join(BY_ID)})")
    return importlib.import_module(f".{info.module}", __package__)
