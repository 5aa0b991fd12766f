"""The background Blender's messages (trellis_addon/blend_worker.py, started through blend_main.py), typed: its
tasks and its answers on the JSON-lines protocol of protocol.py. Plain Python: the add-on's builder
(trellis_addon/queue/builder.py) encodes the tasks and reads the answers, the background Blender parses the
tasks; both use these types.

`parse` checks what a message can say on its own: types, ranges and the shape of its paths (absolute, their
extension, one beside another); it raises MessageError (a ValueError) naming the field. What needs a job's
context or the disk stays with who has it: that a file exists, a snapshot lies beside the job's GLBs, a
library in the job's asset library folder, a spec's key is finishing.spec_key of it, its settings pass
schema.validate_finish.

Add-on -> background Blender (stdin), one task at a time:
  {"type": "job", "id": str, "kind": "import", "files": [path.glb], "key_file": absolute path,
   "finish": [FinishSpec, one per file] (absent: imported as they come),
   "retexture": path.blend beside the first file (absent: none; never with "finish")}       ImportTask
      import each GLB with Blender's glTF importer and save its snapshot .blend beside it, signed with the
      key in key_file; with "finish", finish each (stages reported as progress; a cancel for the task is
      checked between them) and save the finished snapshot of the spec's key; with "retexture" (the job's
      input_mesh.blend), fit the result onto the object as it looks and transfer its UVs onto the object's
      own mesh, saved as the snapshot of meshfile.KEY
    FinishSpec: {"name": str (not empty), "settings": {finish settings}, "target_size": number in [0, 1e6),
      "texture_size": int in (0, 16384], "record": {the result's record}, "preview_image": path or "",
      "library": absolute .blend folder or "", "saved": absolute path of the job's library ledger,
      "key": finishing.spec_key of it}
  {"type": "job", "id": str, "kind": "prepare", image fields and/or mesh fields}               PrepareTask
      image fields: "image": path (not empty), "rgba": path.npy in the job folder, "thumb": path.png in the
      same folder or "", "colorspace": str, "alpha_mode": "" or one of ALPHA_MODES, "max_megapixels": number
      above 0 -> read, check and downsize the image with Blender's image code and write the prepared input
      (and the thumbnail); mesh fields (a retexture job): "mesh_blend": path.blend, "mesh_glb": path.glb
      beside it -> export that .blend's lone mesh object as the job's input GLB
  {"type": "cancel", "id": str}  stop that import task's finishing before its next stage
  {"type": "shutdown"} or EOF: exit

Background Blender -> add-on (stdout):
  {"type": "hello", "protocol": 1, "pid": int, "python": str, "blender": str, "backends": []}
  {"type": "progress", ...}, {"type": "error", "id", "code", "message"}  as the Python workers send them; a
      task that does not parse (or names files that are not there) is answered BAD_INPUT
  {"type": "result", "id", "snapshots": [path.blend], "qa": [one per finished file: its measured quality,
   or {"failed": str} where a step failed and its raw snapshot is listed], "libraries": [path.blend]}
                                                                                              ImportAnswer
  {"type": "result", "id", "image_sha": 64 hex digits (image fields sent), "mesh": path.glb (mesh fields
   sent)}                                                                                      PrepareAnswer
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from . import protocol

ALPHA_MODES = ("STRAIGHT", "PREMUL", "CHANNEL_PACKED", "NONE")  # Blender's image alpha modes
MAX_TEXTURE = 16384
MAX_TARGET_SIZE = 1e6
HEX = frozenset("0123456789abcdef")
REQUIRED = object()  # _take's default: the field must be there
NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list"}


class MessageError(ValueError):
    """A field of a message that is missing or not of its shape. `field` names it as the message has it
    ("finish[1].texture_size"); `part` is its top-level field ("finish")."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.field = name
        self.part = name.split("[")[0].split(".")[0]


def is_sha(value) -> bool:
    """Whether value is a SHA-256 as the prepared input's hash is written: 64 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= HEX


def _is(value, kind) -> bool:
    if isinstance(value, bool):  # JSON's true is no count
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def _take(msg: dict, name: str, kind, default=REQUIRED, where: str = ""):
    """msg[name], of kind (float: any number, kept as sent; None: absent where the default is None); the
    default where absent; MessageError naming the field otherwise."""
    value = msg.get(name)
    if name not in msg or value is None and default is None:
        if default is REQUIRED:
            raise MessageError(where + name, "missing")
        return default
    if not _is(value, kind):
        raise MessageError(where + name, f"must be {NAMES[kind]}, got {type(value).__name__}")
    return value


def _paths(msg: dict, name: str) -> list[str]:
    value = _take(msg, name, list)
    for index, path in enumerate(value):
        if not isinstance(path, str):
            raise MessageError(f"{name}[{index}]", f"must be a path, got {type(path).__name__}")
    return list(value)


def _message(msg, kind: str = "") -> dict:
    """msg as a dict whose kind (a task's) is `kind`; its id a string."""
    if not isinstance(msg, dict):
        raise MessageError("message", f"must be an object, got {type(msg).__name__}")
    if kind and msg.get("kind") != kind:
        raise MessageError("kind", f"must be {kind!r}, got {msg.get('kind')!r}")
    _take(msg, "id", str)
    return msg


def _beside(path: str, other: str) -> bool:
    return os.path.dirname(path) == os.path.dirname(other)


class Message:
    def to_message(self) -> dict:
        raise NotImplementedError

    def to_line(self) -> str:
        """The message as the protocol line that carries it."""
        msg = self.to_message()
        return protocol.encode(msg.pop("type"), **msg)


@dataclass(frozen=True)
class FinishSpec:
    """One result's finishing, as finishing.specs makes it (plain JSON: finishing.run takes to_message())."""
    name: str
    settings: dict
    target_size: float
    texture_size: int
    record: dict
    preview_image: str
    library: str
    saved: str
    key: str

    def to_message(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, spec, where: str = "") -> "FinishSpec":
        if not isinstance(spec, dict):
            raise MessageError(where.rstrip(".") or "spec", f"must be an object, got {type(spec).__name__}")
        found = cls(**{name: _take(spec, name, kind, where=where) for name, kind in (
            ("name", str), ("settings", dict), ("target_size", float), ("texture_size", int), ("record", dict),
            ("preview_image", str), ("library", str), ("saved", str), ("key", str))})
        refused = {"name": not found.name, "target_size": not 0 <= found.target_size < MAX_TARGET_SIZE,
                   "texture_size": not 0 < found.texture_size <= MAX_TEXTURE,
                   "library": bool(found.library) and not os.path.isabs(found.library),
                   "saved": not os.path.isabs(found.saved)}
        for name, bad in refused.items():
            if bad:
                raise MessageError(where + name, f"out of range: {getattr(found, name)!r}")
        return found


@dataclass(frozen=True)
class ImportTask(Message):
    """Import (and finish, or retexture) a finished job's GLBs into signed snapshots."""
    id: str
    files: list[str]
    key_file: str
    finish: list[FinishSpec] | None = None
    retexture: str | None = None  # the job's input_mesh.blend

    def to_message(self) -> dict:
        msg = {"type": "job", "id": self.id, "kind": "import", "files": list(self.files), "key_file": self.key_file}
        if self.finish is not None:
            msg["finish"] = [spec.to_message() for spec in self.finish]
        if self.retexture is not None:
            msg["retexture"] = self.retexture
        return msg

    @classmethod
    def parse(cls, msg) -> "ImportTask":
        msg = _message(msg, "import")
        files = _paths(msg, "files")
        key_file = _take(msg, "key_file", str)
        if not os.path.isabs(key_file):
            raise MessageError("key_file", f"must be an absolute path, got {key_file!r}")
        retexture = _take(msg, "retexture", str, None)
        if retexture is not None and not (retexture.endswith(".blend") and files and files[0].endswith(".glb")
                                          and _beside(files[0], retexture)):
            raise MessageError("retexture", "must be a .blend beside the first file, a .glb")
        plan = _take(msg, "finish", list, None)
        if plan is not None and (retexture is not None or len(plan) != len(files)):
            raise MessageError("finish", "one spec per file, and no retexture")
        finish = None if plan is None else [FinishSpec.parse(s, f"finish[{i}].") for i, s in enumerate(plan)]
        return cls(msg["id"], files, key_file, finish, retexture)


@dataclass(frozen=True)
class PrepareTask(Message):
    """Read a job's image into its prepared input (image fields) and/or export a retexture job's mesh (mesh
    fields): each group is there or not as a whole (image / mesh_blend None: not)."""
    id: str
    image: str | None = None
    rgba: str = ""
    thumb: str = ""
    colorspace: str = ""
    alpha_mode: str = ""
    max_megapixels: float = 0.0
    mesh_blend: str | None = None
    mesh_glb: str = ""

    def to_message(self) -> dict:
        msg = {"type": "job", "id": self.id, "kind": "prepare"}
        if self.image is not None:
            msg.update(image=self.image, rgba=self.rgba, thumb=self.thumb, colorspace=self.colorspace,
                       alpha_mode=self.alpha_mode, max_megapixels=self.max_megapixels)
        if self.mesh_blend is not None:
            msg.update(mesh_blend=self.mesh_blend, mesh_glb=self.mesh_glb)
        return msg

    @classmethod
    def parse(cls, msg) -> "PrepareTask":
        msg = _message(msg, "prepare")
        found = {"id": msg["id"]}
        if msg.get("image") is None and msg.get("mesh_blend") is None:
            raise MessageError("image or mesh_blend", "a prepare task needs one")
        if msg.get("mesh_blend") is not None:
            found.update(mesh_blend=_take(msg, "mesh_blend", str), mesh_glb=_take(msg, "mesh_glb", str))
            if not found["mesh_blend"].endswith(".blend"):
                raise MessageError("mesh_blend", f"must be a .blend, got {found['mesh_blend']!r}")
            if not (found["mesh_glb"].endswith(".glb") and _beside(found["mesh_glb"], found["mesh_blend"])):
                raise MessageError("mesh_glb", "must be a .glb beside mesh_blend")
        if msg.get("image") is not None:
            found.update(image=_take(msg, "image", str), rgba=_take(msg, "rgba", str),
                         thumb=_take(msg, "thumb", str, ""), colorspace=_take(msg, "colorspace", str, ""),
                         alpha_mode=_take(msg, "alpha_mode", str, ""),
                         max_megapixels=_take(msg, "max_megapixels", float))
            refused = {"image": not found["image"], "rgba": not found["rgba"].endswith(".npy"),
                       "thumb": bool(found["thumb"]) and not _beside(found["thumb"], found["rgba"]),
                       "alpha_mode": found["alpha_mode"] not in ("", *ALPHA_MODES),
                       "max_megapixels": not found["max_megapixels"] > 0}
            for name, bad in refused.items():
                if bad:
                    raise MessageError(name, f"refused: {found[name]!r}")
        return cls(**found)


@dataclass(frozen=True)
class ImportAnswer(Message):
    """An import task's result: the snapshots to append, per finished file its measured quality (or
    {"failed": why}), the asset library files saved."""
    id: str
    snapshots: list[str] = field(default_factory=list)
    qa: list[dict | None] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)

    def to_message(self) -> dict:
        return {"type": "result", "id": self.id, "snapshots": list(self.snapshots), "qa": list(self.qa),
                "libraries": list(self.libraries)}

    @classmethod
    def parse(cls, msg, drop: bool = False) -> "ImportAnswer":
        """The answer; with drop, what does not parse is left out instead of refused (a field that is no list
        is empty, a path that is no string goes, a qa that is no object is None: its place is its file's)."""
        if not drop:
            msg = _message(msg)
            paths = {name: _paths(msg, name) for name in ("snapshots", "libraries")}
            qa = _take(msg, "qa", list)
            for index, value in enumerate(qa):
                if not isinstance(value, dict):
                    raise MessageError(f"qa[{index}]", f"must be an object, got {type(value).__name__}")
            return cls(msg["id"], paths["snapshots"], list(qa), paths["libraries"])
        msg = msg if isinstance(msg, dict) else {}

        def listed(name):
            value = msg.get(name)
            return value if isinstance(value, list) else []
        return cls(msg.get("id") if isinstance(msg.get("id"), str) else "",
                   [p for p in listed("snapshots") if isinstance(p, str)],
                   [q if isinstance(q, dict) else None for q in listed("qa")],
                   [p for p in listed("libraries") if isinstance(p, str)])


@dataclass(frozen=True)
class PrepareAnswer(Message):
    """A prepare task's result: the prepared input's hash (image fields sent), the mesh GLB (mesh fields)."""
    id: str
    image_sha: str | None = None
    mesh: str | None = None

    def to_message(self) -> dict:
        msg = {"type": "result", "id": self.id}
        msg.update({k: v for k, v in (("image_sha", self.image_sha), ("mesh", self.mesh)) if v is not None})
        return msg

    @classmethod
    def parse(cls, msg) -> "PrepareAnswer":
        msg = _message(msg)
        image_sha, mesh = _take(msg, "image_sha", str, None), _take(msg, "mesh", str, None)
        if image_sha is not None and not is_sha(image_sha):
            raise MessageError("image_sha", "must be 64 lowercase hex digits")
        return cls(msg["id"], image_sha, mesh)


TASKS = {"import": ImportTask, "prepare": PrepareTask}  # a job message's kind -> its task type
