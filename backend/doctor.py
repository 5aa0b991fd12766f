"""Check a TRELLIS.2 environment: run with that environment's Python as
`python -m backend.doctor [--model ID_OR_FOLDER]` from the extension folder. Prints one JSON report:
{"ready": bool, "checks": [{"name", "ok", "detail", "optional"}]}. Never loads the weights.
"""
from __future__ import annotations

import importlib
import json
import os
import sys

REQUIRED = ("torch", "trellis2", "o_voxel", "flex_gemm", "cumesh", "nvdiffrast", "transformers", "trimesh",
            "cv2", "easydict", "PIL", "huggingface_hub")
ATTENTION_PACKAGES = {"flash_attn": "flash_attn", "flash_attn_3": "flash_attn_interface", "xformers": "xformers"}


def check(checks: list, name: str, ok: bool, detail: str = "", optional: bool = False) -> bool:
    checks.append({"name": name, "ok": bool(ok), "detail": detail, "optional": optional})
    return ok


def importable(name: str) -> tuple[bool, str]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # a broken install raises more than ImportError
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return True, str(getattr(module, "__version__", "") or "installed")


def weights_offline(model: str) -> tuple[bool, str]:
    if os.path.isdir(model):
        found = os.path.isfile(os.path.join(model, "pipeline.json"))
        return found, f"{model}: {'pipeline.json found' if found else 'no pipeline.json'}"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False, "huggingface_hub missing"
    cached = try_to_load_from_cache(model, "pipeline.json")
    if isinstance(cached, str):
        return True, f"{model} is in the Hugging Face cache"
    return False, f"{model} is not in the local cache: the first job downloads about 16 GB (gated parts need a login)"


def run(model: str) -> dict:
    checks: list = []
    version = sys.version.split()[0]
    check(checks, "Python", sys.version_info >= (3, 10), f"{version} at {sys.executable}")
    torch_ok, torch_detail = importable("torch")
    check(checks, "torch", torch_ok, torch_detail)
    if torch_ok:
        import torch
        cuda = torch.cuda.is_available()
        check(checks, "CUDA", cuda, f"CUDA {getattr(torch.version, 'cuda', None)}" if cuda else
              "torch.cuda.is_available() is False")
        for index in range(torch.cuda.device_count() if cuda else 0):
            free, total = torch.cuda.mem_get_info(index)
            check(checks, f"GPU {index}", total >= 23 * 2**30,
                  f"{torch.cuda.get_device_name(index)}, {free / 2**30:.1f} of {total / 2**30:.1f} GB free"
                  + ("" if total >= 23 * 2**30 else " (TRELLIS.2 needs 24 GB)"))
    for name in REQUIRED[1:]:
        check(checks, name, *importable(name))
    backend = os.environ.get("ATTN_BACKEND", "flash_attn")
    package = ATTENTION_PACKAGES.get(backend)
    if package:
        ok, detail = importable(package)
        check(checks, f"attention: {backend}", ok, detail)
    else:
        check(checks, f"attention: {backend}", True, "built into torch")
    check(checks, "spconv", *importable("spconv"), optional=True)
    check(checks, "weights offline", *weights_offline(model), optional=True)
    return {"ready": all(c["ok"] for c in checks if not c["optional"]), "checks": checks}


def main() -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m backend.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("TRELLIS2_MODEL") or "microsoft/TRELLIS.2-4B")
    args = parser.parse_args()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the imports print goes to stderr, the report alone to stdout
    sys.stdout = sys.stderr
    out.write(json.dumps(run(args.model)) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
