"""Operators: thin wrappers that hand work to trellis_addon."""
from . import generate, presets

classes = generate.classes + presets.classes
