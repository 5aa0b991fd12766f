"""Add-on preferences and the folders jobs write to."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import bpy

from ..backend import registry
from . import doctor, signing

base_package = __package__.rpartition(".")[0]  # the extension's package


def hosted_backends() -> list[registry.BackendInfo]:
    return [b for b in registry.BACKENDS if b.needs_network]


def _access_properties() -> dict:
    """A key (and secret) and a URL override per hosted backend of the registry."""
    out = {}
    for info in hosted_backends():
        for credential in info.credentials:
            out[info.credential_pref(credential)] = bpy.props.StringProperty(
                name=f"{info.short_label} {credential.label}", subtype="PASSWORD", description=credential.description)
        out[info.url_pref()] = bpy.props.StringProperty(
            name=f"{info.short_label} URL",
            description=f"API root (proxies, testing), with or without its /v1. Empty: {info.url_env} or "
                        f"{info.default_url}")
    return out


class TRELLIS_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = base_package

    output_dir: bpy.props.StringProperty(
        name="Results Folder", subtype="DIR_PATH",
        description="Where each job keeps its input, GLB files and log. Empty: the extension's user folder")

    asset_library: bpy.props.StringProperty(
        name="Asset Library Folder", subtype="DIR_PATH",
        description="Each finished result is also saved here as its own .blend (result, LODs, low-poly; images "
                    "packed; marked as an asset), and the folder is registered once as an asset library, so "
                    "every file's Asset Browser shows it. Empty: off")
    shared_key_file: bpy.props.StringProperty(
        name="Shared Signing Key", subtype="FILE_PATH",
        description="A key file the team shares, for a Results Folder several people write on purpose: this "
                    "Blender then opens the snapshots any of them signed. Empty: your own key, in the "
                    "extension's user folder (snapshots of other people are imported again from their GLB)")
    max_megapixels: bpy.props.FloatProperty(
        name="Max Megapixels", default=64.0, min=1.0, soft_max=400.0, precision=0,
        description="Pictures larger than this (width × height, in millions of pixels) are refused before "
                    "Blender decodes them; a 16-bit or floating-point picture counts four times (it decodes "
                    "to four times the bytes)")
    history_cap_gb: bpy.props.FloatProperty(
        name="Keep at Most (GB)", default=20.0, min=0.0, soft_max=500.0, precision=1,
        description="History size cap: the oldest results are deleted beyond it (never a running job or a "
                    "paid task not yet downloaded). 0: keep everything")

    worker_memory_gb: bpy.props.FloatProperty(
        name="Import Memory Limit (GB)", default=0.0, min=0.0, soft_max=64.0, precision=1,
        description="A background Blender that reads a picture or imports a result may use this much memory "
                    "(address space); past it, it stops and the job fails, the result kept in history. 0: three "
                    "quarters of this computer's memory, at most 16 GB")
    worker_deadline_minutes: bpy.props.FloatProperty(
        name="Import Deadline (min)", default=15.0, min=0.5, max=240.0, precision=1,
        description="A background Blender still reading a picture or importing and finishing a result after "
                    "this many minutes is stopped and the job fails, the result kept in history")
    max_download_mb: bpy.props.IntProperty(
        name="Download Cap (MB)", default=1024, min=1, soft_max=16384,
        description="A hosted result file larger than this is refused before it is written (and a download "
                    "that passes it is stopped)")
    poll_timeout_minutes: bpy.props.FloatProperty(
        name="Remote Timeout", default=20.0, min=1.0, max=240.0, subtype="TIME_ABSOLUTE",
        description="Give up waiting for a hosted result after this many minutes")
    confirm_above: bpy.props.FloatProperty(
        name="Confirm Above", default=0.25, min=0.0, precision=2,
        description="Ask before a hosted job whose estimated cost (USD) is above this. 0: always ask")
    max_parallel_jobs: bpy.props.IntProperty(
        name="Parallel Jobs", default=3, min=1, max=16,
        description="Hosted and offline jobs that run at once; more wait in the queue. Local GPU jobs "
                    "always run one at a time")
    session_cap: bpy.props.FloatProperty(
        name="Session Cap", default=5.0, min=0.0, precision=2,
        description="Refuse hosted jobs once this session's spending (USD) would pass this. 0: no cap")
    session_credit_cap: bpy.props.FloatProperty(
        name="Credit Cap", default=0.0, min=0.0, precision=0,
        description="Refuse Scenario jobs once this session's creative units (CU) would pass this. The job's "
                    "estimate is the last price Scenario reported (a result or a quote) at that resolution. "
                    "0: no cap")

    local_python: bpy.props.StringProperty(
        name="TRELLIS.2 Python", subtype="FILE_PATH",
        description="The python executable of your TRELLIS.2 environment (e.g. ~/miniconda3/envs/trellis2/bin/"
                    "python). Empty: the TRELLIS2_PYTHON environment variable")
    local_repo: bpy.props.StringProperty(
        name="TRELLIS.2 Folder", subtype="DIR_PATH",
        description="Your clone of microsoft/TRELLIS.2, put on the worker's import path. Empty: trellis2 is "
                    "importable in that environment already")
    local_model: bpy.props.StringProperty(
        name="Model", description="Hugging Face id or a local folder with pipeline.json (offline use). "
                                  "Empty: TRELLIS2_MODEL or microsoft/TRELLIS.2-4B")
    local_gpu: bpy.props.IntProperty(name="GPU", min=0, max=15, description="CUDA device index")
    local_low_vram: bpy.props.BoolProperty(
        name="Low VRAM", default=True,
        description="Move each sub-model to the GPU only for its stage (the pipeline's low_vram). Off: faster, "
                    "far more VRAM")
    local_attention: bpy.props.EnumProperty(
        name="Attention", default="flash_attn",
        items=[("flash_attn", "flash-attn", "ATTN_BACKEND=flash_attn (TRELLIS.2's default)"),
               ("xformers", "xFormers", "ATTN_BACKEND=xformers, for GPUs flash-attn does not support"),
               ("flash_attn_3", "flash-attn 3", "ATTN_BACKEND=flash_attn_3 (Hopper)"),
               ("sdpa", "PyTorch SDPA", "ATTN_BACKEND=sdpa (dense attention only; sparse stays default)"),
               ("naive", "Naive", "ATTN_BACKEND=naive (slow; debugging)")])
    local_keep_minutes: bpy.props.FloatProperty(
        name="Keep Model Loaded", default=10.0, min=0.0, max=1440.0,
        description="Minutes the model stays in GPU memory after the last local job. 0: until Blender quits")
    local_webp: bpy.props.BoolProperty(
        name="WebP Textures", description="Smaller GLBs with lossy WebP textures (EXT_texture_webp). Off: PNG")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "output_dir")
        layout.label(text=f"In use: {jobs_root(create=False)}", icon="FILE_FOLDER")
        layout.prop(self, "history_cap_gb")
        layout.prop(self, "max_megapixels")
        layout.prop(self, "shared_key_file")
        row = layout.row()
        row.prop(self, "worker_memory_gb")
        row.prop(self, "worker_deadline_minutes")
        layout.prop(self, "asset_library")
        box = layout.box()
        box.label(text="Hosted TRELLIS.2", icon="WORLD")
        for info in hosted_backends():
            sub = box.box()
            unit = f", paid in {info.cost_unit}" if info.cost_unit != "USD" else ""
            sub.label(text=info.label + unit, icon="WORLD")
            for credential in info.credentials:
                name = info.credential_pref(credential)
                sub.prop(self, name)
                if not getattr(self, name):
                    found = "found" if os.environ.get(credential.env) else "not set"
                    sub.label(text=f"{credential.env} environment variable: {found}", icon="INFO")
            sub.prop(self, info.url_pref())
        box.prop(self, "poll_timeout_minutes")
        box.prop(self, "max_download_mb")
        box.prop(self, "max_parallel_jobs")
        row = box.row()
        row.prop(self, "confirm_above")
        row.prop(self, "session_cap")
        row.prop(self, "session_credit_cap")
        if not bpy.app.online_access:
            box.label(text="Online access is off: Preferences ▸ System ▸ Network ▸ Allow Online Access",
                      icon="ERROR")
        box = layout.box()
        box.label(text="Local GPU (your TRELLIS.2 environment)", icon="DESKTOP")
        for name in ("local_python", "local_repo", "local_model", "local_gpu", "local_low_vram",
                     "local_attention", "local_keep_minutes", "local_webp"):
            box.prop(self, name)
        row = box.row()
        row.operator("trellis.check_local_setup", icon="CHECKMARK")
        row.operator("trellis.unload_model", icon="X")
        doctor.draw(box)


def get() -> TRELLIS_AP_preferences | None:
    addon = bpy.context.preferences.addons.get(base_package)
    return addon.preferences if addon else None


def jobs_root(create: bool = True) -> str:
    prefs = get()
    custom = bpy.path.abspath(prefs.output_dir) if prefs and prefs.output_dir else ""
    if custom:
        if create:
            os.makedirs(custom, exist_ok=True)
        return custom
    return bpy.utils.extension_path_user(base_package, path="jobs", create=create)


def signing_key_path() -> str:
    """The key file snapshots are signed with: the Shared Signing Key preference, else this user's own."""
    p = get()
    if p and p.shared_key_file:
        return os.path.abspath(bpy.path.abspath(p.shared_key_file))
    return os.path.join(bpy.utils.extension_path_user(base_package, create=True), signing.KEY_FILE)


def signing_key() -> bytes:
    """The key itself (this user's own made on first use; a shared one must exist). SigningError or OSError
    with the reason where it cannot be had."""
    p = get()
    return signing.read_key(signing_key_path()) if p and p.shared_key_file else signing.user_key(signing_key_path())


AUTO_MEMORY_MOST = 16 << 30


def worker_memory_bytes() -> int:
    """The background Blenders' memory bound (Import Memory Limit; automatic where 0)."""
    p = get()
    if p and p.worker_memory_gb > 0:
        return int(p.worker_memory_gb * (1 << 30))
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not POSIX: no bound is set there anyway
        return AUTO_MEMORY_MOST
    return min(AUTO_MEMORY_MOST, physical * 3 // 4)


def worker_deadline_seconds() -> float:
    p = get()
    return (p.worker_deadline_minutes if p else 15.0) * 60.0


def asset_library() -> str:
    """The Asset Library Folder preference as an absolute path ("": off)."""
    p = get()
    return os.path.abspath(bpy.path.abspath(p.asset_library)) if p and p.asset_library else ""


TRELLIS_AP_preferences.__annotations__.update(_access_properties())
classes = (TRELLIS_AP_preferences,)


class AccessError(ValueError):
    pass


def remote_access(backend_id: str) -> tuple[dict, dict]:
    """(options, secrets) for a hosted backend: preferences win over the environment. AccessError when
    online access is off or a key is missing; nothing is sent then."""
    info = registry.get(backend_id)
    if not bpy.app.online_access:
        raise AccessError("Online access is off: turn on Edit ▸ Preferences ▸ System ▸ Network ▸ "
                          "Allow Online Access (headless: blender --online-mode)")
    prefs = get()
    secrets = {}
    for credential in info.credentials:
        from_pref = (getattr(prefs, info.credential_pref(credential), "") if prefs else "").strip()
        value = from_pref or os.environ.get(credential.env, "").strip()
        where = f"the {info.short_label} {credential.label} preference" if from_pref else credential.env
        what = credential.label[:4] + credential.label[4:].lower()  # "API key"
        if not value:
            raise AccessError(f"No {what}: set it in the TRELLIS add-on preferences or the {credential.env} variable")
        if any(c.isspace() or not c.isprintable() for c in value):  # never quoted: it is a secret
            raise AccessError(f"The {what} in {where} contains spaces or control characters: paste it again")
        secrets[credential.name] = value
    url = ((getattr(prefs, info.url_pref(), "") if prefs else "") or os.environ.get(info.url_env, "")).strip()
    if url and (urlsplit(url).username is not None or urlsplit(url).password is not None):
        raise AccessError(f"The {info.short_label} URL carries a user name or password: remove them (the key goes "
                          "in its own preference)")
    minutes = prefs.poll_timeout_minutes if prefs else 20.0
    cap = (prefs.max_download_mb if prefs else 1024) * 1024 * 1024
    return {"base_url": url, "poll_timeout": minutes * 60, "max_download_bytes": cap}, secrets


SPARSE_ATTENTION = ("xformers", "flash_attn", "flash_attn_3")  # what SPARSE_ATTN_BACKEND accepts


def local_model() -> str:
    """The local model: preference, else TRELLIS2_MODEL, else TRELLIS.2's published 4B model."""
    p = get()
    return (p.local_model if p else "") or os.environ.get("TRELLIS2_MODEL", "") or "microsoft/TRELLIS.2-4B"


def local_setup() -> tuple[dict, dict]:
    """(worker settings, job options) for the local GPU backend; AccessError without a Python."""
    prefs = get()
    python = (prefs.local_python if prefs else "") or os.environ.get("TRELLIS2_PYTHON", "")
    python = bpy.path.abspath(python) if python else ""
    if not python:
        raise AccessError("Set the TRELLIS.2 Python in the add-on preferences (or TRELLIS2_PYTHON): the python "
                          "of the environment where TRELLIS.2 is installed")
    if not os.path.isfile(python):
        raise AccessError(f"TRELLIS.2 Python not found: {python}")
    env = {"ATTN_BACKEND": prefs.local_attention if prefs else "flash_attn",
           "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    if env["ATTN_BACKEND"] in SPARSE_ATTENTION:
        env["SPARSE_ATTN_BACKEND"] = env["ATTN_BACKEND"]
    repo = bpy.path.abspath(prefs.local_repo) if prefs and prefs.local_repo else ""
    if repo:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH", "")]))
    model = local_model()
    options = {"model": bpy.path.abspath(model) if os.path.isdir(bpy.path.abspath(model)) else model,
               "low_vram": prefs.local_low_vram if prefs else True, "gpu": prefs.local_gpu if prefs else 0,
               "webp": prefs.local_webp if prefs else False}
    keep = (prefs.local_keep_minutes if prefs else 10.0) * 60
    return {"python": python, "env": env, "idle_exit": keep}, options
