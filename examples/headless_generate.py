"""Generate a 3D mesh from an image without a window, then save the scene.

    blender -b --python examples/headless_generate.py -- IMAGE OUT.blend [BACKEND]

(With the `bpy` module from PyPI: python examples/headless_generate.py IMAGE OUT.blend [BACKEND].)
Any TRELLIS setting can be passed to bpy.ops.trellis.generate as a keyword; unset ones keep the scene's.
"""
import json
import sys

import bpy

import addon_utils

EXTENSION = "bl_ext.user_default.trellis2"  # installed from the extension zip, repository "user_default"


def main(image: str, out_blend: str, backend: str = "preview") -> None:
    if EXTENSION not in bpy.context.preferences.addons:
        addon_utils.enable(EXTENSION, default_set=True)
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
    try:
        # Blocks until the mesh is in the scene; prints one progress line per step.
        bpy.ops.trellis.generate(image=image, backend=backend, resolution=1024, texture_size=2048,
                                 decimation_target=300000, seed=42, number_results=1)
    except RuntimeError as exc:  # the operator reports failures as errors: exit non-zero with its message
        sys.exit(f"generation failed: {exc}")
    for obj in bpy.context.selected_objects:  # the new objects are selected, the first one active
        record = json.loads(obj.get("trellis2", "{}"))
        print(f"{obj.name}: {len(obj.data.polygons)} faces, seed {record.get('seed')}, files {record.get('files')}")
    bpy.ops.wm.save_as_mainfile(filepath=out_blend)


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    if len(argv) < 2:
        sys.exit(__doc__)
    main(*argv[:3])
