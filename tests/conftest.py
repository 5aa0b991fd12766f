"""Test set-up: pure-Python tests import the repository's `backend`; Blender tests run inside real
Blender (the `bpy` module, or a Blender binary via pytest-blender) against the built extension zip
installed with `bpy.ops.extensions.package_install_files`, exactly as users install it.
"""
import importlib
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
EXAMPLE_IMAGE = os.path.join(ROOT, "examples", "mushroom.png")
PKG = "bl_ext.user_default.trellis2"

sys.path.insert(0, ROOT)  # `import backend` for the pure-Python tests
sys.path.insert(0, os.path.join(ROOT, "tests"))  # `import servers`
sys.path.insert(0, os.path.join(ROOT, "tests", "unit"))  # shared worker helpers

# Keep Blender's user folders (prefs, extensions, presets) away from the real ones. Must be set
# before bpy is imported; a Blender binary started by pytest-blender gets it from the environment.
if "bpy" not in sys.modules:
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="trellis-test-user-"))


@pytest.fixture(scope="session")
def extension_zip():
    path = os.environ.get("TRELLIS_ZIP")
    if path:
        return path
    import bpy  # the running Blender's own extension tool builds the zip (bpy module or binary)
    tool = os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core", "bl_pkg", "cli", "blender_ext.py")
    env = dict(os.environ, BLENDER_EXT_TOOL=tool)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_extension.py"),
                          "--output-dir", tempfile.mkdtemp(prefix="trellis-zip-")],
                         check=True, capture_output=True, text=True, env=env)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def addon(extension_zip):
    """The installed and enabled extension package."""
    import bpy

    result = bpy.ops.extensions.package_install_files(
        filepath=extension_zip, repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}, result
    assert PKG in bpy.context.preferences.addons
    package = importlib.import_module(PKG)
    mod("trellis_addon.queue").manager.builder.enabled = False  # the main thread's fallback (see scene)
    return package


def mod(name):
    """A submodule of the installed extension, e.g. mod('trellis_addon.jobs')."""
    return importlib.import_module(f"{PKG}.{name}")


@pytest.fixture()
def scene(addon, tmp_path):
    """A clean scene, results written under tmp_path."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    # the main thread's fallback (no background Blender): what most tests here patch in this process; the
    # background Blender's way, the default everywhere, is the builder fixture's
    mod("trellis_addon.queue").manager.builder.enabled = False
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.output_dir = str(tmp_path / "jobs")
    bpy.context.scene.cursor.location = (0, 0, 0)
    return bpy.context.scene


@pytest.fixture()
def result(scene, tmp_path):
    """A result's GLB in a job folder (the defect mesh: 'geometry_0' as TRELLIS.2 names it), in a clean scene."""
    from backend import glb, png
    from servers import meshes

    folder = tmp_path / "job"
    folder.mkdir()
    path = str(folder / "result_0.glb")
    meshes.defect_glb(glb, png, path)
    return path


@pytest.fixture()
def builder(scene):
    """The background Blender on, as everywhere outside the tests of the fallback; stopped after."""
    manager = mod("trellis_addon.queue").manager
    manager.builder.stop()  # none of an earlier test's background Blenders (their logs are elsewhere)
    manager.builder.enabled, manager.builder.unavailable = True, ""
    yield manager.builder
    manager.builder.stop()
    manager.builder.enabled, manager.builder.unavailable, manager.builder.size = False, "", 1


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """bpy 4.2 as a module segfaults at process exit once glTF export has run (bpy_class_free calls into
    an already finalized interpreter from a static destructor), whatever the add-on does: after the
    report is written, leave without running C++ static destructors there."""
    bpy = sys.modules.get("bpy")
    if bpy is not None and bpy.app.version < (4, 3, 0):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(getattr(config, "_trellis_exitstatus", 0)))


def pytest_sessionfinish(session, exitstatus):
    session.config._trellis_exitstatus = exitstatus
