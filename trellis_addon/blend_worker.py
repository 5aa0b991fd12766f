"""The background Blender worker: heavy bpy work off the UI's main thread, on the same JSON-lines protocol
as the Python workers (backend/protocol.py). One task at a time:

  {"type": "job", "id", "kind": "import", "files": [path.glb]}  import each GLB with Blender's glTF
      importer and save it as the snapshot .blend beside it (importer.snapshot_path), which the UI's
      Blender then appends in a fraction of the import's time -> {"type": "result", "id", "snapshots"}
  {"type": "job", "id", "kind": "prepare", "image": path, "colorspace", "rgba": path.npy, "thumb": path.png
      or "", "max_megapixels"}  read, check and downsize the image with Blender's image code, write the
      prepared input (and the thumbnail) -> {"type": "result", "id", "image_sha"};
      an unreadable or refused image -> error BAD_INPUT with the message the main thread would give
  {"type": "shutdown"} or EOF: exit

Answers hello, progress, result, error ({"code", "message"}) like the other workers. Started by
queue.manager (blender_spec) through blend_main.py.
"""
from __future__ import annotations

import os
import sys
import time
import traceback

import bpy

from ..backend import glb, protocol
from ..backend.worker import Channel, take_protocol_channel
from . import image_input, importer


def import_task(channel: Channel, task: dict) -> dict:
    files = task.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and os.path.isfile(f) for f in files):
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, "import task needs existing GLB files")
    snapshots = []
    for index, path in enumerate(files):
        channel.send("progress", id=task["id"], stage="import", step=index, total=len(files),
                     fraction=index / len(files), text=f"Importing result {index + 1}/{len(files)} in the background")
        try:  # nothing outside the GLB is ever read
            glb.check_self_contained(path)
        except ValueError as exc:
            raise protocol.JobError(protocol.ErrorCode.BAD_OUTPUT, f"{os.path.basename(path)}: {exc}") from None
        bpy.ops.wm.read_homefile(use_empty=True)  # nothing of an earlier task stays in memory
        objects = importer.import_glb(bpy.context, path, snapshot=True)
        snap = importer.snapshot_path(path)
        if not objects or not importer.fresh_snapshot(path):
            raise protocol.JobError(protocol.ErrorCode.BAD_OUTPUT,
                                    f"{os.path.basename(path)} imported no objects or its .blend was not saved")
        snapshots.append(snap)
    bpy.ops.wm.read_homefile(use_empty=True)
    return {"snapshots": snapshots}


def prepare_task(channel: Channel, task: dict) -> dict:
    image, rgba, thumb = task.get("image"), task.get("rgba"), task.get("thumb", "")
    limit, colorspace = task.get("max_megapixels"), task.get("colorspace", "")
    folder = os.path.dirname(rgba) if isinstance(rgba, str) else ""
    if not (isinstance(image, str) and image and isinstance(rgba, str) and rgba.endswith(".npy")
            and os.path.isdir(folder) and isinstance(thumb, str) and (not thumb or os.path.dirname(thumb) == folder)
            and isinstance(colorspace, str) and isinstance(limit, (int, float)) and not isinstance(limit, bool)
            and limit > 0):
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, "prepare task needs an image, a job folder and a limit")
    channel.send("progress", id=task["id"], stage="prepare", step=0, total=1, fraction=0.0,
                 text="Reading the image in the background")
    bpy.ops.wm.read_homefile(use_empty=True)
    try:
        return image_input.prepare_file(image, rgba, thumb, colorspace, float(limit))
    except image_input.InputError as exc:
        raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, str(exc)) from None


TASKS = {"import": import_task, "prepare": prepare_task}


def main() -> int:
    channel = Channel(take_protocol_channel())  # Blender's and the importer's prints go to the log
    channel.send("hello", protocol=protocol.PROTOCOL_VERSION, pid=os.getpid(), python=sys.version.split()[0],
                 blender=bpy.app.version_string, backends=[])
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = protocol.decode(line)
        except ValueError as exc:
            print(f"ignored bad input line: {exc}", file=sys.stderr, flush=True)
            continue
        if msg["type"] == "shutdown":
            break
        if msg["type"] != "job":
            continue
        task_id = msg.get("id") if isinstance(msg.get("id"), str) else None
        started = time.monotonic()
        try:
            run = TASKS.get(msg.get("kind"))
            if run is None or task_id is None:
                raise protocol.JobError(protocol.ErrorCode.BAD_INPUT, f"unknown task {msg.get('kind')!r}")
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
