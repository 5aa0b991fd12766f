"""From what the user asked (the scene's settings, an operator's or the CLI's keywords) to one validated,
frozen Request, and from a Request to a Job ready to queue: the image read and checked, the cache
looked up, the spending caps applied, options and secrets gathered. Validation happens here once; the
worker checks again where it decodes the job, and nothing in between re-checks."""
from __future__ import annotations

import os
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field

import bpy
import numpy as np

from ..backend import registry, schema
from . import entry_lock, history, image_input, prefs, spending
from .queue import PREPARING, QUEUED, Job, manager
from .queue.job import cached_answer

QUOTES = ".quotes"  # quote jobs' folders, under the jobs folder; removed once answered
MESH_GLB = "input_mesh.glb"  # a retexture job's input mesh, in its folder


class RequestError(ValueError):
    """Bad input caught before any worker starts."""


def resolve_settings(scene_settings: dict, overrides: dict) -> dict:
    """Scene settings with script keywords on top, seed resolved (a Request validates them)."""
    settings = dict(scene_settings)
    settings.update(overrides)
    if "seed" in overrides and "random_seed" not in overrides:
        settings["random_seed"] = False  # an explicit seed means "use this seed"
    if settings.get("random_seed", schema.RANDOM_SEED.default) is True:
        settings["seed"] = random.randint(0, schema.INT32_MAX)
    return settings


@dataclass(frozen=True)
class Request:
    """One checked request. image: a datablock, its name, a file path, or a history entry's input_rgba.npy.
    anchor: an object the result is placed next to. keep_image=False removes an image this request loaded
    from a file once read (batches). quote: ask what it would cost instead (nothing generated). finish: the
    finish settings (schema.FINISH_PARAMS; missing ones get defaults); None: the result is imported as it
    comes. asset_library: a folder each finished result is also saved to ("": the preference's)."""
    image: object
    backend: str
    settings: dict = field(default_factory=dict)
    target_size: float = 0.0
    anchor: str = ""
    force_new: bool = False
    mode: str = "generate"
    quote: bool = False
    keep_image: bool = True
    finish: dict | None = None
    asset_library: str = ""

    def __post_init__(self):
        info = registry.BY_ID.get(self.backend)
        if info is None:
            raise RequestError(f"Unknown backend {self.backend!r} (available: {', '.join(registry.BY_ID)})")
        if self.target_size < 0:
            raise RequestError(f"Invalid setting target_size: {self.target_size} must be 0 (keep) or a length > 0")
        if self.mode not in info.modes:
            able = ", ".join(b.label for b in registry.BACKENDS if self.mode in b.modes)
            raise RequestError(f"{info.label} cannot {self.mode} (use {able})")
        if self.quote and not info.can_quote:
            able = ", ".join(b.label for b in registry.BACKENDS if b.can_quote)
            raise RequestError(f"{info.label} gives no cost quote before generating ({able} does)")
        try:
            object.__setattr__(self, "settings", schema.validate(self.settings))
            registry.check(self.backend, self.settings, self.mode)
            if self.finish is not None:
                object.__setattr__(self, "finish", schema.validate_finish(self.finish))
        except schema.SettingError as exc:
            raise RequestError(f"Invalid setting {exc}") from None

    @property
    def info(self) -> registry.BackendInfo:
        return registry.get(self.backend)

    @property
    def model(self) -> str:
        """What model answers (part of the cache key)."""
        return prefs.local_model() if self.info.worker == registry.GPU else self.info.model or self.backend

    @property
    def may_be_cached(self) -> bool:
        return not (self.settings["random_seed"] or self.force_new or self.quote or self.mode != "generate")


def read_image(image, keep_image: bool = True) -> tuple[np.ndarray, str, str]:
    """(rgba, display name, reference) for a datablock, a file path, or a history entry's input_rgba.npy."""
    if isinstance(image, str) and image.endswith(".npy") and os.path.isfile(image):  # a history entry
        entry = history.read_entry(os.path.dirname(image))
        name = entry.title if entry else "image"
        return np.load(image, allow_pickle=False), name, (entry.record.get("image") if entry else "") or image
    known = set(bpy.data.images)
    img = None
    try:
        img = image_input.resolve(image)
        name = image_input.display_name(img)
        image_ref = bpy.path.abspath(img.filepath) if img.filepath else img.name
        rgba = image_input.to_rgba8(img)
        image_input.check_foreground(rgba, name)
    except image_input.InputError as exc:
        raise RequestError(str(exc)) from None
    finally:
        if not keep_image and img is not None and img not in known:
            bpy.data.images.remove(img)
    return rgba, name, image_ref


def _cached(request: Request, image_sha: str) -> tuple[str, history.Entry | None]:
    """(cache key, the history entry that answers this request or None)"""
    key = history.cache_key(image_sha, request.backend, request.model, request.settings)
    found = history.history.find_cached(prefs.jobs_root(), key) if request.may_be_cached else None
    return key, found


def background_source(request: Request) -> dict | None:
    """The image file a background Blender reads for this request (None: read here)."""
    return image_input.file_source(request.image) if manager.builder.on else None


def answered_from_cache(request: Request) -> bool:
    """Would this request be served from history (no cost)? False when its image cannot be read, and for a
    file the background Blender reads that this session has not read yet (never decoded here to ask: the
    confirmation is asked, and history still answers at no cost once the image is read)."""
    if not request.may_be_cached:
        return False
    source = background_source(request)
    if source is not None:
        image_sha = image_input.known_hash(image_input.source_key(source))
    else:
        try:
            image_sha = history.image_hash(read_image(request.image, keep_image=True)[0])
        except RequestError:
            return False
    return image_sha is not None and _cached(request, image_sha)[1] is not None


def access(request: Request) -> tuple[dict, dict]:
    """(options, secrets) for the request's backend from the preferences; RequestError when missing."""
    info = request.info
    try:
        if info.worker == registry.GPU:
            return prefs.local_setup()[1], {}
        if info.needs_network:
            return prefs.remote_access(info.id)
    except prefs.AccessError as exc:
        raise RequestError(f"{info.label}: {exc}") from None
    return {}, {}


def prepare(request: Request, mesh_path: str = "", mesh_blend: str = "") -> Job:
    """Check the image, make the job's folder, return a Job ready to queue. Raises RequestError. In the UI an
    image file is only checked here (exists, pixel count from its header): a background Blender reads it
    and writes the prepared input while the job waits in PREPARING. Otherwise the image is read here. A
    request history already answered comes back as a job served from the cache (no worker, no cost).
    mesh_path: the input mesh as a GLB (retexture); mesh_blend: as a .blend a background Blender exports to
    the job's input_mesh.glb while the job waits in PREPARING. Either is moved into the job's folder."""
    source = background_source(request)
    rgba, image_sha, key, cached = None, "", "", None
    if source is not None:
        try:
            image_input.check_file(source["path"])
        except image_input.InputError as exc:
            raise RequestError(str(exc)) from None
        image_ref = source["path"]
        name = os.path.splitext(os.path.basename(image_ref))[0] or "TRELLIS"
        known = image_input.known_hash(image_input.source_key(source))  # read before in this session
        if known:
            key, cached = _cached(request, known)
            image_sha = known
    else:
        rgba, name, image_ref = read_image(request.image, request.keep_image)
        image_sha = history.image_hash(rgba)
        key, cached = _cached(request, image_sha)
    common = dict(name=name, backend=request.backend, settings=request.settings, image_ref=image_ref,
                  target_size=request.target_size, anchor=request.anchor, model=request.model, mode=request.mode,
                  finish=request.finish, asset_library=request.asset_library or prefs.asset_library())
    if cached is not None:
        return Job(image_sha=image_sha, cache_key=key, **cached_answer(cached), **common)
    options, secrets = access(request)
    if request.info.needs_network and not request.quote:
        try:
            spending.session.check_cap(request.info, request.settings, request.mode)
        except spending.SpendingError as exc:
            raise RequestError(str(exc)) from None
    if request.quote:
        options["quote_only"] = True
    folder = new_folder(name, hidden=request.quote)
    rgba_path = os.path.join(folder, history.INPUT)
    if rgba is not None:  # else the background Blender writes it
        np.save(rgba_path, rgba)
        if not request.quote:
            history.write_thumbnail(rgba, os.path.join(folder, history.THUMB))
    if mesh_path:  # written before the job's folder existed: moved into it
        mesh_path = shutil.move(mesh_path, os.path.join(folder, os.path.basename(mesh_path)))
    if mesh_blend:
        mesh_blend = shutil.move(mesh_blend, os.path.join(folder, os.path.basename(mesh_blend)))
        mesh_path = os.path.join(folder, MESH_GLB)  # written by the background Blender
    return Job(output_dir=folder, rgba_path=rgba_path, options=options, secrets=secrets, mesh_path=mesh_path,
               image_sha=image_sha, cache_key=key, source=source, cacheable=request.may_be_cached,
               mesh_source=mesh_blend, state=PREPARING if source is not None or mesh_blend else QUEUED, **common)


def new_folder(name: str, hidden: bool = False) -> str:
    """A new job folder under the Results Folder (quotes in a hidden one, kept out of History)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "image"
    root = os.path.join(prefs.jobs_root(), QUOTES) if hidden else prefs.jobs_root()
    folder = os.path.join(root, f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}")
    os.makedirs(folder, exist_ok=True)
    entry_lock.hold(folder)  # the job holds it until it finishes (a pending paid task: until Blender stops)
    return folder


def prepare_job(**keywords) -> Job:
    """prepare(Request(**keywords)): for scripts and tests."""
    return prepare(Request(**keywords))
