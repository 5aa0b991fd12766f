"""Plain-Python core (no bpy): the parameter schema, the worker process and one module per backend.

Runs outside Blender's process, as ``python -m backend`` from the extension's root folder."""
