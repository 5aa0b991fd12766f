"""Panels and menu entries: drawing only; they read the scene settings and the job manager."""
from . import sidebar

classes = sidebar.classes
