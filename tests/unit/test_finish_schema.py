"""The finish settings: a table of their own, beside the model's and never mixed into it."""
import re

import pytest

from backend import schema
from backend.schema import SettingError


def test_finish_table_and_defaults():
    assert [p.name for p in schema.FINISH_PARAMS] == [
        "origin", "apply_scale", "cleanup", "min_part_fraction", "remove_interior", "lod_levels", "lod_ratio",
        "bake_faces", "mark_asset"]
    assert schema.finish_defaults() == {
        "origin": "BOTTOM", "apply_scale": True, "cleanup": True, "min_part_fraction": 0.005,
        "remove_interior": False, "lod_levels": 0, "lod_ratio": 0.5, "bake_faces": 0, "mark_asset": True}
    assert all(p.group == "finish" for p in schema.FINISH_PARAMS)
    assert set(schema.FINISH_BY_NAME) == {p.name for p in schema.FINISH_PARAMS}


def test_finish_settings_are_not_model_settings():
    """Not sent to providers, not in the cache key, never greyed out as ignored by a provider."""
    assert not set(schema.FINISH_BY_NAME) & set(schema.BY_NAME)
    assert not any(p.group == "finish" for p in schema.PARAMS)
    with pytest.raises(SettingError):
        schema.validate({"origin": "BOTTOM"})
    with pytest.raises(SettingError, match="unknown finish setting"):
        schema.validate_finish({"resolution": 1024})


def test_validate_finish_normalizes():
    out = schema.validate_finish({"origin": "center", "lod_levels": 2.0, "cleanup": 0})
    assert out["origin"] == "CENTER" and out["lod_levels"] == 2 and isinstance(out["lod_levels"], int)
    assert out["cleanup"] is False
    assert schema.validate_finish({"lod_ratio": 0.25}, partial=True) == {"lod_ratio": 0.25}


@pytest.mark.parametrize("value", [0, 1000, 54321, 200000])
def test_bake_faces_off_or_in_range(value):
    assert schema.validate_finish({"bake_faces": value})["bake_faces"] == value


@pytest.mark.parametrize("name, value, fragment", [
    ("bake_faces", 999, "0 (off) or 1000 to 200 000"),
    ("bake_faces", 200001, "0 (off) or 1000 to 200 000"),
    ("bake_faces", -1, "out of range"),
    ("bake_faces", 1500.5, "whole number"),
    ("origin", "TOP", "one of BOTTOM, CENTER, KEEP"),
    ("origin", 1, "one of BOTTOM, CENTER, KEEP"),
    ("min_part_fraction", 0.6, "0 to 0.5"),
    ("lod_levels", 5, "0 to 4"),
    ("lod_ratio", 0.05, "0.1 to 0.9"),
    ("mark_asset", "yes", "true or false"),
])
def test_finish_validation_messages(name, value, fragment):
    with pytest.raises(SettingError, match=re.escape(fragment)) as info:
        schema.validate_finish({name: value})
    assert info.value.name == name


def test_every_edge_accepted():
    for p in schema.FINISH_PARAMS:
        for value in (p.choices or ()) + tuple(v for v in (p.min, p.max, p.off) if v is not None):
            schema.validate_finish({p.name: value})
