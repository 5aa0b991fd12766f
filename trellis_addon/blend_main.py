"""Started as a script by a background Blender (`blender -b --factory-startup --python blend_main.py --
ROOT`) or, under the bpy module, by the same Python (`python blend_main.py ROOT`): makes the extension
at ROOT importable as a package without running its registration, then serves blend_worker's protocol at a
lower CPU priority than the UI's Blender."""
import importlib
import os
import sys
import types

PACKAGE = "trellis_blend_worker"

NICENESS = 10  # the UI's Blender comes first: on few cores, reading and importing wait for it, not it for them

if __name__ == "__main__":
    if hasattr(os, "nice"):  # POSIX; Windows keeps the normal priority
        try:
            os.nice(NICENESS)
        except OSError:
            pass
    here = os.path.dirname(os.path.abspath(__file__))  # python puts it first: its queue/ would hide the stdlib's
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    package = types.ModuleType(PACKAGE)
    package.__path__ = [args[0]]  # the extension's root folder; its __init__ (registration) is not run
    sys.modules[PACKAGE] = package
    code = importlib.import_module(f"{PACKAGE}.trellis_addon.blend_worker").main()
    bpy = sys.modules["bpy"]
    if bpy.app.version < (4, 3) and not bpy.app.binary_path:  # the bpy 4.2 module crashes on exit once its glTF
        sys.stdout.flush()  # exporter ran (a retexture's mesh): everything is written and answered by now
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
