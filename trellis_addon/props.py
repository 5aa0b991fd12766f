"""Blender properties generated from backend.schema: the scene's settings and the operator's keywords."""
from __future__ import annotations

import bpy

from ..backend import registry, schema


_items: list = []  # Blender reads a dynamic enum's strings after the callback returns: kept alive here


def backend_items(self=None, context=None):
    """The registry's backends, those registered later too; the enum identifier is the backend id."""
    rows = [(b.id, b.label, b.description, i) for i, b in enumerate(registry.BACKENDS)]
    if rows != _items:
        _items[:] = rows
    return _items


def _enum_items(param: schema.Param):
    if param.kind == "enum":
        return [(v, v.title(), param.description) for v in param.choices]
    return [(str(v), schema.group_digits(v), param.description) for v in param.choice_values()]


def scene_property(param: schema.Param):
    """A property for the sidebar: hard limits from the schema, stepped ranges shown as choices."""
    common = dict(name=param.label, description=param.description)
    if param.kind == "bool":
        return bpy.props.BoolProperty(default=param.default, **common)
    if param.choice_values():
        return bpy.props.EnumProperty(items=_enum_items(param), default=str(param.default), **common)
    low = param.min if param.off is None else min(param.min, param.off)  # "0 (off) or 1000 to ...": from 0
    if param.kind == "int":
        return bpy.props.IntProperty(default=param.default, min=int(low), max=int(param.max), **common)
    return bpy.props.FloatProperty(default=param.default, min=low, max=param.max, precision=3 if param.max <= 1
                                   else 2, step=10, **common)


def operator_property(param: schema.Param):
    """A keyword for scripts: no hard limits, so a bad value reaches schema validation and gets a
    message with the range instead of being clamped silently. Unset keywords use the scene's value."""
    common = dict(name=param.label, description=f"{param.description} ({param.range_text()})",
                  options={"SKIP_SAVE"})
    if param.kind == "bool":
        return bpy.props.BoolProperty(default=param.default, **common)
    if param.kind == "enum":  # Blender itself refuses a value not listed, naming those that are
        return bpy.props.EnumProperty(items=_enum_items(param), default=param.default, **common)
    if param.kind == "int":
        return bpy.props.IntProperty(default=param.default, **common)
    return bpy.props.FloatProperty(default=param.default, **common)


def job_keywords(**extra) -> dict:
    """Annotations of an operator that runs a job: every schema setting (the finish settings too), the image
    and the backend; unset keywords use the scene's values (see overrides)."""
    keywords = {p.name: operator_property(p) for p in schema.PARAMS + schema.FINISH_PARAMS}
    keywords.update(
        image=bpy.props.StringProperty(
            name="Image", options={"SKIP_SAVE"},
            description="Image file path or image datablock name. Empty: the TRELLIS panel's image"),
        backend=bpy.props.EnumProperty(items=backend_items, name="Backend", options={"SKIP_SAVE"}), **extra)
    return keywords


def overrides(operator, scene_settings, names=("image", "backend")) -> tuple[dict, dict]:
    """(the schema settings this call set, {name: the call's value or the scene's} for `names`)."""
    is_set = operator.properties.is_property_set
    settings = {p.name: getattr(operator, p.name) for p in schema.PARAMS if is_set(p.name)}
    return settings, {n: getattr(operator if is_set(n) else scene_settings, n) for n in names}


def finish_settings(operator, scene_settings) -> dict:
    """The scene's finish settings with the finish keywords this call set on top."""
    is_set = operator.properties.is_property_set
    return dict(scene_settings.to_finish(), **{p.name: getattr(operator, p.name) for p in schema.FINISH_PARAMS
                                                if is_set(p.name)})


def scene_value(settings, param: schema.Param):
    value = getattr(settings, param.name)
    return int(value) if param.choice_values() and param.kind != "enum" else value


def set_scene_value(settings, param: schema.Param, value) -> None:
    setattr(settings, param.name, str(value) if param.choice_values() and param.kind != "enum" else value)


class TRELLIS_PG_settings(bpy.types.PropertyGroup):
    __annotations__ = {p.name: scene_property(p) for p in schema.PARAMS + schema.FINISH_PARAMS}
    __annotations__.update(
        image=bpy.props.PointerProperty(
            type=bpy.types.Image, name="Image",
            description="Picture of one object, ideally on a plain or transparent background"),
        backend=bpy.props.EnumProperty(items=backend_items, name="Backend",
                                       description="Where the model runs"),
        target_size=bpy.props.FloatProperty(
            name="Target Size", default=0.0, min=0.0, soft_max=10.0, unit="LENGTH",
            description="Scale the result so its longest side has this length. 0 keeps the model's ~1 m"),
        force_new=bpy.props.BoolProperty(
            name="Force New", description="Generate even when history already holds this exact request (same "
                                          "image, settings and explicit seed). Off: it is answered from history"),
    )

    def to_settings(self) -> dict:
        """The flat schema settings dict (seed not yet resolved)."""
        return {p.name: scene_value(self, p) for p in schema.PARAMS}

    def to_finish(self) -> dict:
        """The finish settings dict (schema.FINISH_PARAMS); floats as typed (a property holds 32 bits)."""
        return {p.name: round(v, 6) if p.kind == "float" else v
                for p in schema.FINISH_PARAMS for v in [scene_value(self, p)]}


classes = (TRELLIS_PG_settings,)


def register():
    bpy.types.Scene.trellis2 = bpy.props.PointerProperty(type=TRELLIS_PG_settings)


def unregister():
    del bpy.types.Scene.trellis2
