"""What the command line writes: each finished result through Blender's exporter of the output's extension,
the QA lines, and a batch's manifest (one JSON line per input, appended and flushed as it goes)."""
from __future__ import annotations

import gc
import json
import os

import bpy

from . import finish, finishing
from .queue import Job

SINGLE_FILE = (".glb", ".fbx", ".stl", ".usdz")  # written beside, then renamed


def output_paths(output: str, count: int) -> list[str]:
    """out.ext, or out_1.ext ... for several results."""
    stem, ext = os.path.splitext(output)
    return [output] if count == 1 else [f"{stem}_{i + 1}{ext}" for i in range(count)]


def export_results(job: Job, output: str, which: str) -> list[str]:
    """Each imported, finished result (with its LODs and low-poly) written by Blender's exporter of output's
    extension; returns the files. .blend: the whole scene, images packed."""
    if output.lower().endswith(".blend") and which == "all":
        finish.asset.pack_images([o for names in job.parts for o in map(bpy.data.objects.get, names) if o])
        bpy.ops.wm.save_as_mainfile(filepath=output)
        return [output]
    written = []
    for names, target in zip(job.parts, output_paths(output, len(job.parts))):
        objects = [o for o in map(bpy.data.objects.get, names) if o is not None]
        stem, ext = os.path.splitext(target)
        if ext.lower() in SINGLE_FILE:  # written beside, then renamed: never half a file under its name
            os.replace(finish.export(objects, f"{stem}.part{ext}", which), target)
        else:  # the file names its sidecars (.mtl, .bin, textures): written under its own name
            finish.export(objects, target, which)
        written.append(target)
    return written


def clear_results(job: Job) -> None:
    """A batch result written: its objects and their data leave this process's scene."""
    for names in job.parts:
        for obj in [o for o in map(bpy.data.objects.get, names) if o is not None]:
            bpy.data.objects.remove(obj, do_unlink=True)
    for coll in [c for c in bpy.data.collections if c.name.endswith(" LODs") and not c.objects]:
        bpy.data.collections.remove(coll)
    bpy.data.orphans_purge(do_recursive=True)
    gc.collect()  # the glTF exporter leaves reference cycles holding its arrays: without this a batch of
    # 200 000-face results grew by ~9 MiB a result (bench/export_memory.py; flat with --gc)


def print_qa(job: Job) -> None:
    for names, measured in zip(job.parts, job.qa):
        print(f"trellis: {names[0] if names else job.name}: {finishing.qa_line(measured)}")
    for path in job.library_files:
        print(f"trellis: asset library file {path}")


def read_manifest(path: str) -> dict[str, dict]:
    """The last line per input of an existing manifest; unreadable lines are ignored."""
    done: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    done[entry["input"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue
    except OSError:
        pass
    return done


class Manifest:
    """OUTDIR/manifest.jsonl, appended and flushed line by line."""

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, "a", encoding="utf-8")

    def write(self, **entry) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
