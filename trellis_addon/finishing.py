"""A job's results finished with the finish/ library: one call, `run`, made in the background Blender (its
import task, before the snapshot .blend is saved: blend_worker.py) or on the main thread (background runs,
scripts, the CLI, and where no background Blender starts: results.import_job).

What a finished result's snapshot carries, so appending it is the whole import: the result's root has its
measured quality in QA_PROPERTY, each LOD and the low-poly say what they are in ROLE, the LODs' collection
comes along. The snapshot is keyed by everything that shapes the finished result (`spec_key`), so another
setting makes another snapshot and the raw one stays.
"""
from __future__ import annotations

import hashlib
import json
import os

import bpy

from . import finish, history

ROLE = "trellis2_part"  # on a LOD: "lod"; on the baked low-poly: "low"; absent on the result itself
QA_PROPERTY = "trellis2_qa"  # on a finished result's root object: its qa as JSON
BAKE_SAMPLES = 16


def result_name(name: str, index: int, count: int) -> str:
    """What importer.place_results calls result `index` of `count`."""
    return name if count == 1 else f"{name}.{index + 1:02d}"


def specs(job) -> list[dict] | None:
    """Per result of a finished job, everything finishing it needs (plain JSON, sent to the background
    Blender as it is); None where the job is imported as it comes."""
    if not job.finish or job.mode != "generate":
        return None
    files = (job.result or {}).get("files") or []
    record = job.record()
    thumb = os.path.join(job.output_dir, history.THUMB)
    preview = thumb if os.path.isfile(thumb) else (job.image_ref if os.path.isfile(job.image_ref or "") else "")
    out = []
    for index in range(len(files)):
        spec = {"name": result_name(job.name, index, len(files)), "settings": dict(job.finish),
                "target_size": float(job.target_size or 0.0),
                "texture_size": int(job.settings.get("texture_size") or 1024),
                "record": json.loads(record.for_object(index)), "preview_image": preview,
                "library": job.asset_library or ""}
        spec["key"] = spec_key(spec)
        out.append(spec)
    return out


def spec_key(spec: dict) -> str:
    """12 hex digits of what shapes the finished result (not the record, the preview or the library)."""
    shaping = {k: spec[k] for k in ("name", "settings", "target_size", "texture_size")}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:12]


def run(context, objects: list, spec: dict, progress=None, cancelled=None) -> tuple[dict, list, str]:
    """Finish one result's objects (root and meshes, as imported and, on the main thread, placed) per spec.
    Returns (qa, extras: the LODs and the low-poly, the library .blend or ""). finish.FinishError and
    finish.FinishCancelled propagate (the objects are as the last good stage left them)."""
    report = finish.finish(objects, spec["name"], spec["settings"], target_size=spec["target_size"], context=context,
                           record=spec["record"], texture_size=spec["texture_size"], bake_samples=BAKE_SAMPLES,
                           preview_image=spec["preview_image"], progress=progress, cancelled=cancelled)
    for obj in report["lods"]:
        obj[ROLE] = "lod"
    if report["low"] is not None:
        report["low"][ROLE] = "low"
    extras = list(report["lods"]) + ([report["low"]] if report["low"] is not None else [])
    qa = dict(report["qa"], preview=report["preview"] or "none")
    roots(objects)[0][QA_PROPERTY] = json.dumps(qa)
    library = finish.save_to_library(list(objects) + extras, spec["library"], spec["name"]) if spec["library"] else ""
    return qa, extras, library


def roots(objects) -> list:
    return [o for o in objects if o.parent is None or o.parent not in objects]


def snapshot_ids(objects: list, extras: list) -> set:
    """What a finished snapshot holds: the objects and the LODs' collection (with its objects)."""
    ids = set(objects) | set(extras)
    ids |= {c for o in extras if o.get(ROLE) == "lod" for c in o.users_collection}
    return ids


def split(objects: list) -> tuple[list, list, dict | None]:
    """An imported (or appended) result's objects: (the result's, the LODs and low-poly, its qa where it
    comes finished, else None)."""
    main = [o for o in objects if o.get(ROLE) is None]
    extras = [o for o in objects if o.get(ROLE) is not None]
    text = next((r.get(QA_PROPERTY) for r in roots(main) if r.get(QA_PROPERTY)), None)
    try:
        qa = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        qa = None
    return main, extras, qa if isinstance(qa, dict) else None


def adopt(extras: list, collection) -> None:
    """The LODs' collections and the low-poly into collection (the scene's TRELLIS collection)."""
    for obj in extras:
        if obj.get(ROLE) == "lod":
            for coll in obj.users_collection:
                if coll.name not in collection.children and coll != collection:
                    for parent in [p for p in bpy.data.collections if coll.name in p.children]:
                        parent.children.unlink(coll)
                    if coll.name in bpy.context.scene.collection.children:
                        bpy.context.scene.collection.children.unlink(coll)
                    collection.children.link(coll)
        else:
            for coll in list(obj.users_collection):
                coll.objects.unlink(obj)
            collection.objects.link(obj)


def qa_line(qa: dict) -> str:
    """One line for the CLI and the panel: triangles, parts, holes, size, texel density, LODs, low-poly."""
    if not qa:
        return "not measured"
    if "failed" in qa:
        return f"finishing failed: {qa['failed']}"
    size = " × ".join(f"{v:.3g}" for v in qa.get("size_m") or ())
    parts = [f"{qa.get('triangles', 0):,} triangles".replace(",", " "),
             f"{qa.get('parts', 0)} part{'' if qa.get('parts') == 1 else 's'}",
             "watertight" if qa.get("watertight") else f"{qa.get('boundary_edges', 0)} open edges",
             f"{size} m" if size else "", f"{qa.get('texel_density', 0):.0f} texels/m"]
    if qa.get("lod_triangles"):
        parts.append("LODs " + "/".join(str(n) for n in qa["lod_triangles"]))
    if qa.get("low_triangles"):
        parts.append(f"low-poly {qa['low_triangles']}")
    return ", ".join(p for p in parts if p)
