"""Panels and menu entries: drawing only; they read the scene settings, the job manager and history."""
from . import history, sidebar

classes = sidebar.classes + history.classes
