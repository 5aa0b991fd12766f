"""The schema equals Runware's TRELLIS.2 spec (copy in tests/data), and validation speaks in ranges."""
import json
import os
import re

import pytest

from backend import presets, schema
from backend.providers import runware

RUNWARE = runware.MAPPINGS["generate"]


def wire(param) -> str:
    """Runware's name of a setting: a key of the task's settings (a stage's knobs: of its nested object)."""
    return RUNWARE.by_param[param.name].wire.split(".")[-1]


def stage_wire(stage) -> str:
    return RUNWARE.by_param[stage.params[0].name].wire.split(".")[0]

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


@pytest.fixture(scope="module")
def spec():
    with open(os.path.join(DATA, "runware-trellis2-openapi.json")) as f:
        return json.load(f)["components"]["schemas"]["RequestBody"]["items"]["properties"]


def _check_param(param, wire):
    assert param.kind == {"integer": "int", "number": "float", "boolean": "bool"}[wire["type"]]
    if "enum" in wire:
        assert param.choices == tuple(wire["enum"])
    if "minimum" in wire:
        assert param.min == wire["minimum"]
    if "maximum" in wire:
        assert param.max == wire["maximum"]
    assert param.multiple_of == wire.get("multipleOf")
    if "default" in wire:
        assert param.default == wire["default"]


def test_model_settings_match_spec(spec):
    settings = spec["settings"]["properties"]
    wire_names = {wire(p) for p in schema.MODEL_PARAMS} | {stage_wire(s) for s in schema.STAGES}
    assert wire_names == set(settings), "every spec setting is in the schema and nothing else"
    for param in schema.MODEL_PARAMS:
        spec_param = dict(settings[wire(param)])
        if param.name == "decimation_target":  # wider for Scenario; Runware's own limit is its provider's
            assert RUNWARE.by_param[param.name].max == spec_param.pop("maximum") and param.max == 2000000
        _check_param(param, spec_param)


def test_sampler_knobs_match_spec(spec):
    settings = spec["settings"]["properties"]
    for stage in schema.STAGES:
        spec_stage = settings[stage_wire(stage)]["properties"]
        assert {wire(p) for p in stage.params} == set(spec_stage)
        for param in stage.params:
            assert "default" not in spec_stage[wire(param)], "the spec has no sampler defaults"
            _check_param(param, spec_stage[wire(param)])
            assert param.min <= param.default <= param.max


def test_model_published_sampler_defaults():
    published = {"sparse_structure": (12, 7.5, 0.7, 5), "shape_slat": (12, 7.5, 0.5, 3), "tex_slat": (12, 1.0, 0.0, 3)}
    for stage in schema.STAGES:
        assert tuple(p.default for p in stage.params) == published[stage.name]


def test_seed_and_results_match_spec(spec):
    assert schema.SEED.min == spec["seed"]["minimum"]
    assert schema.SEED.max == 2**31 - 1 <= spec["seed"]["maximum"], "Blender ints are 32-bit"
    _check_param(schema.NUMBER_RESULTS, spec["numberResults"])


def test_request_sends_samplers_only_when_overridden():
    body = runware.settings_body(schema.defaults())
    assert body == {"resolution": 1024, "textureSize": 2048, "decimationTarget": 500000, "remesh": True}
    body = runware.settings_body(dict(schema.defaults(), shape_slat_override=True, shape_slat_steps=30))
    assert body["shapeSlat"] == {"steps": 30, "guidanceStrength": 7.5, "guidanceRescale": 0.5, "rescaleT": 3.0}
    assert "sparseStructure" not in body and "texSlat" not in body


@pytest.mark.parametrize("name,value,fragment", [
    ("resolution", 700, "700 is out of range (one of 512, 1024, 1536)"),
    ("texture_size", 3000, "one of 1024, 2048, 3072, 4096"),
    ("decimation_target", 99999, "99 999 is out of range (100 000 to 2 000 000)"),
    ("tex_slat_guidance_strength", 0.5, "0.5 is out of range (1 to 10)"),
    ("sparse_structure_steps", 51, "51 is out of range (1 to 50)"),
    ("sparse_structure_steps", 2.5, "whole number"),
    ("number_results", 5, "1 to 4"),
    ("seed", -1, "out of range"),
    ("remesh", "yes", "true or false"),
    ("resolution", "1024", "expected a number"),
])
def test_validation_messages_name_the_range(name, value, fragment):
    with pytest.raises(schema.SettingError) as info:
        schema.validate({name: value})
    assert info.value.name == name
    assert fragment in str(info.value)


def test_unknown_setting_is_rejected():
    with pytest.raises(schema.SettingError, match="unknown setting"):
        schema.validate({"texturesize": 2048})


def test_validate_accepts_every_edge():
    for param in schema.PARAMS:
        values = param.choice_values() or ((True, False) if param.kind == "bool" else (param.min, param.max))
        for value in values:
            assert schema.validate({param.name: value})[param.name] == value


def _doc_examples():
    """The request examples in Runware's parameter page, keyed by the title printed before each."""
    with open(os.path.join(DATA, "runware-trellis2-reference.txt")) as f:
        text = f.read()
    decoder, examples, pos = json.JSONDecoder(), {}, 0
    while (start := text.find("\n{", pos)) >= 0 or (start := text.find("}{", pos)) >= 0:
        obj, end = decoder.raw_decode(text, start + 1)
        if "model" in obj:
            title = re.split(r"[}\n]", text[:start + 1].rstrip("{\n"))[-1].strip()
            examples[title] = obj
        pos = end
    return examples


def test_example_presets_equal_runware_docs():
    examples = _doc_examples()
    assert set(examples) == {"Orc Character Bust", "Ornate Dragon Figurine", "Ornate Fantasy Helmet",
                             "Hero Product Figurine"}
    for title, request in examples.items():
        preset = schema.validate(presets.BUNDLED[title], partial=True)
        assert preset["seed"] == request["seed"] and preset["random_seed"] is False
        assert runware.settings_body(dict(schema.defaults(), **preset)) == request["settings"]


def test_quality_presets():
    for name, (res, tex, faces) in {"Draft": (512, 1024, 100000), "Standard": (1024, 2048, 500000),
                                    "High": (1536, 4096, 1000000)}.items():
        preset = schema.validate(presets.BUNDLED[name], partial=True)
        assert (preset["resolution"], preset["texture_size"], preset["decimation_target"]) == (res, tex, faces)
        assert not any(preset[s.override] for s in schema.STAGES)
    assert schema.validate(presets.BUNDLED["Standard"], partial=True).items() <= schema.defaults().items()


def test_every_setting_has_a_ui_group():
    assert {p.group for p in schema.PARAMS} == set(schema.GROUPS)
    assert {p.group for p in schema.MODEL_PARAMS} == {"model"} and schema.SEED.group == "seed"
    assert all(p.group == "sampler" for s in schema.STAGES for p in s.params + (schema.BY_NAME[s.override],))
    assert {p.group for p in schema.LOCAL_PARAMS} == {"advanced"}
