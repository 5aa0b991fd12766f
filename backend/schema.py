"""The one parameter schema: every TRELLIS.2 generation setting, its range, default, label and UI group.

Blender properties, validation and presets are derived from here; how each backend names and limits a
setting on the wire is its mapping's business (backend/providers/mapping.py, one table per provider).
Ranges and defaults follow Runware's TRELLIS.2 spec (tests/data/runware-trellis2-openapi.json), except the
face budget, which goes up to Scenario's 2 000 000 (a provider's mapping refuses what it does not take);
sampler slider defaults are the model's published pipeline.json defaults.
Settings travel as a flat dict of snake_case names (``resolution``, ``shape_slat_steps``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INT32_MAX = 2**31 - 1  # Blender IntProperty is 32-bit; Runware accepts a wider seed


class SettingError(ValueError):
    """A setting is missing, of the wrong type or out of range; ``name`` is the setting's name."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Param:
    name: str  # snake_case id: Blender property name and flat-settings key
    kind: str  # "int" | "float" | "bool" | "enum" (string choices)
    default: Any
    label: str
    description: str
    min: float | None = None
    max: float | None = None
    multiple_of: int | None = None  # integer step the value must be a multiple of
    choices: tuple | None = None  # allowed values (ints; strings for "enum"), when the spec lists them
    off: int | float | None = None  # a value outside min..max that is also accepted (0 = off)
    stage: str | None = None  # sampler stage name, for sampler knobs
    group: str = "model"  # where the UI shows it: one of GROUPS

    @property
    def stage_key(self) -> str:
        """The name within its stage ("steps" for shape_slat_steps); the name itself outside stages."""
        return self.name[len(self.stage) + 1:] if self.stage else self.name

    def choice_values(self) -> tuple | None:
        """Allowed values when they are a short list (enum or small stepped range)."""
        if self.choices:
            return self.choices
        if self.multiple_of and self.min is not None and self.max is not None:
            return tuple(range(int(self.min), int(self.max) + 1, self.multiple_of))
        return None

    def range_text(self) -> str:
        if self.off is not None and not self.choices:
            return f"{_fmt(self.off)} (off) or {_fmt(self.min)} to {_fmt(self.max)}"
        values = self.choice_values()
        if values:
            return "one of " + ", ".join(str(v) for v in values)
        if self.kind == "bool":
            return "true or false"
        return f"{_fmt(self.min)} to {_fmt(self.max)}"

    def validate(self, value: Any) -> Any:
        """Return the value converted to the param's type, or raise SettingError."""
        if self.kind == "bool":
            if isinstance(value, bool) or value in (0, 1):
                return bool(value)
            raise SettingError(self.name, f"expected true or false, got {value!r}")
        if self.kind == "enum":
            if isinstance(value, str) and value.upper() in self.choices:
                return value.upper()
            raise SettingError(self.name, f"expected {self.range_text()}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingError(self.name, f"expected a number ({self.range_text()}), got {value!r}")
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise SettingError(self.name, f"expected a whole number ({self.range_text()}), got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if self.off is not None and value == self.off:
            return value
        values = self.choice_values()
        out_of_range = (self.min is not None and value < self.min) or (self.max is not None and value > self.max)
        if out_of_range or (values and value not in values):
            raise SettingError(self.name, f"{_fmt(value)} is out of range ({self.range_text()})")
        return value


def group_digits(n: int, from_digits: int = 5) -> str:
    """An integer with its thousands set apart by spaces ("326 700") when it has at least from_digits digits
    (the one number formatter of the settings, the sidebar's menus and the measured quality)."""
    return f"{n:,}".replace(",", " ") if abs(n) >= 10 ** (from_digits - 1) else str(n)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return group_digits(v) if isinstance(v, int) else str(v)


@dataclass(frozen=True)
class Stage:
    name: str  # snake_case prefix of the stage's settings
    label: str
    description: str
    params: tuple = field(default_factory=tuple)

    @property
    def override(self) -> str:
        return f"{self.name}_override"


# Where the UI shows a setting (FINISH_PARAMS: in FINISH_GROUP).
GROUPS = ("model", "seed", "sampler", "advanced")
FINISH_GROUP = "finish"


def _stage(name, label, description, steps, strength, rescale, rescale_t) -> Stage:
    knobs = (
        ("steps", "int", steps, "Steps", 1, 50, "Denoising steps. More steps refine detail but take longer"),
        ("guidance_strength", "float", strength, "Guidance Strength", 1, 10,
         "How closely the result follows the image (classifier-free guidance). 1 means no guidance"),
        ("guidance_rescale", "float", rescale, "Guidance Rescale", 0, 1,
         "Damps over-saturation caused by strong guidance. Lower values correct more"),
        ("rescale_t", "float", rescale_t, "Rescale T", 1, 6,
         "Timestep rescaling of the sampling schedule: how effort is spread across the steps"),
    )
    params = tuple(
        Param(f"{name}_{key}", kind, default, lab, f"{label} stage: {desc}", lo, hi, stage=name, group="sampler")
        for key, kind, default, lab, lo, hi, desc in knobs
    )
    return Stage(name, label, description, params)


STAGES = (
    _stage("sparse_structure", "Sparse Structure",
           "Samples the coarse occupancy grid that fixes the overall shape", 12, 7.5, 0.7, 5.0),
    _stage("shape_slat", "Shape", "Samples the structured latent that refines the geometry", 12, 7.5, 0.5, 3.0),
    _stage("tex_slat", "Texture", "Samples the structured latent that paints the PBR materials", 12, 1.0, 0.0, 3.0),
)

# What the model makes (besides the sampler stages).
MODEL_PARAMS = (
    Param("resolution", "int", 1024, "Resolution",
          "Voxel grid resolution. Higher captures finer geometry but takes longer (1536 about 4x 1024)",
          512, 1536, choices=(512, 1024, 1536)),
    Param("texture_size", "int", 2048, "Texture Size",
          "Width and height of the baked PBR textures in pixels", 1024, 4096, multiple_of=1024),
    Param("decimation_target", "int", 500000, "Face Budget",
          "Target face count of the simplified mesh. Lower gives lighter models (above 1 000 000: Scenario and "
          "local only)", 100000, 2000000),
    Param("remesh", "bool", True, "Remesh", "Rebuild the surface for cleaner topology before baking textures"),
)

# TRELLIS.2's pipeline for each resolution (the local pipeline's pipeline_type, EmpirioLabs' too).
PIPELINE_TYPES = {512: "512", 1024: "1024_cascade", 1536: "1536_cascade"}

SEED = Param("seed", "int", 0, "Seed", "Seed for reproducible results. Each extra result uses the next seed",
             0, INT32_MAX, group="seed")
RANDOM_SEED = Param("random_seed", "bool", True, "Random Seed",
                    "Pick a new random seed for every generation (it is stored on the result)", group="seed")
NUMBER_RESULTS = Param("number_results", "int", 1, "Results",
                       "How many variations to generate, each with its own seed", 1, 4, group="seed")

OVERRIDES = tuple(
    Param(s.override, "bool", False, f"Override {s.label}",
          f"Send custom {s.label.lower()} sampler settings. Off: the model's own defaults are used", group="sampler")
    for s in STAGES
)

# Knobs of the local pipeline that Runware does not take (EmpirioLabs takes them all, Scenario remesh_band).
# Defaults are pipeline.json's and Trellis2ImageTo3DPipeline.run's / o_voxel to_glb's.
_INTERVALS = {"sparse_structure": (0.6, 1.0), "shape_slat": (0.6, 1.0), "tex_slat": (0.6, 0.9)}
LOCAL_PARAMS = tuple(
    Param(f"{s.name}_guidance_interval_{end}", "float", _INTERVALS[s.name][i], f"Guidance {end.title()}",
          f"{s.label} stage: guidance applies from this fraction of the schedule to the end value",
          0, 1, stage=s.name, group="advanced")
    for s in STAGES for i, end in enumerate(("start", "end"))
) + (
    Param("max_num_tokens", "int", 49152, "Max Tokens",
          "Token budget of the 1536 cascade; the resolution is lowered until the model fits it. "
          "Fewer tokens need less VRAM", 8192, 262144, group="advanced"),
    Param("preprocess_image", "bool", True, "Preprocess Image",
          "Remove the background (unless the image has alpha), crop and centre the object", group="advanced"),
    Param("remesh_band", "float", 1.0, "Remesh Band",
          "Width of the narrow band used when remeshing, in voxels", 0, 4, group="advanced"),
    Param("remesh_project", "float", 0.9, "Remesh Project",
          "How far remeshed vertices are projected back onto the original surface", 0, 1, group="advanced"),
)

PARAMS: tuple[Param, ...] = (
    MODEL_PARAMS + (SEED, RANDOM_SEED, NUMBER_RESULTS) + OVERRIDES + tuple(p for s in STAGES for p in s.params)
    + LOCAL_PARAMS
)
BY_NAME = {p.name: p for p in PARAMS}


def defaults() -> dict:
    return {p.name: p.default for p in PARAMS}


def validate(settings: dict, partial: bool = False) -> dict:
    """Check and normalize a flat settings dict. Unknown names are errors; missing ones get defaults
    (or are left out with ``partial``)."""
    return _validate_table(settings, BY_NAME, partial, "setting")


def _validate_table(settings: dict, by_name: dict, partial: bool, what: str) -> dict:
    unknown = sorted(set(settings) - set(by_name))
    if unknown:
        raise SettingError(unknown[0], f"unknown {what} (known: {', '.join(sorted(by_name))})")
    out = {} if partial else {p.name: p.default for p in by_name.values()}
    for name, value in settings.items():
        out[name] = by_name[name].validate(value)
    return out


def sampler_params(settings: dict, stage: Stage) -> dict | None:
    """One stage's sampler knobs as snake_case keys without prefix, or None when not overridden."""
    if not settings.get(stage.override):
        return None
    return {p.stage_key: settings[p.name] for p in stage.params}


# Finishing the imported result in Blender (trellis_addon/finish): never sent to a provider and not part
# of history's cache key, so a table of its own, not in PARAMS. `origin` is an "enum": string choices.
_F = FINISH_GROUP
FINISH_PARAMS: tuple[Param, ...] = (
    Param("origin", "enum", "BOTTOM", "Origin", "Where the result's origin goes: the bottom centre of its "
          "bounds, the centre of its bounds, or where the import put it", choices=("BOTTOM", "CENTER", "KEEP"),
          group=_F),
    Param("apply_scale", "bool", True, "Apply Scale",
          "Apply the target-size scaling to the mesh, so the object's scale stays 1", group=_F),
    Param("cleanup", "bool", True, "Clean Up",
          "Weld split vertices (UVs, normals and sharp edges kept) and drop small loose parts", group=_F),
    Param("min_part_fraction", "float", 0.005, "Smallest Part",
          "Clean Up drops loose parts with fewer than this fraction of the faces", 0, 0.5, group=_F),
    Param("remove_interior", "bool", False, "Remove Interior",
          "Delete closed inner shells, which cannot be seen from outside", group=_F),
    Param("lod_levels", "int", 0, "LODs",
          "How many levels of detail to make (<name>_LOD1 ...), in a hidden collection", 0, 4, group=_F),
    Param("lod_ratio", "float", 0.5, "LOD Ratio",
          "Each level of detail keeps this fraction of the faces of the one before", 0.1, 0.9, group=_F),
    Param("bake_faces", "int", 0, "Low-Poly Faces", "0: off. Otherwise a low-poly copy <name>_low with at "
          "most this many faces, its textures baked from the result with Cycles", 1000, 200000, group=_F, off=0),
    Param("mark_asset", "bool", True, "Mark as Asset",
          "Mark the result as an asset: preview, catalog TRELLIS, tags, a description", group=_F),
)
FINISH_BY_NAME = {p.name: p for p in FINISH_PARAMS}


def finish_defaults() -> dict:
    return {p.name: p.default for p in FINISH_PARAMS}


def validate_finish(settings: dict, partial: bool = False) -> dict:
    """Check and normalize finish settings as `validate` does the model's (unknown names are errors)."""
    return _validate_table(settings, FINISH_BY_NAME, partial, "finish setting")
