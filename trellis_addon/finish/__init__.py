"""Finishing an imported result: names, cleanup, interior removal, origin and scale, QA, LODs, a baked
low-poly, the asset mark, a library .blend and exports. Plain functions over bpy data, everything taken as
arguments (no add-on preferences, no operators of ours), so they run the same in the UI's Blender, a
`blender -b` worker and the bpy module. Which need a context (a scene and view layer, no window):
LODs (depsgraph), the bake (Smart UV Project, Cycles bake), export (selection); the rest works on data."""
from .asset import (CATALOG_FILE, CATALOG_ID, CATALOG_PATH, mark_asset, register_library, save_to_library,
                    write_catalog)
from .common import FinishCancelled, FinishError, roots
from .export import FORMATS, export
from .pipeline import STAGES, finish, longest_side
from .qa import measure

__all__ = ["CATALOG_FILE", "CATALOG_ID", "CATALOG_PATH", "FORMATS", "STAGES", "FinishCancelled", "FinishError",
           "export", "finish", "longest_side", "mark_asset", "measure", "register_library", "roots",
           "save_to_library", "write_catalog"]
