"""`blender -c trellis generate|batch ...`: the command line, registered with bpy.utils.register_cli_command.

Every schema setting is an option (range and default in --help); unset options keep the scene's value.
Jobs run through the same queue and workers as the UI. main(argv) is the handler; it returns the exit code.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time

import bpy

from ..backend import registry, schema
from . import blocking, request, results, spending
from .image_input import IMAGE_EXTENSIONS
from .queue import CANCELLED, DONE, FAILED, IMPORTING, Job, flush_records, manager

COMMAND = "trellis"
MANIFEST = "manifest.jsonl"
_handle = None


def register():
    global _handle
    if hasattr(bpy.utils, "register_cli_command"):  # Blender 4.2+
        _handle = bpy.utils.register_cli_command(COMMAND, main)


def unregister():
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None


# --- options from the schema ---------------------------------------------------------------------

def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _typed(param: schema.Param):
    """argparse type: converts and checks the range, so errors read 'argument --x: 60 is out of range'."""
    def convert(text: str):
        try:
            value = int(text) if param.kind == "int" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number ({param.range_text()}), got {text!r}") from None
        try:
            return param.validate(value)
        except schema.SettingError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    convert.__name__ = param.kind
    return convert


def _add_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "generation settings", "Unset options keep the scene's value (initially the default shown). Setting "
                               "a sampler knob turns that stage's override on.")
    group.add_argument("--backend", choices=list(registry.BY_ID), type=str.lower,
                       help="where the model runs (default: the scene's backend, initially preview): " +
                            "; ".join(f"{b.id} = {b.label}" for b in registry.BACKENDS))
    for p in schema.PARAMS:
        if p is schema.RANDOM_SEED:
            continue
        help_text = f"{p.description} ({p.range_text()}; default {p.default})"
        if p is schema.SEED:
            help_text = f"{p.description}. Unset: a random seed ({p.range_text()})"
        if p.kind == "bool":
            group.add_argument(_option(p.name), action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            group.add_argument(_option(p.name), type=_typed(p), default=None, metavar=p.kind.upper(),
                               help=help_text)
    group.add_argument("--target-size", type=float, default=None, metavar="METRES",
                       help="scale results so the longest side has this length (default 0: keep)")
    group.add_argument("--force-new", action="store_true",
                       help="generate even when history already has this exact request (explicit seed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"blender -c {COMMAND}", description="TRELLIS.2 for Blender: image to textured 3D mesh.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{generate,batch}")
    gen = sub.add_parser("generate", help="one image to one .glb or .blend",
                         description="Generate from one image. Exit code 0 on success.")
    gen.add_argument("image", help="image file (png, jpg, jpeg, webp, bmp, tif, exr)")
    gen.add_argument("-o", "--output", help="out.glb (the model's GLB; several results: out_1.glb, ...) or "
                                            "out.blend (the scene with the result). Unset: print the GLB paths")
    gen.add_argument("--quote", action="store_true",
                     help="print the provider's price for this request and generate nothing (Scenario's dry run)")
    _add_settings(gen)
    batch = sub.add_parser("batch", help="every image in a folder or glob, one output each",
                           description="Generate from many images. Writes OUTDIR/<image name>.glb and "
                                       f"OUTDIR/{MANIFEST} (one JSON line per input, as it goes). "
                                       "Exit code 0 when every input succeeded, 1 otherwise, 130 on Ctrl-C.")
    batch.add_argument("inputs", metavar="FOLDER_OR_GLOB", help="a folder (its images) or a glob such as 'in/*.png'")
    batch.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    batch.add_argument("--jobs", type=_jobs_count, default=1, metavar="N",
                       help="jobs at once, 1 to 16 (default 1). Local GPU jobs run one at a time regardless")
    batch.add_argument("--resume", action="store_true",
                       help="skip inputs the manifest lists as done whose outputs still exist")
    _add_settings(batch)
    return parser


def _jobs_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number (1 to 16), got {text!r}") from None
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"{value} is out of range (1 to 16)")
    return value


def overrides(args) -> dict:
    """The settings given on the command line; a sampler knob turns its stage override on."""
    out = {p.name: getattr(args, p.name) for p in schema.PARAMS
           if p is not schema.RANDOM_SEED and getattr(args, p.name, None) is not None}
    for stage in schema.STAGES:
        if any(p.name in out for p in stage.params):
            out.setdefault(stage.override, True)
    return out


def _scene_request(args) -> dict:
    scene = bpy.context.scene.trellis2
    settings = request.resolve_settings(scene.to_settings(), overrides(args))
    return dict(settings=settings, backend=args.backend or scene.backend,
                target_size=args.target_size if args.target_size is not None else scene.target_size)


# --- running -------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse has printed it
        return int(exc.code or 0)
    try:
        with blocking.ctrl_c_interrupts():
            return run_generate(args) if args.command == "generate" else run_batch(args)
    except request.RequestError as exc:
        print(f"trellis: error: {exc}", file=sys.stderr)
        return 1


def copy_results(job: Job, output: str) -> list[str]:
    """The job's GLB files copied to output (out.glb, or out_1.glb ... for several)."""
    files = job.result["files"]
    stem, ext = os.path.splitext(output)
    targets = [output] if len(files) == 1 else [f"{stem}_{i + 1}{ext}" for i in range(len(files))]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    for source, target in zip(files, targets):
        shutil.copyfile(source, target + ".part")
        os.replace(target + ".part", target)
    return targets


def run_generate(args) -> int:
    output = os.path.abspath(args.output) if args.output else ""
    if output and not output.lower().endswith((".glb", ".blend")):
        print(f"trellis: error: -o must end in .glb or .blend, got {args.output!r}", file=sys.stderr)
        return 2
    job = request.prepare(request.Request(image=os.path.abspath(args.image), force_new=args.force_new,
                                          quote=args.quote, **_scene_request(args)))
    manager.enqueue(job)
    try:
        blocking.wait(job)
    except KeyboardInterrupt:
        job.cancel()
        print("trellis: interrupted", file=sys.stderr)
        return 130
    if job.state == IMPORTING and job.is_quote:
        print(f"trellis: {results.finish_quote(job)}")
        flush_records()
        return 0
    if job.state == IMPORTING and (not output or output.lower().endswith(".glb")):
        results.persist_record(job)
        written = copy_results(job, output) if output else job.result["files"]
        job.set_finished(DONE, "Done")
    elif job.state == IMPORTING:
        results.import_job(bpy.context, job)
        bpy.ops.wm.save_as_mainfile(filepath=output)
        written = [output]
    if job.state != DONE:
        print(f"trellis: error: {job.error or job.text}", file=sys.stderr)
        return 1
    flush_records()
    seeds = ", ".join(map(str, job.result.get("seeds", [])))
    cost = f", cost {spending.money(job.cost, job.cost_unit)}" if job.cost is not None else ""
    print(f"trellis: {job.name} done in {job.elapsed:.1f} s (seed {seeds}{cost})")
    for path in written:
        print(path)
    return 0


def find_inputs(pattern: str) -> list[str]:
    if os.path.isdir(pattern):
        paths = [os.path.join(pattern, n) for n in os.listdir(pattern) if not n.startswith(".")]
        paths = [p for p in paths if os.path.isfile(p)]
    else:
        paths = [p for p in glob.glob(pattern) if os.path.isfile(p)]
    return sorted(os.path.abspath(p) for p in paths)


def output_names(paths: list[str]) -> dict[str, str]:
    """input -> output stem: the file name without extension, with it where two inputs share a stem."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    return {p: stem if stems.count(stem) == 1 else f"{stem}_{os.path.splitext(p)[1][1:].lower()}"
            for p, stem in zip(paths, stems)}


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


def run_batch(args) -> int:
    outdir = os.path.abspath(args.output)
    if not os.path.exists(args.inputs) and not glob.has_magic(args.inputs):
        print(f"trellis: error: {args.inputs} does not exist", file=sys.stderr)
        return 2
    found = find_inputs(args.inputs)
    if not found:
        print(f"trellis: no files in {args.inputs}: nothing to do", file=sys.stderr)
        return 1
    os.makedirs(outdir, exist_ok=True)
    wanted = _scene_request(args)
    manager.prewarm(wanted["backend"])
    names = output_names(found)
    manifest = Manifest(os.path.join(outdir, MANIFEST))
    previous = read_manifest(manifest.path) if args.resume else {}
    pending, counts, costs, started = [], {"done": 0, "failed": 0, "unsupported": 0, "resumed": 0}, {}, time.time()
    for path in found:
        old = previous.get(path)
        if old and old.get("state") == "done" and all(os.path.isfile(o) for o in old.get("output") or [None]):
            counts["resumed"] += 1
            print(f"trellis: {os.path.basename(path)}: done earlier, skipped (--resume)")
        elif not path.lower().endswith(IMAGE_EXTENSIONS):
            counts["unsupported"] += 1
            reason = f"not an image type ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
            manifest.write(input=path, output=[], state="skipped", error=reason)
            print(f"trellis: {os.path.basename(path)}: skipped, {reason}", file=sys.stderr)
        else:
            pending.append(path)
    total, running, finished_count = len(pending), {}, 0

    def record(path, job, error=None, outputs=()):
        nonlocal finished_count
        finished_count += 1
        result = (job.result or {}) if job else {}
        if result.get("cost"):
            costs[job.cost_unit] = costs.get(job.cost_unit, 0.0) + float(result["cost"])
        state = "done" if error is None else "failed"
        counts[state] += 1
        manifest.write(input=path, output=list(outputs), state=state, backend=wanted["backend"],
                       settings=job.settings if job else None, seed=result.get("seeds"),
                       cost=result.get("cost"), cost_unit=job.cost_unit if job and result else None,
                       duration=round(job.elapsed, 3) if job else 0.0, error=error,
                       job_folder=job.output_dir if job else None, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        where = f" -> {', '.join(outputs)}" if outputs else f": FAILED: {error}"
        took = f" in {job.elapsed:.1f} s" if job else ""
        print(f"trellis: [{finished_count}/{total}] {os.path.basename(path)}{took}{where}", flush=True)

    interrupted = False
    try:
        while pending or running:
            while pending and len(running) < 2 * args.jobs:  # a few prepared ahead, not the whole batch
                path = pending.pop(0)
                settings = wanted["settings"]
                if settings["random_seed"]:  # a new seed per image
                    settings = request.resolve_settings(settings, {})
                try:
                    job = request.prepare(request.Request(
                        image=path, backend=wanted["backend"], settings=settings, target_size=wanted["target_size"],
                        keep_image=False, force_new=args.force_new))
                except request.RequestError as exc:
                    record(path, None, error=str(exc))
                    continue
                manager.enqueue(job, args.jobs)
                running[job.id] = (path, job)
            manager.poll_all(args.jobs)
            for job_id, (path, job) in list(running.items()):
                if job.state == IMPORTING:
                    try:
                        results.persist_record(job)
                        outputs = copy_results(job, os.path.join(outdir, names[path] + ".glb"))
                    except OSError as exc:
                        job.fail(f"Could not write the output: {exc}")
                    else:
                        job.set_finished(DONE, "Done")
                        record(path, job, outputs=outputs)
                if job.state in (FAILED, CANCELLED):
                    record(path, job, error=job.error or job.text)
                if job.is_finished:
                    del running[job_id]
            time.sleep(0.05)
    except KeyboardInterrupt:
        interrupted = True
        for _, job in running.values():
            job.cancel()
    finally:
        manifest.close()
        flush_records()
    left = len(pending) + len(running) if interrupted else 0
    summary = (f"trellis: batch {'interrupted' if interrupted else 'finished'} in {time.time() - started:.1f} s: "
               f"{counts['done']} done, {counts['failed']} failed, {counts['unsupported']} unsupported skipped, "
               f"{counts['resumed']} done earlier" + (f", {left} not run (rerun with --resume)" if left else "")
               + (f"; cost {spending.summary(costs)}" if costs else "") + f"; manifest {manifest.path}")
    print(summary, flush=True)
    if interrupted:
        return 130
    return 0 if counts["failed"] == 0 else 1
