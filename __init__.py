"""TRELLIS.2 for Blender: image to textured PBR mesh. This module only registers."""
import bpy

from . import operators, panels
from .panels import history as history_panel, menus
from .trellis_addon import cli, jobs, prefs, props, resume

classes = props.classes + prefs.classes + operators.classes + panels.classes
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register():
    _register_classes()
    props.register()
    menus.register()
    history_panel.register()
    cli.register()
    resume.register()


def unregister():
    resume.unregister()
    cli.unregister()
    menus.unregister()
    history_panel.unregister()
    jobs.manager.shutdown()
    operators.local.unregister_timers()
    props.unregister()
    _unregister_classes()
