"""TRELLIS.2 for Blender: image to textured PBR mesh. This module only registers."""
import bpy

from . import operators, panels
from .panels import history as history_panel, menus, sidebar
from .trellis_addon import cli, prefs, props, resume, spending
from .trellis_addon.queue import manager

classes = props.classes + prefs.classes + operators.classes + panels.classes
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register():
    _register_classes()
    props.register()
    spending.register()
    sidebar.register()
    menus.register()
    history_panel.register()
    cli.register()
    resume.register()


def unregister():
    resume.unregister()
    cli.unregister()
    menus.unregister()
    history_panel.unregister()
    manager.shutdown()
    spending.unregister()
    operators.local.unregister_timers()
    props.unregister()
    _unregister_classes()
