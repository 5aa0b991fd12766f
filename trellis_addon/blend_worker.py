"""The background Blender worker: heavy bpy work off the UI's main thread, on the same JSON-lines protocol
as the Python workers (backend/protocol.py). One task at a time:

  {"type": "job", "id", "kind": "import", "files": [path.glb], "finish": [spec, ...] or absent}  import
      each GLB with Blender's glTF importer and save it as the snapshot .blend beside it
      (importer.snapshot_path), signed with the key in "key_file" (signing.py), which the UI's Blender then
      appends in a fraction of the import's time; with a finish spec per file (finishing.specs), finish it
      (stage progress; a cancel for the task is checked between stages) and save the finished snapshot ->
      {"type": "result", "id", "snapshots", "qa": [per file; {"failed": ...} where a step failed, and its raw
      snapshot], "libraries"}. A GLB whose pictures the UI's Blender could not decode safely is refused.
  {"type": "job", "id", "kind": "prepare", "image": path, "colorspace", "alpha_mode", "rgba": path.npy,
      "thumb": path.png or "", "max_megapixels"}  read, check and downsize the image with Blender's image
      code, write the prepared input (and the thumbnail) -> {"type": "result", "id", "image_sha"};
      an unreadable or refused image -> error BAD_INPUT with the message the main thread would give;
      with "mesh_blend": path.blend, "mesh_glb": path.glb (a retexture job, the image fields optional)
      export that .blend's lone mesh object as the job's input GLB -> also "mesh"
  with "retexture": the job's input_mesh.blend instead of "finish" (a retexture job): the result fitted onto
      the object as it looks and its UVs transferred onto the object's own mesh, saved as the snapshot of
      key meshfile.KEY (the transferred mesh and the fitted result)
  {"type": "cancel", "id"}  stop that import task's finishing before its next stage
  {"type": "shutdown"} or EOF: exit

Answers hello, progress, result, error ({"code", "message"}) like the other workers. Started by
queue.manager (blender_spec) through blend_main.py.
"""
from __future__ import annotations

import io
import os
import queue
import sys
import threading
import time
import traceback

import bpy

from ..backend import glb, image_header, protocol, schema
from ..backend.worker import Channel, take_protocol_channel
from . import finish, finishing, image_input, importer, meshfile, signing


def _signing_key(task: dict) -> bytes:
    """The key the task's snapshots are signed with, read from the key file it names."""
    path = task.get("key_file")
    try:
        if not (isinstance(path, str) and os.path.isabs(path)):
            raise signing.SigningError("no key file named")
        return signing.read_key(path)
    except (OSError, signing.SigningError) as exc:
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, f"import task: the signing key: {exc}") from None


def import_task(channel: Channel, task: dict, cancelled=None) -> dict:
    files, plan = task.get("files"), task.get("finish")
    if not isinstance(files, list) or not all(isinstance(f, str) and os.path.isfile(f) for f in files):
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, "import task needs existing GLB files")
    key = _signing_key(task)
    if task.get("retexture") is not None:
        return _retexture(channel, task, files, key)
    if plan is not None and not (isinstance(plan, list) and len(plan) == len(files)
                                 and all(_good_spec(spec) for spec in plan)):
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, "import task: one finish spec per file, or none")
    snapshots, measured, libraries = [], [], []
    for index, path in enumerate(files):
        def say(text, fraction=0.0, index=index):
            channel.send("progress", id=task["id"], stage="import", step=index, total=len(files),
                         fraction=(index + fraction) / len(files),
                         text=text if len(files) == 1 else f"{text} ({index + 1}/{len(files)})")

        say("Importing in the background")
        try:  # nothing outside the GLB is ever read
            glb.check_self_contained(path)
        except ValueError as exc:
            raise protocol.JobError(protocol.ErrorCode.BAD_OUTPUT, f"{os.path.basename(path)}: {exc}") from None
        bpy.ops.wm.read_homefile(use_empty=True)  # nothing of an earlier task stays in memory
        objects = importer.import_glb(bpy.context, path, snapshot=True, from_glb=True, signing_key=key)
        snap = importer.snapshot_path(path)
        if not objects or not importer.fresh_snapshot(path):
            raise protocol.JobError(protocol.ErrorCode.BAD_OUTPUT,
                                    f"{os.path.basename(path)} imported no objects or its .blend was not saved")
        _refuse_pictures(path, snap)
        if plan is None:
            snapshots.append(snap)
            continue
        spec = dict(plan[index], settings=schema.validate_finish(plan[index]["settings"]))
        try:
            qa, extras, library = finishing.run(bpy.context, objects, spec, progress=say, cancelled=cancelled)
        except finish.FinishCancelled:
            raise protocol.JobError(protocol.ErrorCode.CANCELLED, "Finishing cancelled") from None
        except finish.FinishError as exc:  # the raw result is imported instead; the job says which step failed
            snapshots.append(snap)
            measured.append({"failed": str(exc)})
            continue
        finished = importer.snapshot_path(path, spec["key"])
        importer.write_snapshot(finished, finishing.snapshot_ids(objects, extras), key)
        if not importer.fresh_snapshot(path, spec["key"]):
            raise protocol.JobError(protocol.ErrorCode.INTERNAL, f"the finished {os.path.basename(path)} was not saved")
        snapshots.append(finished)
        measured.append(qa)
        libraries += [library] if library else []
    bpy.ops.wm.read_homefile(use_empty=True)
    return {"snapshots": snapshots, "qa": measured, "libraries": libraries}


def pictures(image) -> list:
    """(a name, (width, height) or None) of each picture the image decodes when drawn: its packed files' sizes
    from their headers, a generated image's size for each of its tiles; none for an image without pixels of its
    own."""
    name = f"image {image.name}"
    if len(image.packed_files):
        return [(name, image_header.size_of(io.BytesIO(p.packed_file.data[:glb.TEXTURE_HEAD])))
                for p in image.packed_files]
    if image.source == "GENERATED":
        return [(name, (image.generated_width, image.generated_height))] * max(1, len(image.tiles))
    return []


def _refuse_pictures(glb_path: str, snapshot: str) -> None:
    """BAD_OUTPUT, the snapshot removed, where a picture the GLB brought is too big to decode safely
    (glb.sizes_problem of each image's header); the GLB check refuses these before, this holds for what it
    cannot see."""
    found = glb.sizes_problem(p for image in bpy.data.images for p in pictures(image))
    if found:
        for path in (snapshot, signing.signature_path(snapshot)):
            if os.path.exists(path):
                os.remove(path)
        raise protocol.JobError(protocol.ErrorCode.BAD_OUTPUT, f"{os.path.basename(glb_path)}: {found}")


def _retexture(channel: Channel, task: dict, files: list, key: bytes) -> dict:
    """A retexture job's result fitted onto the object (as it looks) and its UVs transferred onto the object's
    own mesh, both from the job's input_mesh.blend; saved as the snapshot of key meshfile.KEY beside the GLB:
    the transferred mesh ("target") and the fitted result ("source")."""
    path = files[0] if files else ""
    found = _mesh_parts(task["retexture"], path, "retexture task needs the job's mesh .blend")
    channel.send("progress", id=task["id"], stage="import", step=0, total=1, fraction=0.0,
                 text="Transferring the texture in the background")
    try:
        glb.check_self_contained(path)
    except ValueError as exc:
        raise protocol.JobError(protocol.ErrorCode.BAD_OUTPUT, f"{os.path.basename(path)}: {exc}") from None
    if set(found) != {"export", "target"}:
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, "the mesh's .blend lacks the object or its mesh")
    for obj in found.values():
        bpy.context.scene.collection.objects.link(obj)
    imported = importer.import_glb(bpy.context, path)
    source = next((o for o in imported if o.type == "MESH"), None)
    if source is None:
        raise protocol.JobError(protocol.ErrorCode.BAD_OUTPUT, "The retextured result has no mesh")
    meshfile.fit(source, found["export"])
    meshfile.transfer(bpy.context, source, found["target"])
    source[meshfile.PART] = "source"
    snapshot = importer.snapshot_path(path, meshfile.KEY)
    importer.write_snapshot(snapshot, {found["target"], source}, key)
    if not importer.fresh_snapshot(path, meshfile.KEY):
        raise protocol.JobError(protocol.ErrorCode.INTERNAL, f"the transferred {os.path.basename(path)} was not saved")
    _refuse_pictures(path, snapshot)
    bpy.ops.wm.read_homefile(use_empty=True)
    return {"snapshots": [snapshot], "qa": [], "libraries": []}


def _mesh_parts(blend, glb_path, refusal: str) -> dict:
    """The parts (meshfile.parts) of a job's input_mesh.blend, appended into an empty file: the .blend must sit
    beside the job's GLB path (its folder); JobError BAD_INPUT with the refusal otherwise."""
    if not (isinstance(blend, str) and blend.endswith(".blend") and os.path.isfile(blend)
            and isinstance(glb_path, str) and glb_path.endswith(".glb")
            and os.path.dirname(glb_path) == os.path.dirname(blend)):
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, refusal)
    bpy.ops.wm.read_homefile(use_empty=True)
    with bpy.data.libraries.load(blend, link=False) as (src, dst):
        dst.objects = list(src.objects)
    return meshfile.parts(o for o in dst.objects if o is not None)


def _good_spec(spec) -> bool:
    """A finish spec as finishing.specs makes it (the settings are validated where used)."""
    kinds = {"name": str, "settings": dict, "target_size": (int, float), "texture_size": int, "record": dict,
             "preview_image": str, "library": str, "saved": str, "key": str}
    return (isinstance(spec, dict) and all(isinstance(spec.get(k), t) for k, t in kinds.items())
            and bool(spec["name"]) and spec["key"] == finishing.spec_key(spec) and 0 <= spec["target_size"] < 1e6
            and 0 < spec["texture_size"] <= 16384 and (not spec["library"] or os.path.isabs(spec["library"]))
            and os.path.isabs(spec["saved"]) and os.path.basename(spec["saved"]) == finishing.SAVED)


def prepare_task(channel: Channel, task: dict) -> dict:
    """A job's input: its image read (image fields) and/or, for a retexture job, its mesh exported (mesh
    fields)."""
    if task.get("image") is None and task.get("mesh_blend") is None:
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, "prepare task needs an image or a mesh")
    answer = {}
    if task.get("mesh_blend") is not None:
        answer.update(_export_mesh(channel, task))
    if task.get("image") is not None:
        answer.update(_read_image(channel, task))
    return answer


def _read_image(channel: Channel, task: dict) -> dict:
    image, rgba, thumb = task.get("image"), task.get("rgba"), task.get("thumb", "")
    limit, colorspace, alpha_mode = task.get("max_megapixels"), task.get("colorspace", ""), task.get("alpha_mode", "")
    folder = os.path.dirname(rgba) if isinstance(rgba, str) else ""
    if not (isinstance(image, str) and image and isinstance(rgba, str) and rgba.endswith(".npy")
            and os.path.isdir(folder) and isinstance(thumb, str) and (not thumb or os.path.dirname(thumb) == folder)
            and isinstance(colorspace, str) and alpha_mode in ("", *image_input.ALPHA_MODES)
            and isinstance(limit, (int, float)) and not isinstance(limit, bool)
            and limit > 0):
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, "prepare task needs an image, a job folder and a limit")
    channel.send("progress", id=task["id"], stage="prepare", step=0, total=1, fraction=0.0,
                 text="Reading the image in the background")
    bpy.ops.wm.read_homefile(use_empty=True)
    try:
        return image_input.prepare_file(image, rgba, thumb, colorspace, float(limit), alpha_mode)
    except image_input.InputError as exc:
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, str(exc)) from None


def _export_mesh(channel: Channel, task: dict) -> dict:
    """The object as it looks, from the job's input_mesh.blend (meshfile.write_mesh_blend), exported as its GLB
    as meshfile.export_mesh exports it, under the object's own name."""
    path = task.get("mesh_glb")
    found = _mesh_parts(task.get("mesh_blend"), path, "prepare task needs the mesh's .blend and its GLB path")
    channel.send("progress", id=task["id"], stage="prepare", step=0, total=1, fraction=0.0,
                 text="Exporting the mesh in the background")
    obj = found.get("export")
    if obj is None:
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, "the mesh's .blend holds no mesh to export")
    name = obj.get(meshfile.NAME_PROPERTY)
    if meshfile.NAME_PROPERTY in obj:
        del obj[meshfile.NAME_PROPERTY]
    obj.name = name if isinstance(name, str) and name else "mesh"
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    try:
        meshfile.export_mesh(bpy.context, obj, path)
    except Exception as exc:  # noqa: BLE001 (reported as the task's error)
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, f"Could not export the mesh: {exc}") from None
    bpy.ops.wm.read_homefile(use_empty=True)
    return {"mesh": path}


TASKS = {"import": import_task, "prepare": prepare_task}


class Inbox:
    """stdin read on a thread: tasks wait in order; a cancel for the running task is noted at once (finishing
    checks between stages)."""

    def __init__(self, stream):
        self.lines: queue.Queue = queue.Queue()
        self.cancelled: set[str] = set()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            if not line.strip():
                continue
            try:
                msg = protocol.decode(line)
            except ValueError as exc:
                print(f"ignored bad input line: {exc}", file=sys.stderr, flush=True)
                continue
            if msg["type"] == "cancel" and isinstance(msg.get("id"), str):
                self.cancelled.add(msg["id"])
                continue
            self.lines.put(msg)
        self.lines.put(None)  # EOF


def main() -> int:
    channel = Channel(take_protocol_channel())  # Blender's and the importer's prints go to the log
    channel.send("hello", protocol=protocol.PROTOCOL_VERSION, pid=os.getpid(), python=sys.version.split()[0],
                 blender=bpy.app.version_string, backends=[])
    inbox = Inbox(sys.stdin)
    while True:
        msg = inbox.lines.get()
        if msg is None or msg["type"] == "shutdown":
            break
        if msg["type"] != "job":
            continue
        task_id = msg.get("id") if isinstance(msg.get("id"), str) else None
        started = time.monotonic()
        try:
            run = TASKS.get(msg.get("kind"))
            if run is None or task_id is None:
                raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, f"unknown task {msg.get('kind')!r}")
            if run is import_task:
                result = run(channel, msg, cancelled=lambda task_id=task_id: task_id in inbox.cancelled)
            else:
                result = run(channel, msg)
            print(f"task {task_id} ({msg['kind']}) done in {time.monotonic() - started:.2f} s", file=sys.stderr)
            channel.send("result", id=task_id, **result)
        except protocol.JobError as exc:
            channel.send("error", id=task_id, code=exc.code.value, message=str(exc))
        except Exception as exc:  # report, keep serving
            traceback.print_exc()
            channel.send("error", id=task_id, code=protocol.ErrorCode.INTERNAL.value,
                         message=f"{type(exc).__name__}: {exc}")
    return 0
