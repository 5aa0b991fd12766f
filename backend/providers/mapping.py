"""How a backend names and limits the schema's settings in one job mode.

backend.schema stays the one source of settings; a Mapping (each provider module's ``MAPPINGS``) maps a
flat, schema-validated settings dict to the provider's own wire names and refuses, before anything is
sent, a value its API does not accept, with a message naming the provider's limit. Knobs without a
mapping are ignored by that provider (the UI says so); sampler knobs are sent only when their stage
override is on. A dotted wire name ("sparseStructure.steps") is sent nested.

Ranges are copied from each provider's published parameter table (tests/data/*-trellis2*.txt).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import schema

# Schema names every provider handles itself (the seed is resolved, one request per result, overrides
# decide which sampler stages are sent): never listed as ignored.
META = ("random_seed", "number_results") + tuple(s.override for s in schema.STAGES)
SEED_MAX = 2147483647


class ProviderLimitError(schema.SettingError):
    """A schema-valid value the provider's API does not accept (the worker reports BAD_SETTINGS)."""


@dataclass(frozen=True)
class Knob:
    param: str  # schema name
    wire: str  # the provider's name; dotted: nested objects
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    as_text: bool = False  # sent as a string (an enum of numbers in the provider's spec)

    def limit_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"{schema._fmt(self.min)} to {schema._fmt(self.max)}"


@dataclass(frozen=True)
class Mapping:
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
        """The provider's parameters for checked settings: wire names (dotted ones nested), applicable
        knobs only."""
        self.check(settings)
        body: dict[str, Any] = {}
        for knob in self.knobs:
            if self.applies(knob.param, settings):
                value = settings[knob.param]
                *parents, leaf = knob.wire.split(".")
                target = body
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[leaf] = str(value) if knob.as_text else value
        return body


# --- sampler knobs -----------------------------------------------------------------------------------

Naming = Callable[[schema.Stage, str], str]  # (stage, schema key within the stage) -> wire name


def _camel(words: str) -> str:
    first, *rest = words.split("_")
    return first + "".join(w.title() for w in rest)


def snake(prefixes: dict) -> Naming:
    """EmpirioLabs: ss_sampling_steps, tex_slat_guidance_strength (prefixes: stage name -> prefix)."""
    return lambda stage, key: f"{prefixes[stage.name]}_{'sampling_steps' if key == 'steps' else key}"


def camel(prefixes: dict) -> Naming:
    """Scenario: ssSamplingSteps, texSlatGuidanceStrength."""
    return lambda stage, key: prefixes[stage.name] + _camel(f"x_{'sampling_steps' if key == 'steps' else key}")[1:]


def nested(prefixes: dict) -> Naming:
    """Runware: sparseStructure.steps, texSlat.guidanceStrength (a settings object per stage)."""
    return lambda stage, key: f"{prefixes[stage.name]}.{_camel(key)}"


def stage_knobs(naming: Naming, limits: dict, stages=schema.STAGES, interval: bool = False,
                without: tuple = ()) -> tuple:
    """The sampler knobs of the given stages, derived from each stage's schema params (plus the local
    guidance interval when the provider takes it). limits: schema key within the stage ("steps") ->
    (min, max); a key without limits keeps the schema's range."""
    knobs = []
    for stage in stages:
        params = stage.params + (tuple(p for p in schema.LOCAL_PARAMS if p.stage == stage.name) if interval else ())
        for param in params:
            low, high = limits.get(param.stage_key, (param.min, param.max))
            knobs.append(Knob(param.name, naming(stage, param.stage_key), low, high))
    return tuple(k for k in knobs if k.param not in without)
