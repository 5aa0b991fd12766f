"""`blender -c trellis generate|batch ...`: the command line, registered with bpy.utils.register_cli_command.

Every schema setting is an option (range and default in --help); unset options keep the scene's value.
Jobs run through the same queue and workers as the UI. main(argv) is the handler; it returns the exit code.
"""
from __future__ import annotations

import argparse
import os
import sys

import bpy

from ..backend import registry, schema
from . import batch, blocking, finish, request, results, spending
from .batch import MANIFEST
from .outputs import export_results, print_qa
from .queue import DONE, IMPORTING, flush_records, manager

COMMAND = "trellis"
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
    batch_cmd = sub.add_parser("batch", help="every image in a folder or glob, one output each",
                           description="Generate from many images. Writes OUTDIR/<image name>.glb and "
                                       f"OUTDIR/{MANIFEST} (one JSON line per input, as it goes). "
                                       "Exit code 0 when every input succeeded, 1 otherwise, 130 on Ctrl-C.")
    batch_cmd.add_argument("inputs", metavar="FOLDER_OR_GLOB",
                           help="a folder (its images) or a glob such as 'in/*.png'")
    batch_cmd.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    batch_cmd.add_argument("--format", default="glb", choices=[f[1:] for f in finish.FORMATS if f != ".blend"],
                       help="file type of each finished result: OUTDIR/<image name>.<format> (default glb)")
    batch_cmd.add_argument("--jobs", type=_jobs_count, default=1, metavar="N",
                       help="jobs at once, 1 to 16 (default 1). Local GPU jobs run one at a time regardless")
    batch_cmd.add_argument("--import-workers", type=_jobs_count, default=None, metavar="N",
                       help="background Blenders that read the images and import and finish the results, N at "
                            "once (1 to 16; a provider's file is never read in this Blender). Default: as many "
                            "as --jobs, at most one per CPU core")
    batch_cmd.add_argument("--resume", action="store_true",
                       help="skip inputs the manifest lists as done whose outputs still exist")
    _add_settings(batch_cmd)
    return parser


def _count(text: str, low: int, high: int = 16) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ({low} to {high}), got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is out of range ({low} to {high})")
    return value


def _jobs_count(text: str) -> int:
    return _count(text, 1)


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
            return run_generate(args) if args.command == "generate" else batch.run(args, _scene_request(args))
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
