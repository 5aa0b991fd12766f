"""Operators: thin wrappers that hand work to trellis_addon."""
from . import from_image, generate, local, presets

classes = generate.classes + presets.classes + local.classes + from_image.classes
