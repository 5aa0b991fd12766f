"""Each provider's mapping of the one schema against its published parameter table (tests/data)."""
import pytest

from backend import registry, schema
from backend.providers.mapping import ProviderLimitError
from servers import tables

EMPIRIOLABS = registry.mapping("empiriolabs")
SCENARIO, SCENARIO_RETEXTURE = registry.mapping("scenario"), registry.mapping("scenario", "retexture")


def _limits(provider, table, converted=float):
    for knob in provider.knobs:
        spec = table[knob.wire]
        param = schema.BY_NAME[knob.param]
        if spec["allowed"]:
            assert [str(c) for c in knob.choices] == spec["allowed"], knob.wire
        elif spec["min"] is not None:
            assert (knob.min, knob.max) == (spec["min"], spec["max"]), knob.wire
        elif param.kind == "bool":
            assert spec["type"] == "boolean", knob.wire
        yield knob


def test_empiriolabs_names_and_ranges_match_its_table():
    table = tables.empiriolabs()
    mapped = list(_limits(EMPIRIOLABS, table))
    assert len(mapped) == len(EMPIRIOLABS.knobs)
    enums = {k.wire for k in EMPIRIOLABS.knobs if k.as_text}
    assert enums == {n for n, spec in table.items() if spec["type"] == "enum"} - {"pipeline_type", "response_format"}
    unmapped = set(table) - {k.wire for k in EMPIRIOLABS.knobs}
    assert unmapped == {"image", "pipeline_type", "response_format", "verbose", "uv_unwrap_angle_threshold_deg",
                        "uv_unwrap_refine_iterations", "uv_unwrap_global_iterations", "uv_unwrap_smooth_strength"}
    assert EMPIRIOLABS.ignored() == ()


@pytest.mark.parametrize("provider,model", [(SCENARIO, "model_trellis-2"),
                                            (SCENARIO_RETEXTURE, "model_trellis-2-retexture")])
def test_scenario_names_and_ranges_match_its_tables(provider, model):
    table = tables.scenario(model)
    assert len(list(_limits(provider, table))) == len(provider.knobs)
    files = {n for n, spec in table.items() if spec["type"] == "file"}
    assert set(table) - {k.wire for k in provider.knobs} == files


def test_scenario_ignores_the_local_only_knobs():
    assert set(registry.ignored("scenario")) == {
        "max_num_tokens", "preprocess_image", "remesh_project", "shape_slat_rescale_t",
        *(f"{s.name}_guidance_interval_{end}" for s in schema.STAGES for end in ("start", "end"))}
    retexture = set(registry.ignored("scenario", "retexture"))
    assert {"decimation_target", "remesh", "shape_slat_steps", "sparse_structure_steps"} <= retexture
    assert not retexture & {"resolution", "texture_size", "seed", "tex_slat_steps"}


def test_runware_ignores_what_only_the_local_pipeline_has():
    assert registry.ignored("runware") == tuple(p.name for p in schema.LOCAL_PARAMS)
    assert registry.ignored("local") == () and registry.ignored("preview") == ()


@pytest.mark.parametrize("backend,mode,settings,message", [
    ("scenario", "generate", {"texture_size": 3072}, "Scenario accepts Texture Size (textureSize) one of 1024, 2048"),
    ("empiriolabs", "generate", {"texture_size": 3072}, "EmpirioLabs accepts Texture Size (texture_size) one of"),
    ("scenario", "generate", {"remesh_band": 0.5}, "Scenario accepts Remesh Band (remeshBand) 1 to 4, got 0.5"),
    ("empiriolabs", "generate", {"max_num_tokens": 200000},
     "EmpirioLabs accepts Max Tokens (max_num_tokens) 1024 to 131 072, got 200 000"),
    ("empiriolabs", "generate", {"decimation_target": 1500000},
     "EmpirioLabs accepts Face Budget (decimation_target) 10 000 to 1 000 000, got 1 500 000"),
    ("scenario", "retexture", {"resolution": 1536},
     "Scenario Retexture accepts Resolution (resolution) one of 512, 1024, got 1536"),
    ("local", "retexture", {"resolution": 1536}, "Local retexture accepts Resolution"),
])
def test_values_outside_a_provider_range_are_refused_naming_its_limit(backend, mode, settings, message):
    with pytest.raises(ProviderLimitError) as info:
        registry.check(backend, schema.validate(settings), mode)
    assert message in str(info.value)


def test_unsent_knobs_are_not_checked_and_schema_edges_pass():
    registry.check("scenario", schema.validate({"decimation_target": 2000000}))
    # a sampler knob only counts when its stage is sent
    settings = schema.validate({"tex_slat_guidance_strength": 10})
    registry.check("empiriolabs", settings)
    assert "tex_slat_guidance_strength" not in EMPIRIOLABS.request(settings)
    settings["tex_slat_override"] = True
    assert EMPIRIOLABS.request(settings)["tex_slat_guidance_strength"] == 10


def test_requests_use_wire_names_and_types():
    settings = schema.validate({"seed": 9, "shape_slat_override": True, "resolution": 512})
    scenario_body = SCENARIO.request(settings)
    assert scenario_body["shapeSlatSamplingSteps"] == 12 and scenario_body["resolution"] == 512
    assert "ssSamplingSteps" not in scenario_body and scenario_body["seed"] == 9
    empirio = EMPIRIOLABS.request(settings)
    assert empirio["resolution"] == "512" and empirio["texture_size"] == "2048"
    assert empirio["shape_slat_guidance_interval_start"] == 0.6


def test_every_mapping_lives_in_its_backend_module():
    """registry.mapping reads the module's MAPPINGS: generate only for the hosted generators, retexture for
    Scenario and local, none for preview and local generate (they take every setting)."""
    modes = {b: tuple(m for m in ("generate", "retexture") if registry.mapping(b, m)) for b in registry.BY_ID}
    assert modes == {"preview": (), "runware": ("generate",), "empiriolabs": ("generate",),
                     "scenario": ("generate", "retexture"), "local": ("retexture",)}


def test_stage_knobs_follow_the_schema_stages():
    """The sampler knobs are derived from schema.STAGES: one per stage param, in each provider's spelling."""
    runware = registry.mapping("runware").by_param
    for stage in schema.STAGES:
        assert all(p.name in runware and runware[p.name].wire.count(".") == 1 for p in stage.params)
    assert runware["shape_slat_rescale_t"].wire == "shapeSlat.rescaleT"
    assert EMPIRIOLABS.by_param["sparse_structure_steps"].wire == "ss_sampling_steps"
    assert SCENARIO.by_param["tex_slat_guidance_rescale"].wire == "texSlatGuidanceRescale"
    assert registry.mapping("local", "retexture").by_param["tex_slat_guidance_interval_end"].wire == \
        "tex_slat_guidance_interval_end"


@pytest.mark.parametrize("backend,status,body,code,text", [
    ("empiriolabs", 429, {"error": {"message": "Slow down."}}, "rate_limit",
     "EmpirioLabs rate limit reached (HTTP 429, 50 requests/min): try again in a minute"),
    ("scenario", 429, {"message": "Wait a bit."}, "rate_limit", "Scenario rate limit reached (HTTP 429): Wait a bit"),
    ("empiriolabs", 404, {"error": {"code": "job_not_found", "message": "Gone"}}, "not_found",
     "EmpirioLabs answered HTTP 404 (job_not_found): Gone"),
    ("scenario", 402, {"reason": "No units"}, "balance", "Scenario: not enough creative units (HTTP 402): No units"),
    ("scenario", 418, {"message": "Teapot", "traceId": "t-1"}, "remote_error",
     "Scenario answered HTTP 418: Teapot (trace t-1)"),
    ("runware", 404, None, "not_found", "Runware answered HTTP 404"),
    ("empiriolabs", 403, {}, "forbidden", "EmpirioLabs: this API key may not use trellis-2-4b (HTTP 403)"),
])
def test_one_status_ladder_with_each_providers_texts(backend, status, body, code, text):
    error = registry.load(backend).status_error(status, body)
    assert (error.code.value, str(error)) == (code, text)
