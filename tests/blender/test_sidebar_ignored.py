"""The sidebar says, per backend, which knobs it ignores: the panels' real draw code runs against a layout
that records every property row and whether it is drawn active (greyed out when not)."""
import pytest

from conftest import mod


class RecordingLayout:
    """Enough of bpy.types.UILayout for the sidebar's draw(): records (property, active) pairs."""

    def __init__(self, record, parent_active=True):
        self.record, self._parent_active = record, parent_active
        self.active, self.enabled = True, True
        self.use_property_split = self.use_property_decorate = False
        self.scale_y = 1.0

    def _effective(self):
        return self._parent_active and self.active

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.record, self._effective())

    row = column = box = split = _child

    def prop(self, data, name, **kwargs):
        self.record.props.append((name, self._effective()))

    def label(self, text="", **kwargs):
        self.record.labels.append(text)

    def operator(self, name, *args, **kwargs):
        self.record.operators.append(name)
        return type("Props", (), {})()

    def menu(self, *args, **kwargs):
        pass

    def template_ID_preview(self, *args, **kwargs):
        pass

    def progress(self, *args, **kwargs):
        pass


class Record:
    def __init__(self):
        self.props, self.labels, self.operators = [], [], []

    @property
    def greyed(self):
        return {name for name, active in self.props if not active}

    @property
    def shown(self):
        return {name for name, _ in self.props}


def draw_all(context):
    """Every TRELLIS sidebar panel whose poll passes, drawn into one record."""
    sidebar = mod("panels.sidebar")
    record = Record()
    for cls in sidebar.classes:
        if hasattr(cls, "poll") and not cls.poll(context):
            continue
        panel = type("Panel", (), {"layout": RecordingLayout(record)})()  # draw() reads only self.layout
        cls.draw(panel, context)
    return record


@pytest.fixture()
def overridden(scene):
    """All sampler stages overridden, so only ignored knobs are drawn inactive."""
    import bpy

    s = bpy.context.scene.trellis2
    for stage in mod("backend.schema").STAGES:
        setattr(s, stage.override, True)
    return s


@pytest.mark.parametrize("backend", ["runware", "empiriolabs", "scenario", "local"])
def test_greyed_knobs_are_exactly_the_ignored_ones(overridden, backend):
    import bpy

    registry, schema = mod("backend.registry"), mod("backend.schema")
    overridden.backend = backend
    record = draw_all(bpy.context)
    ignored = set(registry.ignored(backend))
    drawn_settings = record.shown & set(schema.BY_NAME)
    assert record.greyed & set(schema.BY_NAME) == ignored & drawn_settings
    # every knob a provider may ignore is on screen somewhere (nothing hidden instead of greyed)
    assert ignored <= drawn_settings
    label = registry.get(backend).short_label
    assert (f"Greyed out: {label} ignores them" in record.labels) == bool(ignored)


def test_provider_specific_gaps(overridden):
    """Spot checks against the seed tables: Scenario has no shapeSlatRescaleT and no guidance interval,
    Runware takes none of the advanced knobs, EmpirioLabs takes every one."""
    import bpy

    overridden.backend = "scenario"
    greyed = draw_all(bpy.context).greyed
    assert {"shape_slat_rescale_t", "max_num_tokens", "tex_slat_guidance_interval_start"} <= greyed
    assert not {"remesh_band", "decimation_target", "ss_steps"} & greyed
    overridden.backend = "runware"
    greyed = draw_all(bpy.context).greyed
    assert {"remesh_band", "remesh_project", "preprocess_image", "max_num_tokens"} <= greyed
    assert "shape_slat_rescale_t" not in greyed
    overridden.backend = "empiriolabs"
    assert draw_all(bpy.context).greyed & set(mod("backend.schema").BY_NAME) == set()


def test_stage_override_off_greys_the_stage_and_says_so(scene):
    import bpy

    s = bpy.context.scene.trellis2
    s.backend = "empiriolabs"
    s.shape_slat_override = False
    record = draw_all(bpy.context)
    assert {p.name for p in mod("backend.schema").STAGES[1].params} <= record.greyed
    assert "Model defaults are used" in record.labels


def test_advanced_panel_hidden_for_the_offline_stand_in(scene):
    import bpy

    bpy.context.scene.trellis2.backend = "preview"
    assert "max_num_tokens" not in draw_all(bpy.context).shown
    bpy.context.scene.trellis2.backend = "runware"
    assert "max_num_tokens" in draw_all(bpy.context).shown
