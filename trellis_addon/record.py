"""The one record shape of a job: job.json (as the job goes), record.json (before the import) and the
imported object's "trellis2" property are all a Record written out. No bpy here, never a key.

`Record.from_json` type-checks what it reads (a history folder is outside data: another process or a
person may have edited it); a record with a field of the wrong type raises RecordError, which history
files as a BROKEN entry.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

OBJECT_PROPERTY = "trellis2"  # JSON string on each imported root object
QA_PROPERTY = "trellis2_qa"  # on a finished result's root object: its qa as JSON (valid_qa)
ROLE = "trellis2_part"  # on a LOD: "lod"; on the baked low-poly: "low"; absent on the result itself
ROLES = ("lod", "low")


class RecordError(ValueError):
    pass


QA_COUNTS = ("triangles", "vertices", "parts", "boundary_edges", "non_manifold_edges")
QA_REMOVED = ("welded_vertices", "dropped_parts", "interior_faces")
QA_PREVIEWS = ("rendered", "image", "pending", "none")
QA_MAX_COUNT = 1 << 40
QA_MAX_LODS = 8


def _qa_count(value) -> bool:
    return type(value) is int and 0 <= value < QA_MAX_COUNT


def _qa_number(value) -> bool:
    return type(value) in (int, float) and 0 <= value < 1e12


def valid_qa(qa) -> bool:
    """Whether qa has the shape measure() and the pipeline give it (read back from a snapshot, a History
    record or an object another process wrote): known keys only, counts, sizes and names in range."""
    if not isinstance(qa, dict) or len(qa) > 32:
        return False
    if "failed" in qa:
        return set(qa) == {"failed"} and isinstance(qa["failed"], str) and len(qa["failed"]) <= 1000
    known = set(QA_COUNTS) | {"watertight", "size_m", "texture_px", "texel_density", "removed",
                              "lod_triangles", "low_triangles", "preview"}
    if not set(qa) <= known or not set(QA_COUNTS) <= set(qa):
        return False
    lists = {"size_m": (3, _qa_number), "texture_px": (2, _qa_count), "lod_triangles": (QA_MAX_LODS, _qa_count)}
    for key, (most, ok) in lists.items():
        value = qa.get(key, [])
        if not isinstance(value, list) or len(value) > most or not all(ok(v) for v in value):
            return False
    removed = qa.get("removed", {})
    return (all(_qa_count(qa[k]) for k in QA_COUNTS) and type(qa.get("watertight", False)) is bool
            and _qa_number(qa.get("texel_density", 0)) and _qa_count(qa.get("low_triangles", 0))
            and qa.get("preview", "none") in QA_PREVIEWS
            and isinstance(removed, dict) and set(removed) <= set(QA_REMOVED)
            and all(_qa_count(v) for v in removed.values()))


@dataclass
class Record:
    id: str = ""
    name: str = ""
    image: str = ""  # the user's image (path or datablock name)
    backend: str = ""
    mode: str = "generate"
    model: str = ""
    settings: dict = field(default_factory=dict)
    state: str = ""
    error: str | None = None
    error_code: str | None = None
    created: float = 0.0
    seconds: float = 0.0
    files: list = field(default_factory=list)  # relative to the job folder on disk; absolute on an object
    seeds: list = field(default_factory=list)
    cost: float | None = None
    cost_unit: str | None = None
    target_size: float = 0.0
    remote: dict | None = None  # the latest submitted remote task
    remote_tasks: list = field(default_factory=list)  # every one
    objects: list = field(default_factory=list)
    log: str = ""
    image_hash: str = ""
    cache_key: str = ""
    addon_version: str = ""
    finished: float | None = None
    info: dict = field(default_factory=dict)
    finish: dict = field(default_factory=dict)  # the finish settings asked (schema.FINISH_PARAMS)
    # per result, in the order of files: its measured quality (finish.measure), {"failed": "stage: message"}
    # where finishing failed, {} where it was not finished
    qa: list = field(default_factory=list)
    # on an imported object only
    job_folder: str = ""
    from_cache: bool = False
    seed: int | None = None
    index: int | None = None  # which of the job's results it is (seeds, files and qa by index)

    def to_json(self) -> dict:
        return asdict(self)

    def for_object(self, index: int) -> str:
        """The object property of result `index`: this record with that result's seed."""
        seeds = self.seeds or [None]
        return json.dumps(dict(self.to_json(), seed=seeds[min(index, len(seeds) - 1)], index=index))

    def result_qa(self) -> dict:
        """The measured quality of this object's result ({} when not measured)."""
        index = self.index or 0
        return self.qa[index] if 0 <= index < len(self.qa) else {}

    @classmethod
    def from_json(cls, data) -> "Record":
        """A Record from a parsed JSON object; RecordError naming the first field of the wrong type.
        Unknown fields are dropped (a newer add-on's)."""
        if not isinstance(data, dict):
            raise RecordError("not a JSON object")
        out = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name == "qa" and value == {}:
                value = []  # records written before qa was per result
            kinds = _KINDS[f.name]
            if value is None and None in kinds:
                out[f.name] = None
                continue
            ok = any(isinstance(value, k) for k in kinds if k is not None)
            if isinstance(value, bool) and bool not in kinds:
                ok = False  # JSON true is no number
            if not ok:
                raise RecordError(f"field {f.name!r} has the wrong type ({type(value).__name__})")
            if isinstance(value, float) and not math.isfinite(value):
                raise RecordError(f"field {f.name!r} is not a finite number")
            if f.name == "files" and not all(isinstance(v, str) for v in value):
                raise RecordError("field 'files' must list file names")
            if f.name == "qa" and not all(v == {} or valid_qa(v) for v in value):
                raise RecordError("field 'qa' must list one measured quality per result")
            if f.name == "seeds" and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise RecordError("field 'seeds' must list whole numbers")
            out[f.name] = float(value) if float in kinds and isinstance(value, int) else value
        return cls(**out)

    @classmethod
    def from_text(cls, text: str | None) -> "Record | None":
        """The record of an object property; None when absent or unreadable."""
        try:
            return cls.from_json(json.loads(text)) if text else None
        except (ValueError, TypeError):
            return None

    def get(self, name: str, default=None):
        """dict-style read (None counts as absent), for code that treats records and entries alike."""
        value = getattr(self, name, None)
        return default if value is None else value


_NUMBER = (int, float)
_KINDS = {
    "id": (str,), "name": (str,), "image": (str,), "backend": (str,), "mode": (str,), "model": (str,),
    "settings": (dict,), "state": (str,), "error": (str, None), "error_code": (str, None),
    "created": _NUMBER, "seconds": _NUMBER, "files": (list,), "seeds": (list,), "cost": (int, float, None),
    "cost_unit": (str, None), "target_size": _NUMBER, "remote": (dict, None), "remote_tasks": (list,),
    "objects": (list,), "log": (str,), "image_hash": (str,), "cache_key": (str,), "addon_version": (str,),
    "finished": (int, float, None), "info": (dict,), "finish": (dict,), "qa": (list,), "job_folder": (str,),
    "from_cache": (bool,), "seed": (int, None), "index": (int, None),
}
