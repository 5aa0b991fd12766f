"""Operators: thin wrappers that hand work to trellis_addon."""
from . import from_image, generate, history, local, presets, quote, retexture

classes = (generate.classes + presets.classes + local.classes + from_image.classes + history.classes
           + retexture.classes + quote.classes)
