"""Blender glue that is neither an operator nor a panel: properties generated from the schema,
preferences, the job manager talking to workers, and the GLB importer/placer."""
