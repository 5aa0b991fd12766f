"""The background Blender worker: heavy bpy work off the UI's main thread, on the same JSON-lines protocol
as the Python workers (backend/protocol.py). One task at a time: a GLB import into signed snapshots (finished,
or a retexture job's result transferred onto the object's mesh) or a job's input prepared (its image read, its
mesh exported). The tasks and answers are typed and documented in backend/blender_protocol.py; a task that
does not parse is answered BAD_INPUT, and so is one whose files are not there. A GLB whose pictures the UI's
Blender could not decode safely is refused.

Answers hello, progress, result, error ({"code", "message"}) like the other workers. Started by
queue.manager (blender_spec) through blend_main.py.
"""
from __future__ import annotations

import dataclasses
import io
import os
import queue
import sys
import threading
import time
import traceback

import bpy

from ..backend import glb, image_header, protocol, schema
from ..backend.blender_protocol import TASKS, ImportAnswer, ImportTask, MessageError, PrepareAnswer, PrepareTask
from ..backend.worker import Channel, take_protocol_channel
from . import finish, finishing, image_input, importer, meshfile, signing


BAD_INPUT = protocol.ErrorCode.BAD_INPUT
REFUSALS = {  # MessageError.part -> what a task that does not parse is answered
    "files": "import task needs existing GLB files",
    "key_file": "import task: the signing key: no key file named",
    "retexture": "retexture task needs the job's mesh .blend",
    "finish": "import task: one finish spec per file, or none",
    "image or mesh_blend": "prepare task needs an image or a mesh",
    **dict.fromkeys(("mesh_blend", "mesh_glb"), "prepare task needs the mesh's .blend and its GLB path"),
    **dict.fromkeys(("image", "rgba", "thumb", "colorspace", "alpha_mode", "max_megapixels"),
                    "prepare task needs an image, a job folder and a limit"),
}


def parse_task(msg: dict) -> ImportTask | PrepareTask:
    """The typed task of a job message; JobError BAD_INPUT (the refusal of the field at fault) where it does
    not parse."""
    kind = TASKS.get(msg.get("kind"))
    if kind is None or not isinstance(msg.get("id"), str):
        raise protocol.JobError(BAD_INPUT, f"unknown task {msg.get('kind')!r}")
    try:
        return kind.parse(msg)
    except MessageError as exc:
        print(f"refused task {msg['id']}: {exc}", file=sys.stderr)
        raise protocol.JobError(BAD_INPUT, REFUSALS.get(exc.part, f"{msg['kind']} task: {exc}")) from None


def _signing_key(path: str) -> bytes:
    """The key the task's snapshots are signed with, read from the key file it names."""
    try:
        return signing.read_key(path)
    except (OSError, signing.SigningError) as exc:
        raise protocol.JobError(BAD_INPUT, f"import task: the signing key: {exc}") from None


def import_task(channel: Channel, task: ImportTask, cancelled=None) -> ImportAnswer:
    files, plan = task.files, task.finish
    if not all(os.path.isfile(f) for f in files):
        raise protocol.JobError(BAD_INPUT, REFUSALS["files"])
    key = _signing_key(task.key_file)
    if task.retexture is not None:
        return _retexture(channel, task, key)
    if plan is not None and not all(_good_spec(spec) for spec in plan):
        raise protocol.JobError(BAD_INPUT, REFUSALS["finish"])
    snapshots, measured, libraries = [], [], []
    for index, path in enumerate(files):
        def say(text, fraction=0.0, index=index):
            channel.send("progress", id=task.id, stage="import", step=index, total=len(files),
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
        spec = dataclasses.replace(plan[index], settings=schema.validate_finish(plan[index].settings))
        try:
            qa, extras, library = finishing.run(bpy.context, objects, spec.to_message(), progress=say,
                                                cancelled=cancelled)
        except finish.FinishCancelled:
            raise protocol.JobError(protocol.ErrorCode.CANCELLED, "Finishing cancelled") from None
        except finish.FinishError as exc:  # the raw result is imported instead; the job says which step failed
            snapshots.append(snap)
            measured.append({"failed": str(exc)})
            continue
        finished = importer.snapshot_path(path, spec.key)
        importer.write_snapshot(finished, finishing.snapshot_ids(objects, extras), key)
        if not importer.fresh_snapshot(path, spec.key):
            raise protocol.JobError(protocol.ErrorCode.INTERNAL, f"the finished {os.path.basename(path)} was not saved")
        snapshots.append(finished)
        measured.append(qa)
        libraries += [library] if library else []
    bpy.ops.wm.read_homefile(use_empty=True)
    return ImportAnswer(task.id, snapshots, measured, libraries)


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


def _retexture(channel: Channel, task: ImportTask, key: bytes) -> ImportAnswer:
    """A retexture job's result fitted onto the object (as it looks) and its UVs transferred onto the object's
    own mesh, both from the job's input_mesh.blend; saved as the snapshot of key meshfile.KEY beside the GLB:
    the transferred mesh ("target") and the fitted result ("source")."""
    path = task.files[0]  # the task's parse: its .blend sits beside it
    found = _mesh_parts(task.retexture, REFUSALS["retexture"])
    channel.send("progress", id=task.id, stage="import", step=0, total=1, fraction=0.0,
                 text="Transferring the texture in the background")
    try:
        glb.check_self_contained(path)
    except ValueError as exc:
        raise protocol.JobError(protocol.ErrorCode.BAD_OUTPUT, f"{os.path.basename(path)}: {exc}") from None
    if set(found) != {"export", "target"}:
        raise protocol.JobError(BAD_INPUT, "the mesh's .blend lacks the object or its mesh")
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
    return ImportAnswer(task.id, [snapshot])


def _mesh_parts(blend: str, refusal: str) -> dict:
    """The parts (meshfile.parts) of a job's input_mesh.blend (beside the job's GLB path: the task's parse),
    appended into an empty file; JobError BAD_INPUT with the refusal where it is not there."""
    if not os.path.isfile(blend):
        raise protocol.JobError(BAD_INPUT, refusal)
    bpy.ops.wm.read_homefile(use_empty=True)
    with bpy.data.libraries.load(blend, link=False) as (src, dst):
        dst.objects = list(src.objects)
    return meshfile.parts(o for o in dst.objects if o is not None)


def _good_spec(spec) -> bool:
    """A finish spec as finishing.specs makes it, beyond its parse: keyed by what shapes it, its ledger the job
    folder's (the settings are validated where used)."""
    return spec.key == finishing.spec_key(spec.to_message()) and os.path.basename(spec.saved) == finishing.SAVED


def prepare_task(channel: Channel, task: PrepareTask) -> PrepareAnswer:
    """A job's input: its image read (image fields) and/or, for a retexture job, its mesh exported (mesh
    fields)."""
    mesh = _export_mesh(channel, task) if task.mesh_blend is not None else None
    image_sha = _read_image(channel, task) if task.image is not None else None
    return PrepareAnswer(task.id, image_sha, mesh)


def _read_image(channel: Channel, task: PrepareTask) -> str:
    """The prepared input's hash, its image read into it (and the thumbnail) in the job folder."""
    if not os.path.isdir(os.path.dirname(task.rgba)):
        raise protocol.JobError(BAD_INPUT, REFUSALS["rgba"])
    channel.send("progress", id=task.id, stage="prepare", step=0, total=1, fraction=0.0,
                 text="Reading the image in the background")
    bpy.ops.wm.read_homefile(use_empty=True)
    try:
        return image_input.prepare_file(task.image, task.rgba, task.thumb, task.colorspace,
                                        float(task.max_megapixels), task.alpha_mode)["image_sha"]
    except image_input.InputError as exc:
        raise protocol.JobError(BAD_INPUT, str(exc)) from None


def _export_mesh(channel: Channel, task: PrepareTask) -> str:
    """The object as it looks, from the job's input_mesh.blend (meshfile.write_mesh_blend), exported as its GLB
    as meshfile.export_mesh exports it, under the object's own name."""
    path = task.mesh_glb
    found = _mesh_parts(task.mesh_blend, REFUSALS["mesh_blend"])
    channel.send("progress", id=task.id, stage="prepare", step=0, total=1, fraction=0.0,
                 text="Exporting the mesh in the background")
    obj = found.get("export")
    if obj is None:
        raise protocol.JobError(BAD_INPUT, "the mesh's .blend holds no mesh to export")
    name = obj.get(meshfile.NAME_PROPERTY)
    if meshfile.NAME_PROPERTY in obj:
        del obj[meshfile.NAME_PROPERTY]
    obj.name = name if isinstance(name, str) and name else "mesh"
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    try:
        meshfile.export_mesh(bpy.context, obj, path)
    except Exception as exc:  # noqa: BLE001 (reported as the task's error)
        raise protocol.JobError(BAD_INPUT, f"Could not export the mesh: {exc}") from None
    bpy.ops.wm.read_homefile(use_empty=True)
    return path


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
            task = parse_task(msg)
            if isinstance(task, ImportTask):
                answer = import_task(channel, task, cancelled=lambda task_id=task_id: task_id in inbox.cancelled)
            else:
                answer = prepare_task(channel, task)
            print(f"task {task_id} ({msg['kind']}) done in {time.monotonic() - started:.2f} s", file=sys.stderr)
            result = answer.to_message()
            channel.send(result.pop("type"), **result)
        except protocol.JobError as exc:
            channel.send("error", id=task_id, code=exc.code.value, message=str(exc))
        except Exception as exc:  # report, keep serving
            traceback.print_exc()
            channel.send("error", id=task_id, code=protocol.ErrorCode.INTERNAL.value,
                         message=f"{type(exc).__name__}: {exc}")
    return 0
