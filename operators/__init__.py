"""Operators: thin wrappers that hand work to trellis_addon."""
from . import generate, local, presets, retexture

classes = generate.classes + presets.classes + local.classes + retexture.classes
