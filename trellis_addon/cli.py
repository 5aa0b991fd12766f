"""`blender -c trellis generate|batch ...`: the command line, registered with bpy.utils.register_cli_command.

Every schema setting is an option (range and default in --help); unset options keep the scene's value.
Jobs run through the same queue and workers as the UI. main(argv) is the handler; it returns the exit code.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import bpy

from ..backend import registry, schema
from . import blocking, finish, request, results, spending
from .image_input import IMAGE_EXTENSIONS
from .outputs import Manifest, clear_results, export_results, print_qa, read_manifest
from .queue import CANCELLED, DONE, FAILED, IMPORTING, flush_records, manager

COMMAND = "trellis"
MANIFEST = "manifest.jsonl"
ALIASES = {"lod_levels": ["--lods"]}  # the finish settings' short option names
OUTPUTS = ", ".join(finish.FORMATS)
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
    finishing = parser.add_argument_group(
        "finish settings", "How the result is finished in Blender before it is written (unset: the scene's "
                           "value, initially the default shown)")
    for p in schema.FINISH_PARAMS:
        names = [_option(p.name)] + ALIASES.get(p.name, [])
        help_text = f"{p.description} ({p.range_text()}; default {p.default})"
        kind = ({"action": argparse.BooleanOptionalAction} if p.kind == "bool" else
                {"type": str.upper, "choices": p.choices} if p.kind == "enum" else
                {"type": _typed(p), "metavar": p.kind.upper()})
        finishing.add_argument(*names, dest=p.name, default=None, help=help_text, **kind)
    finishing.add_argument("--asset-library", metavar="DIR", default=None,
                           help="also save each finished result as its own .blend in DIR, marked as an asset, and "
                                "register DIR as an asset library (default: the add-on's Asset Library Folder)")
    finishing.add_argument("--export", choices=("all", "low"), default="all",
                           help="what the output file holds: the result with its LODs and low-poly (all, the "
                                "default) or only the baked low-poly (low; needs --bake-faces)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"blender -c {COMMAND}", description="TRELLIS.2 for Blender: image to textured 3D mesh.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{generate,batch}")
    gen = sub.add_parser("generate", help="one image to one .glb or .blend",
                         description="Generate from one image. Exit code 0 on success.")
    gen.add_argument("image", help="image file (png, jpg, jpeg, webp, bmp, tif, exr)")
    gen.add_argument("-o", "--output", help=f"the finished result, written by Blender's exporter of the extension "
                                            f"({OUTPUTS}; several results: out_1.glb, ...); .blend: the scene "
                                            "with the result, images packed. Unset: print the model's GLB paths "
                                            "(not finished)")
    gen.add_argument("--quote", action="store_true",
                     help="print the provider's price for this request and generate nothing (Scenario's dry run)")
    _add_settings(gen)
    batch = sub.add_parser("batch", help="every image in a folder or glob, one output each",
                           description="Generate from many images. Writes OUTDIR/<image name>.glb and "
                                       f"OUTDIR/{MANIFEST} (one JSON line per input, as it goes). "
                                       "Exit code 0 when every input succeeded, 1 otherwise, 130 on Ctrl-C.")
    batch.add_argument("inputs", metavar="FOLDER_OR_GLOB", help="a folder (its images) or a glob such as 'in/*.png'")
    batch.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    batch.add_argument("--format", default="glb", choices=[f[1:] for f in finish.FORMATS if f != ".blend"],
                       help="file type of each finished result: OUTDIR/<image name>.<format> (default glb)")
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


def finish_overrides(args) -> dict:
    """The finish settings given on the command line."""
    return {p.name: getattr(args, p.name) for p in schema.FINISH_PARAMS if getattr(args, p.name, None) is not None}


def _scene_request(args) -> dict:
    scene = bpy.context.scene.trellis2
    settings = request.resolve_settings(scene.to_settings(), overrides(args))
    library = os.path.abspath(args.asset_library) if args.asset_library else ""
    return dict(settings=settings, backend=args.backend or scene.backend,
                target_size=args.target_size if args.target_size is not None else scene.target_size,
                finish=dict(scene.to_finish(), **finish_overrides(args)), asset_library=library)


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


def run_generate(args) -> int:
    output = os.path.abspath(args.output) if args.output else ""
    if output and not output.lower().endswith(finish.FORMATS):
        print(f"trellis: error: -o must end in one of {OUTPUTS}, got {args.output!r}", file=sys.stderr)
        return 2
    if args.export == "low" and not (args.bake_faces or bpy.context.scene.trellis2.bake_faces):
        print("trellis: error: --export low needs a baked low-poly (--bake-faces N)", file=sys.stderr)
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
    written = []
    if job.state == IMPORTING and not output:
        results.persist_record(job)
        written = job.result["files"]
        job.set_finished(DONE, "Done")
    elif job.state == IMPORTING:
        try:
            results.import_job(bpy.context, job)
            os.makedirs(os.path.dirname(output), exist_ok=True)
            written = export_results(job, output, args.export)
        except request.RequestError:
            pass  # import_job failed the job with its message
        except (ValueError, RuntimeError, OSError) as exc:
            job.fail(f"Could not write {output}: {exc}")
    if job.state != DONE:
        print(f"trellis: error: {job.error or job.text}", file=sys.stderr)
        return 1
    flush_records()
    seeds = ", ".join(map(str, job.result.get("seeds", [])))
    cost = f", cost {spending.money(job.cost, job.cost_unit)}" if job.cost is not None else ""
    print(f"trellis: {job.name} done in {job.elapsed:.1f} s (seed {seeds}{cost})")
    if job.qa:
        print_qa(job)
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
                       qa=job.qa if job else [], asset_library_files=job.library_files if job else [],
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
                        keep_image=False, force_new=args.force_new, finish=wanted["finish"],
                        asset_library=wanted["asset_library"]))
                except request.RequestError as exc:
                    record(path, None, error=str(exc))
                    continue
                manager.enqueue(job, args.jobs)
                running[job.id] = (path, job)
            manager.poll_all(args.jobs)
            for job_id, (path, job) in list(running.items()):
                if job.state == IMPORTING:
                    try:
                        results.import_job(bpy.context, job)
                        outputs = export_results(job, os.path.join(outdir, f"{names[path]}.{args.format}"),
                                                 args.export)
                    except request.RequestError:
                        pass  # import_job failed the job with its message
                    except (ValueError, RuntimeError, OSError) as exc:
                        job.fail(f"Could not write the output: {exc}")
                    else:
                        record(path, job, outputs=outputs)
                    finally:
                        clear_results(job)
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
