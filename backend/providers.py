"""How each hosted provider (and each retexture flavour) names and limits the schema's settings.

backend.schema stays the one source of settings; a Provider maps a flat, schema-validated settings dict
to its own wire names and refuses, before anything is sent, a value its API does not accept, with a
message naming the provider's limit. Knobs without a mapping are ignored by that provider (the UI says
so); sampler knobs are sent only when their stage override is on.

Ranges are copied from each provider's published parameter table (tests/data/*-trellis2*.txt).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import schema

# Schema names every provider handles itself (the seed is resolved, one request per result, overrides
# decide which sampler stages are sent): never listed as ignored.
META = ("random_seed", "number_results") + tuple(s.override for s in schema.STAGES)


class ProviderLimitError(schema.SettingError):
    """A schema-valid value the provider's API does not accept (the worker reports BAD_SETTINGS)."""


@dataclass(frozen=True)
class Knob:
    param: str  # schema name
    wire: str  # the provider's name
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    as_text: bool = False  # sent as a string (an enum of numbers in the provider's spec)

    def limit_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"{schema._fmt(self.min)} to {schema._fmt(self.max)}"


@dataclass(frozen=True)
class Provider:
    id: str
    label: str
    knobs: tuple

    @property
    def by_param(self) -> dict:
        return {k.param: k for k in self.knobs}

    def ignored(self) -> tuple:
        """Schema settings this provider has no use for, in schema order."""
        mapped = self.by_param
        return tuple(p.name for p in schema.PARAMS if p.name not in mapped and p.name not in META)

    def applies(self, name: str, settings: dict) -> bool:
        """Whether the setting is sent for these settings (mapped, and its stage overridden)."""
        param = schema.BY_NAME[name]
        if name not in self.by_param:
            return False
        return not param.stage or bool(settings.get(f"{param.stage}_override"))

    def check(self, settings: dict) -> None:
        """Raise ProviderLimitError for the first sent value outside the provider's range."""
        for knob in self.knobs:
            if knob.param not in settings or not self.applies(knob.param, settings):
                continue
            value = settings[knob.param]
            param = schema.BY_NAME[knob.param]
            too_low = knob.min is not None and value < knob.min
            too_high = knob.max is not None and value > knob.max
            if too_low or too_high or (knob.choices and value not in knob.choices):
                raise ProviderLimitError(knob.param, f"{self.label} accepts {param.label} ({knob.wire}) "
                                                     f"{knob.limit_text()}, got {schema._fmt(value)}")

    def request(self, settings: dict) -> dict:
        """The provider's parameters for checked settings: wire names, applicable knobs only."""
        self.check(settings)
        body: dict[str, Any] = {}
        for knob in self.knobs:
            if self.applies(knob.param, settings):
                value = settings[knob.param]
                body[knob.wire] = str(value) if knob.as_text else value
        return body


SEED_MAX = 2147483647


def _wire(prefix: str, key: str, style: str) -> str:
    """snake: ss_sampling_steps; camel: ssSamplingSteps; runware: sparseStructure.steps (nested)."""
    if style == "camel":
        return prefix + "".join(w.title() for w in key.split("_"))
    if style == "runware":
        nested = {"sampling_steps": "steps", "guidance_strength": "guidanceStrength",
                  "guidance_rescale": "guidanceRescale", "rescale_t": "rescaleT"}[key]
        return f"{prefix}.{nested}"
    return f"{prefix}_{key}"


def _stage_knobs(names: dict, steps: tuple, strength: tuple, rescale: tuple, rescale_t: tuple,
                 interval: bool, stages=schema.STAGES, without: tuple = ()) -> tuple:
    """Sampler knobs for the given stages; names maps a schema stage to the provider's (prefix, style)."""
    knobs = []
    for stage in stages:
        prefix, style = names[stage.name]
        knobs += [Knob(f"{stage.name}_steps", _wire(prefix, "sampling_steps", style), *steps),
                  Knob(f"{stage.name}_guidance_strength", _wire(prefix, "guidance_strength", style), *strength),
                  Knob(f"{stage.name}_guidance_rescale", _wire(prefix, "guidance_rescale", style), *rescale),
                  Knob(f"{stage.name}_rescale_t", _wire(prefix, "rescale_t", style), *rescale_t)]
        if interval:
            knobs += [Knob(f"{stage.name}_guidance_interval_{end}", _wire(prefix, f"guidance_interval_{end}", style),
                           0, 1) for end in ("start", "end")]
    return tuple(k for k in knobs if k.param not in without)


RUNWARE = Provider("runware", "Runware", (
    Knob("resolution", "resolution", choices=(512, 1024, 1536)),
    Knob("texture_size", "textureSize", 1024, 4096),  # multiples of 1024: 3072 too
    Knob("decimation_target", "decimationTarget", 100000, 1000000),
    Knob("remesh", "remesh"),
    Knob("seed", "seed", 0, SEED_MAX),
) + _stage_knobs({s.name: (s.wire, "runware") for s in schema.STAGES}, (1, 50), (1, 10), (0, 1), (1, 6),
                 interval=False))

EMPIRIOLABS = Provider("empiriolabs", "EmpirioLabs", (
    Knob("resolution", "resolution", choices=(512, 1024, 1536), as_text=True),
    Knob("seed", "seed", 0, SEED_MAX),
    Knob("preprocess_image", "preprocess_image"),
    Knob("max_num_tokens", "max_num_tokens", 1024, 131072),
    Knob("texture_size", "texture_size", choices=(1024, 2048, 4096), as_text=True),
    Knob("decimation_target", "decimation_target", 10000, 1000000),
    Knob("remesh", "remesh"),
    Knob("remesh_band", "remesh_band", 0, 5),
    Knob("remesh_project", "remesh_project", 0, 1),
) + _stage_knobs({"sparse_structure": ("ss", "snake"), "shape_slat": ("shape_slat", "snake"),
                  "tex_slat": ("tex_slat", "snake")}, (1, 64), (0, 20), (0, 2), (0, 20), interval=True))

_SCENARIO_STAGES = {"sparse_structure": ("ss", "camel"), "shape_slat": ("shapeSlat", "camel"),
                    "tex_slat": ("texSlat", "camel")}

SCENARIO = Provider("scenario", "Scenario", (
    Knob("resolution", "resolution", choices=(512, 1024, 1536)),
    Knob("decimation_target", "decimationTarget", 100000, 2000000),
    Knob("texture_size", "textureSize", choices=(1024, 2048, 4096)),
    Knob("remesh", "remesh"),
    Knob("remesh_band", "remeshBand", 1, 4),
    Knob("seed", "seed", 0, SEED_MAX),
) + _stage_knobs(_SCENARIO_STAGES, (1, 50), (0, 10), (0, 1), (1, 6), interval=False,
                 without=("shape_slat_rescale_t",)))  # its table has no shapeSlatRescaleT

SCENARIO_RETEXTURE = Provider("scenario_retexture", "Scenario Retexture", (
    Knob("resolution", "resolution", choices=(512, 1024)),
    Knob("texture_size", "textureSize", choices=(1024, 2048, 4096)),
    Knob("seed", "seed", 0, SEED_MAX),
) + _stage_knobs(_SCENARIO_STAGES, (1, 50), (0, 10), (0, 1), (1, 6), interval=False,
                 stages=(schema.STAGES[2],)))

# The local texturing pipeline: run(mesh, image, seed, tex_slat_sampler_params, preprocess_image,
# resolution, texture_size); its sampler dict takes the guidance interval too.
LOCAL_RETEXTURE = Provider("local_retexture", "Local retexture", (
    Knob("resolution", "resolution", choices=(512, 1024)),
    Knob("texture_size", "texture_size", choices=(1024, 2048, 4096)),
    Knob("seed", "seed", 0, SEED_MAX),
    Knob("preprocess_image", "preprocess_image"),
) + _stage_knobs({"tex_slat": ("tex_slat", "snake")}, (1, 50), (1, 10), (0, 1), (1, 6), interval=True,
                 stages=(schema.STAGES[2],)))

PROVIDERS = {p.id: p for p in (RUNWARE, EMPIRIOLABS, SCENARIO, SCENARIO_RETEXTURE, LOCAL_RETEXTURE)}
RETEXTURE = {"scenario": SCENARIO_RETEXTURE, "local": LOCAL_RETEXTURE}  # backend id -> retexture mapping


def for_backend(backend_id: str, mode: str = "generate") -> Provider | None:
    """The mapping a backend uses for a job mode; None when the backend sends every setting itself."""
    if mode == "retexture":
        return RETEXTURE.get(backend_id)
    return PROVIDERS.get(backend_id)


def ignored(backend_id: str, mode: str = "generate") -> tuple:
    """The schema settings the backend ignores in this mode (for the UI)."""
    provider = for_backend(backend_id, mode)
    return provider.ignored() if provider else ()


def check(backend_id: str, settings: dict, mode: str = "generate") -> None:
    provider = for_backend(backend_id, mode)
    if provider is not None:
        provider.check(settings)
