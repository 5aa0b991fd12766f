"""Started as a script by a background Blender (`blender -b --factory-startup --python blend_main.py --
ROOT`) or, under the bpy module, by the same Python (`python blend_main.py ROOT`): makes the extension
at ROOT importable as a package without running its registration, then serves blend_worker's protocol at a
lower CPU priority than the UI's Blender."""
import importlib
import os
import sys
import types

PACKAGE = "trellis_blend_worker"

MEMORY_VARIABLE = "TRELLIS_WORKER_MEMORY"  # bytes of address space this worker may use (queue.builder sets it)
NICENESS = 10  # the UI's Blender comes first: on few cores, reading and importing wait for it, not it for them
AUTOGROUP = "/proc/self/autogroup"


def yield_cpu() -> None:
    """Lower this process's CPU priority. The worker runs in a session of its own (so that it is stopped
    as a group); where Linux groups the scheduling by session (autogroup, the default of most desktop
    kernels), a process's nice value only weighs against its own session, so the UI's Blender and this one
    would share the cores evenly: the session's own nice value is raised too."""
    if hasattr(os, "nice"):  # POSIX; Windows keeps the normal priority
        try:
            os.nice(NICENESS)
        except OSError:
            pass
    try:
        with open(AUTOGROUP) as f:  # "/autogroup-12 nice 0"
            current = int(f.read().split()[-1])
        if current < NICENESS:
            with open(AUTOGROUP, "w") as f:
                f.write(str(NICENESS))
    except (OSError, ValueError, IndexError):
        pass  # no autogroup (other systems, kernels built without it): the nice value above is the priority


def limit_memory() -> None:
    """Bound this process's address space (MEMORY_VARIABLE): a result or picture that would need more makes
    its allocation fail here (the task fails, or the process ends) instead of taking the machine's memory."""
    try:
        import resource
        limit = int(os.environ.get(MEMORY_VARIABLE, "0"))
        if limit > 0:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError) as exc:  # not POSIX, or a bound the system refuses
        print(f"no memory bound: {exc}", file=sys.stderr)


if __name__ == "__main__":
    limit_memory()
    yield_cpu()
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
