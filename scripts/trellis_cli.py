"""`blender -c trellis ...` where only the bpy module exists (tests, CI): the same handler, same arguments.

Usage: python scripts/trellis_cli.py [--online-mode] generate IMAGE [...] | batch FOLDER -o OUTDIR [...]
Uses the installed extension (Blender's user extensions); set BLENDER_USER_RESOURCES to pick a profile.
"""
import importlib
import os
import sys

import bpy  # first: addon_utils comes with it

import addon_utils  # noqa: E402

PKG = "bl_ext.user_default.trellis2"


def main() -> int:
    if PKG not in bpy.context.preferences.addons:
        addon_utils.enable(PKG, default_set=True)
    argv = sys.argv[1:]
    if argv[:1] == ["--online-mode"]:  # as `blender --online-mode -c trellis ...`
        bpy.context.preferences.system.use_online_access = True
        argv = argv[1:]
    cli = importlib.import_module(f"{PKG}.trellis_addon.cli")
    return cli.main(argv)


if __name__ == "__main__":
    code = main()
    # bpy 4.2 as a module crashes on the way out once its glTF exporter has run (SIGSEGV in
    # bpy_class_free, called from SpaceType's destructor after Python is gone): `-o x.glb` would end
    # with -11 after writing everything. The work is done and flushed here, so leave without Blender's
    # exit handlers; 5.0 and the real binary (`blender -c trellis`) return normally.
    sys.stdout.flush()
    sys.stderr.flush()
    if bpy.app.version < (4, 3, 0):
        os._exit(code)
    sys.exit(code)
