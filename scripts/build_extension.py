"""Validate and build the extension zip with Blender's own extension tool (bl_pkg's blender_ext.py).

Usage: python scripts/build_extension.py [--output-dir dist]
Run with a Python that has the `bpy` package, or set BLENDER_EXT_TOOL to a Blender's
scripts/addons_core/bl_pkg/cli/blender_ext.py.
Prints the zip's path on the last line.
"""
import argparse
import glob
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blender_ext_tool() -> str:
    """bl_pkg's blender_ext.py: $BLENDER_EXT_TOOL, else the one inside the installed `bpy` package."""
    if os.environ.get("BLENDER_EXT_TOOL"):
        return os.environ["BLENDER_EXT_TOOL"]
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("build_extension: the `bpy` package is not installed in this Python")
    found = []
    for location in spec.submodule_search_locations:
        found += glob.glob(os.path.join(location, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py"))
    if not found:
        sys.exit("build_extension: Blender's blender_ext.py was not found inside the bpy package")
    return sorted(found)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=os.path.join(ROOT, "dist"))
    args = parser.parse_args()
    tool = blender_ext_tool()
    os.makedirs(args.output_dir, exist_ok=True)
    subprocess.run([sys.executable, tool, "validate", ROOT], check=True)
    out = subprocess.run([sys.executable, tool, "build", "--source-dir", ROOT, "--output-dir", args.output_dir],
                         check=True, capture_output=True, text=True)
    print(out.stdout.strip())
    zips = sorted(glob.glob(os.path.join(args.output_dir, "*.zip")), key=os.path.getmtime)
    print(zips[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
