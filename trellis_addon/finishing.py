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

from ..backend import schema
from . import finish, history
from .importer import result_name
from .record import QA_PROPERTY, ROLE, valid_qa

BAKE_SAMPLES = 16
SAVED = "library.json"  # in a job folder: per result name, the asset library file saved for it (saved_file)


def specs(job) -> list[dict] | None:
    """Per result of a finished job, everything finishing it needs (plain JSON, sent to the background
    Blender as it is); None where the job is imported as it comes. Made once per result files (the
    builder asks twice, the import once more)."""
    files = list((job.result or {}).get("files") or [])
    if job.finish_plan is not None and job.finish_plan[0] == files:
        return job.finish_plan[1]
    job.finish_plan = (files, _specs(job, files))
    return job.finish_plan[1]


def _specs(job, files: list) -> list[dict] | None:
    if not job.finish or job.mode != "generate":
        return None
    record = job.record()
    thumb = os.path.join(job.output_dir, history.THUMB)
    preview = thumb if os.path.isfile(thumb) else (job.image_ref if os.path.isfile(job.image_ref or "") else "")
    out = []
    for index in range(len(files)):
        spec = {"name": result_name(job.name, index, len(files)), "settings": dict(job.finish),
                "target_size": float(job.target_size or 0.0),
                "texture_size": int(job.settings.get("texture_size") or 1024),
                "record": json.loads(record.for_object(index)), "preview_image": preview,
                "library": job.asset_library or "", "saved": os.path.join(job.output_dir, SAVED)}
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
    finish.roots(objects)[0][QA_PROPERTY] = json.dumps(qa)
    library = ""
    if spec["library"]:
        library = finish.save_to_library(list(objects) + extras, spec["library"], spec["name"],
                                         own=saved_file(spec["saved"], spec["name"]))
        _note_saved(spec["saved"], spec["name"], library)
    return qa, extras, library


def saved_file(ledger: str, name: str) -> dict | None:
    """The asset library file saved for result `name` of a job ({"path", "size", "mtime_ns"}, as the job
    folder's SAVED file says; None where it says nothing readable). A later finishing of the same result
    (the History entry imported again, other finish settings) replaces that file only while it is still the
    one saved: finish.save_to_library checks."""
    try:
        with open(ledger, encoding="utf-8") as f:
            found = json.load(f).get(name)
    except (OSError, ValueError, AttributeError):
        return None
    kinds = {"path": str, "size": int, "mtime_ns": int}
    ok = isinstance(found, dict) and all(type(found.get(k)) is t for k, t in kinds.items())
    return found if ok and os.path.isabs(found["path"]) else None


def _note_saved(ledger: str, name: str, path: str) -> None:
    """The job folder's SAVED file says `path` is result `name`'s (a write that fails only means that a
    later finishing saves under a new name)."""
    try:
        with open(ledger, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = {}
    try:
        st = os.stat(path)
        saved = dict(saved if isinstance(saved, dict) else {}, **{name: {"path": path, "size": st.st_size,
                                                                          "mtime_ns": st.st_mtime_ns}})
        history.write_json_atomic(ledger, saved)
    except OSError as exc:
        print(f"TRELLIS: could not note {path} as {name}'s asset library file: {exc}")


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
    text = next((r.get(QA_PROPERTY) for r in finish.roots(main) if r.get(QA_PROPERTY)), None)
    try:
        qa = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        qa = None
    return main, extras, qa if valid_qa(qa) else None


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


def _count(n, one: str, many: str = "") -> str:
    n = int(n or 0)
    return f"{schema.group_digits(n, 1)} {one if n == 1 else many or one + 's'}"


def _holes(qa: dict) -> str:
    return "watertight" if qa.get("watertight") else _count(qa.get("boundary_edges"), "open edge")


def _size(qa: dict) -> str:
    size = " × ".join(f"{v:.3g}" for v in qa.get("size_m") or ())
    return f"{size} m" if size else ""


def _density(qa: dict) -> str:
    return f"{float(qa.get('texel_density') or 0):.0f} texels/m"


def qa_rows(qa: dict) -> list[tuple[str, str]]:
    """The measured quality (finish.measure) as (text, icon) rows: the Selected Result panel's box; qa_line
    is the same facts on one line."""
    if not qa:
        return []
    if "failed" in qa:
        return [(f"Finishing failed at {qa['failed']}", "ERROR")]
    rows = [(f"{_count(qa.get('triangles'), 'triangle')} · {_count(qa.get('vertices'), 'vertex', 'vertices')}",
             "MESH_DATA"), (f"{_count(qa.get('parts'), 'part')} · {_holes(qa)}", "MESH_ICOSPHERE")]
    if qa.get("non_manifold_edges"):  # a row of its own: the sidebar is narrow
        rows.append((_count(qa["non_manifold_edges"], "non-manifold edge"), "ERROR"))
    if _size(qa):
        rows.append((_size(qa), "FIXED_SIZE"))
    texture = qa.get("texture_px") or []
    rows.append((f"{texture[0]}×{texture[-1]} px · {_density(qa)}" if texture else _density(qa), "TEXTURE"))
    removed = qa.get("removed") or {}
    if any(removed.values()):
        rows.append((f"Removed {_count(removed.get('welded_vertices'), 'welded vertex', 'welded vertices')}, "
                     f"{_count(removed.get('dropped_parts'), 'part')}, "
                     f"{_count(removed.get('interior_faces'), 'interior face')}", "TRASH"))
    if qa.get("lod_triangles"):
        rows.append(("LODs " + " / ".join(_count(t, "triangle") for t in qa["lod_triangles"]), "MOD_DECIM"))
    if qa.get("low_triangles"):
        rows.append((f"Low-poly {_count(qa['low_triangles'], 'triangle')}", "MESH_CUBE"))
    return rows


def qa_line(qa: dict) -> str:
    """One line for the CLI: the rows of qa_rows, shortest form (triangles, parts, holes, size, texel
    density, LODs, low-poly)."""
    if not qa:
        return "not measured"
    if "failed" in qa:
        return f"finishing failed: {qa['failed']}"
    parts = [_count(qa.get("triangles"), "triangle"), _count(qa.get("parts"), "part"), _holes(qa), _size(qa),
             _density(qa)]
    if qa.get("lod_triangles"):
        parts.append("LODs " + "/".join(str(int(n)) for n in qa["lod_triangles"]))
    if qa.get("low_triangles"):
        parts.append(f"low-poly {int(qa['low_triangles'])}")
    return ", ".join(p for p in parts if p)
