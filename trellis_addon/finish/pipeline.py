"""The finishing stages in order, with progress, cancel between stages and per-stage undo on failure."""
from __future__ import annotations

import bpy

from mathutils import Vector

from . import asset, bake, cleanup, lods, naming, qa, transform
from .common import FinishCancelled, FinishError, mesh_objects, roots as top_level

STAGES = (("naming", "Naming"), ("cleanup", "Cleaning up"), ("interior", "Removing interior"),
          ("scale", "Fitting size"), ("origin", "Setting origin"), ("qa", "Measuring"),
          ("lods", "Making LODs"), ("bake", "Baking low-poly"), ("asset", "Marking asset"))


class _Snapshot:
    """Meshes and placements of the objects before a geometry stage, to put back if it fails."""

    def __init__(self, objects):
        self.objects = list(objects)
        self.meshes = {o: o.data.copy() for o in mesh_objects(objects)}
        self.placement = {o: (o.matrix_basis.copy(), o.matrix_parent_inverse.copy()) for o in objects}

    def restore(self):
        for obj, (basis, inverse) in self.placement.items():
            obj.matrix_basis, obj.matrix_parent_inverse = basis, inverse
        for obj, copy in self.meshes.items():
            broken, name = obj.data, obj.data.name
            obj.data = copy
            if broken.users == 0:
                bpy.data.meshes.remove(broken)
            copy.name = name

    def drop(self):
        for copy in self.meshes.values():
            bpy.data.meshes.remove(copy)


def _bottom_center(objects) -> Vector:
    lo, hi = transform.world_bounds(objects)
    return Vector(((lo.x + hi.x) / 2, (lo.y + hi.y) / 2, lo.z))


def _fit(objects, target_size: float, anchor: Vector) -> None:
    """Scale the roots so the longest side is target_size (cleanup may have changed it; 0: no scaling) and
    move them so the bounds' bottom centre is back on anchor, where the result was placed."""
    lo, hi = transform.world_bounds(objects)
    longest = max(hi - lo)
    if longest <= 0:
        return
    roots = top_level(objects)
    factor = target_size / longest if target_size > 0 else 1.0
    for root in roots:
        root.scale *= factor
        root.location = anchor + (root.location - anchor) * factor
    shift = anchor - _bottom_center(objects)
    for root in roots:
        root.location += shift


def finish(objects, name: str, settings: dict, target_size: float = 0.0, context=None, record: dict | None = None,
           texture_size: int = 1024, bake_samples: int = 16, preview_image: str = "",
           render_preview: bool = True, progress=None, cancelled=None) -> dict:
    """Finish an imported result (its objects: root and meshes) in place, stage by stage.

    settings: a full finish-settings dict (backend.schema.validate_finish). target_size > 0: after
    cleanup the longest side is made that many metres, the bounds' bottom centre kept where it stood
    (importer.place_results puts it on the cursor). record: the result's record as a dict (tags and
    description). texture_size and bake_samples: the baked low-poly's. preview_image: the input image,
    the asset preview where none can be rendered (or always, render_preview=False).
    progress(text, fraction) before each stage; cancelled() -> True stops before the
    next stage with FinishCancelled. A failing stage is undone and raises FinishError(stage, message);
    both carry `.report`, what was done until then.
    Returns the report: {"done": [stage, ...], "qa": {...}, "renamed": {...}, "lods": [objects],
    "lod_collection", "low", "low_material", "preview"}."""
    context = context or bpy.context
    report = {"done": [], "qa": {}, "renamed": {}, "lods": [], "lod_collection": None, "low": None,
              "low_material": None, "preview": None}
    removed = {"welded_vertices": 0, "dropped_parts": 0, "interior_faces": 0}
    objects = list(objects)
    meshes = mesh_objects(objects)
    anchor = _bottom_center(objects)  # where the result stands: it stays there
    home = (meshes or objects)[0].users_collection
    collection = home[0] if home else context.scene.collection

    def run_naming():
        report["renamed"] = naming.name_result(objects, name)

    def run_cleanup():
        for obj in meshes:
            counts = cleanup.weld_and_drop(obj.data, settings["min_part_fraction"])
            removed["welded_vertices"] += counts["welded_vertices"]
            removed["dropped_parts"] += counts["dropped_parts"]

    def run_interior():
        removed["interior_faces"] += sum(cleanup.remove_interior(obj.data) for obj in meshes)

    def run_scale():
        _fit(objects, target_size, anchor)  # also back on its place where cleanup moved the bounds
        if settings["apply_scale"]:
            transform.apply_scale(objects)

    def run_qa():
        report["qa"].update(qa.measure(objects), removed=removed)

    def run_lods():
        coll, made, counts = lods.make_lods(meshes[0], name, settings["lod_levels"], settings["lod_ratio"],
                                            collection, context.evaluated_depsgraph_get())
        report.update(lods=made, lod_collection=coll)
        report["qa"]["lod_triangles"] = counts

    def run_bake():
        within = None if progress is None else (
            lambda text, f: progress(text, (position["index"] + f) / position["count"]))
        low, material, count = bake.bake_low_poly(context, objects, name, settings["bake_faces"], texture_size,
                                                  collection, bake_samples, within)
        report.update(low=low, low_material=material)
        report["qa"]["low_triangles"] = count

    def run_asset():
        report["preview"] = asset.mark_asset(objects[0], record, settings, preview_image, render_preview, objects)

    def undo_asset():
        if objects[0].asset_data is not None:
            objects[0].asset_clear()

    plan = {
        "naming": (True, run_naming, None),
        "cleanup": (settings["cleanup"], run_cleanup, "mesh"),
        "interior": (settings["remove_interior"], run_interior, "mesh"),
        "scale": (True, run_scale, "mesh"),
        "origin": (settings["origin"] != "KEEP", lambda: transform.set_origin(objects, settings["origin"]), "mesh"),
        "qa": (True, run_qa, None),
        "lods": (settings["lod_levels"] > 0 and bool(meshes), run_lods, None),
        "bake": (settings["bake_faces"] > 0 and bool(meshes), run_bake, None),
        "asset": (settings["mark_asset"], run_asset, undo_asset),
    }
    chosen = [(key, label) for key, label in STAGES if plan[key][0]]
    position = {"index": 0, "count": len(chosen)}
    for index, (key, label) in enumerate(chosen):
        position["index"] = index
        if cancelled is not None and cancelled():
            raise _with_report(FinishCancelled(key), report)
        if progress is not None:
            progress(label, index / len(chosen))
        _, run, undo = plan[key]
        snapshot = _Snapshot(objects) if undo == "mesh" else None
        try:
            run()
        except Exception as exc:
            if snapshot is not None:
                snapshot.restore()
            elif undo is not None:
                undo()
            raise _with_report(FinishError(key, str(exc) or type(exc).__name__), report) from exc
        if snapshot is not None:
            snapshot.drop()
        report["done"].append(key)
    if progress is not None:
        progress("Finished", 1.0)
    return report


def _with_report(error: FinishError, report: dict) -> FinishError:
    error.report = report
    return error


def longest_side(objects) -> float:
    lo, hi = transform.world_bounds(objects)
    return float(max(hi - lo)) if hi != lo else 0.0

