"""`blender -c trellis ...` and headless scripts, run as separate Blender processes.

In a Blender binary the real `blender -c trellis` runs; with the bpy module, scripts/trellis_cli.py calls
the same registered handler with the same arguments.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, ROOT, mod
from servers.runware_server import RunwareServer
from servers.scenario_server import ScenarioServer

FAST = ["--resolution", "512", "--texture-size", "1024", "--decimation-target", "100000"]
RUNNER = os.path.join(ROOT, "scripts", "trellis_cli.py")
KEY = "rw-cli-secret-0a1b2c3d"


def command(*args, online=False) -> list[str]:
    online_flag = ["--online-mode"] if online else []
    if bpy.app.binary_path:
        return [bpy.app.binary_path, *online_flag, "-c", "trellis", *args]
    return [sys.executable, RUNNER, *online_flag, *args]


def run(*args, online=False, env=None, timeout=300):
    return subprocess.run(command(*args, online=online), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope="module")
def saved_prefs(addon):
    """The extension enabled in the saved preferences, as in a user's Blender."""
    bpy.ops.wm.save_userpref()


@pytest.fixture()
def images(tmp_path, saved_prefs):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("apple", "bottle", "chair", "drum"):
        shutil.copy(EXAMPLE_IMAGE, folder / f"{name}.png")
    return folder


def manifest(outdir) -> list[dict]:
    with open(os.path.join(outdir, "manifest.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def is_glb(path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"glTF"


def test_help_lists_every_option_with_range_and_default(saved_prefs):
    from backend import schema
    out = run("generate", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # argparse wraps lines
    for p in schema.PARAMS:
        if p is schema.RANDOM_SEED:
            continue
        option = "--" + p.name.replace("_", "-")
        assert option in text, option
        assert p.range_text() in text, (option, p.range_text())
    assert "default 1024" in text and "--backend" in text and "-o OUTPUT" in text
    out = run("batch", "--help")
    assert out.returncode == 0 and "--resume" in out.stdout and "--jobs N" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["generate", EXAMPLE_IMAGE, "--resolution", "700"],
     "argument --resolution: 700 is out of range (one of 512, 1024, 1536)"),
    (["generate", EXAMPLE_IMAGE, "--tex-slat-guidance-strength", "11"],
     "argument --tex-slat-guidance-strength: 11 is out of range (1 to 10)"),
    (["generate", EXAMPLE_IMAGE, "--seed", "abc"], "argument --seed: expected a number"),
    (["batch", "somewhere", "-o", "out", "--jobs", "0"], "argument --jobs: 0 is out of range (1 to 16)"),
    (["batch", "somewhere", "-o", "out", "--import-workers", "17"],
     "argument --import-workers: 17 is out of range (1 to 16)"),
    (["generate", EXAMPLE_IMAGE, "--backend", "nowhere"], "argument --backend: invalid choice: 'nowhere'"),
])
def test_invalid_options_get_argparse_messages(saved_prefs, args, message):
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr


def test_generate_to_glb(saved_prefs, tmp_path):
    target = tmp_path / "out" / "mushroom.glb"
    out = run("generate", EXAMPLE_IMAGE, *FAST, "--seed", "7", "-o", str(target))
    assert out.returncode == 0, out.stderr[-2000:]
    assert is_glb(target) and str(target) in out.stdout
    assert "done in" in out.stdout and "seed 7" in out.stdout


def test_generate_to_blend_with_the_object_in_it(saved_prefs, tmp_path):
    target = tmp_path / "scene.blend"
    out = run("generate", EXAMPLE_IMAGE, *FAST, "--number-results", "2", "-o", str(target))
    assert out.returncode == 0, out.stderr[-2000:]
    with bpy.data.libraries.load(str(target)) as (source, _):
        names = list(source.objects)
    assert {"mushroom.01", "mushroom.02"} <= set(names)


def test_generate_failure_exits_non_zero_with_the_message(saved_prefs, tmp_path):
    out = run("generate", str(tmp_path / "missing.png"))
    assert out.returncode == 1
    assert "Image file not found" in out.stderr


def test_batch_skips_unsupported_reports_broken_and_keeps_the_rest(images, tmp_path):
    (images / "notes.txt").write_text("not an image")
    (images / "broken.png").write_bytes(open(EXAMPLE_IMAGE, "rb").read()[:300])
    outdir = tmp_path / "out"
    out = run("batch", str(images), "-o", str(outdir), "--jobs", "2", *FAST, "--seed", "3")
    assert out.returncode == 1, "one input failed"
    assert sorted(os.listdir(outdir)) == ["apple.glb", "bottle.glb", "chair.glb", "drum.glb", "manifest.jsonl"]
    entries = {os.path.basename(e["input"]): e for e in manifest(outdir)}
    assert entries["notes.txt"]["state"] == "skipped"
    assert entries["broken.png"]["state"] == "failed" and "Not an image" in entries["broken.png"]["error"]
    for name in ("apple", "bottle", "chair", "drum"):
        e = entries[f"{name}.png"]
        assert e["state"] == "done" and e["output"] == [str(outdir / f"{name}.glb")] and is_glb(e["output"][0])
        assert e["seed"] == [3] and e["settings"]["resolution"] == 512 and e["duration"] > 0
    assert "4 done, 1 failed, 1 unsupported skipped" in out.stdout
    assert out.stdout.count("trellis: [") == 5, "a line per job"


def test_batch_inputs_of_one_name_in_two_folders_get_two_outputs(saved_prefs, tmp_path):
    """a/chair.png and b/chair.png: two outputs named by their folders, each in the manifest; a second run
    (another --jobs) names them the same."""
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(EXAMPLE_IMAGE, tmp_path / "in" / folder / "chair.png")
    listed = {}
    for jobs in ("2", "1"):
        outdir = tmp_path / f"out-{jobs}"
        out = run("batch", str(tmp_path / "in" / "*" / "chair.png"), "-o", str(outdir), "--jobs", jobs, *FAST,
                  "--seed", "3")
        assert out.returncode == 0, out.stderr[-2000:]
        assert sorted(os.listdir(outdir)) == ["a_chair_png.glb", "b_chair_png.glb", "manifest.jsonl"]
        listed[jobs] = {os.path.relpath(e["input"], tmp_path / "in"): [os.path.basename(o) for o in e["output"]]
                        for e in manifest(outdir)}
        assert all(is_glb(outdir / o) for names in listed[jobs].values() for o in names)
    assert listed["2"] == listed["1"] == {os.path.join("a", "chair.png"): ["a_chair_png.glb"],
                                          os.path.join("b", "chair.png"): ["b_chair_png.glb"]}


def test_batch_output_names_are_distinct_and_do_not_depend_on_order(saved_prefs):
    output_names = mod("trellis_addon.batch").output_names
    assert output_names(["/in/apple.png", "/in/chair.png"]) == {"/in/apple.png": "apple", "/in/chair.png": "chair"}
    assert output_names(["/in/chair.jpg", "/in/chair.png", "/x/apple.png"]) == {
        "/in/chair.jpg": "chair_jpg", "/in/chair.png": "chair_png", "/x/apple.png": "apple"}, "as before"
    paths = ["/in/a/chair.png", "/in/b/chair.png", "/in/a/chair.jpg", "/in/a_chair_png.png", "/in/Chair.png",
             "/in/chair.png", "/in/c/d/chair.png"]
    names = output_names(paths)
    assert len({n.casefold() for n in names.values()}) == len(paths), names
    assert names["/in/a/chair.jpg"] == "chair_jpg" and names["/in/c/d/chair.png"] == "c_d_chair_png"
    assert output_names(paths[::-1]) == output_names(sorted(paths)) == names


def test_batch_imports_and_finishes_in_as_many_background_blenders_as_jobs(images, tmp_path):
    """--jobs 2: two background Blenders read the images and import and finish the results (each with a log of
    its own), this Blender appends and exports; the outputs match a batch with one background Blender."""
    runs = {}
    for workers in ("1", None):
        outdir = tmp_path / f"out-{workers}"
        extra = ["--import-workers", workers] if workers else []
        out = run("batch", str(images), "-o", str(outdir), "--jobs", "2", *extra, *FAST, "--seed", "3", "--force-new")
        assert out.returncode == 0, out.stderr[-2000:]
        runs[workers] = {os.path.basename(e["input"]): e for e in manifest(outdir)}
    root = os.path.dirname(runs[None]["apple.png"]["job_folder"])
    logs = {}
    for name in ("blender-worker.log", "blender-worker-2.log"):
        with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
            logs[name] = re.findall(r"task (\w+)-(import|prepare) \(\w+\) done", f.read())

    def job_id(entry):
        with open(os.path.join(entry["job_folder"], "job.json"), encoding="utf-8") as f:
            return json.load(f)["id"]

    for workers, entries in runs.items():
        ids = {job_id(e) for e in entries.values()}
        done_there = {(i, kind) for tasks in logs.values() for i, kind in tasks if i in ids}
        done_by_one = {(i, kind) for i, kind in logs["blender-worker.log"] if i in ids}
        if workers == "1":
            assert done_by_one == done_there == {(i, k) for i in ids for k in ("prepare", "import")}
        else:
            assert done_there == {(i, k) for i in ids for k in ("prepare", "import")}
            assert all({i for i, _ in tasks} & ids for tasks in logs.values()), "both background Blenders worked"
    for name, entry in runs[None].items():
        alone = runs["1"][name]
        assert entry["state"] == alone["state"] == "done" and is_glb(entry["output"][0])
        assert entry["qa"] == alone["qa"] and entry["qa"][0]["triangles"] > 1000
        assert os.path.getsize(entry["output"][0]) == pytest.approx(os.path.getsize(alone["output"][0]), rel=0.01)


def test_batch_on_an_empty_folder_says_so(saved_prefs, tmp_path):
    (tmp_path / "empty").mkdir()
    out = run("batch", str(tmp_path / "empty"), "-o", str(tmp_path / "out"))
    assert out.returncode == 1 and "nothing to do" in out.stderr


def test_batch_interrupted_then_resumed(images, tmp_path):
    outdir = tmp_path / "out"
    proc = subprocess.Popen(command("batch", str(images), "-o", str(outdir), "--jobs", "1", *FAST),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = outdir / "manifest.jsonl"
    end = time.monotonic() + 120
    while time.monotonic() < end and not (path.exists() and path.read_text().count('"done"') >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stdout and "rerun with --resume" in stdout
    first = [e for e in manifest(outdir) if e["state"] == "done"]
    assert 1 <= len(first) < 4
    assert all(is_glb(e["output"][0]) for e in first)
    assert not [n for n in os.listdir(outdir) if n.endswith(".part")]

    out = run("batch", str(images), "-o", str(outdir), "--resume", *FAST)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("done earlier, skipped") == len(first)
    done = {e["input"] for e in manifest(outdir) if e["state"] == "done"}
    assert len(done) == 4
    assert sorted(n for n in os.listdir(outdir) if n.endswith(".glb")) == [
        "apple.glb", "bottle.glb", "chair.glb", "drum.glb"]


def test_a_ctrl_c_the_garbage_collector_swallows_is_raised_at_the_next_check(addon, monkeypatch):
    """Ctrl-C raises KeyboardInterrupt wherever Python is; inside a weakref callback or a destructor Python
    only prints it and goes on (the batch ran to its end, exit 0). The loops check for it again."""
    import weakref

    from conftest import mod
    blocking = mod("trellis_addon.blocking")

    class Anything:
        pass
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", swallowed.append)  # where Python reports what it swallowed
    with blocking.ctrl_c_interrupts():
        blocking.check_interrupt()  # nothing pressed
        thing = Anything()
        ref = weakref.ref(thing, lambda _: blocking._raise_interrupt(signal.SIGINT, None))
        del thing  # the callback raises: swallowed
        assert ref() is None and [type(s.exc_value) for s in swallowed] == [KeyboardInterrupt]
        with pytest.raises(KeyboardInterrupt):
            blocking.check_interrupt()
    blocking.check_interrupt()  # forgotten once the block ends


def test_batch_on_runware_three_at_a_time(images, tmp_path):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    outdir = tmp_path / "out"
    with RunwareServer(api_key=KEY) as server:
        server.polls_to_finish, server.task_seconds = 0, 1.0
        out = run("batch", str(images), "-o", str(outdir), "--jobs", "3", "--backend", "runware", "--seed", "9",
                  online=True, env={"RUNWARE_API_KEY": KEY, "TRELLIS_RUNWARE_URL": server.url})
        submits = [r for r in server.requests if "3dInference" in r["types"]]
    assert out.returncode == 1, out.stderr[-2000:]
    assert len(submits) == 4 and server.submits == 4
    entries = [e for e in manifest(outdir) if e["state"] == "done"]
    assert len(entries) == 4 and all(e["cost"] == pytest.approx(0.0125) for e in entries)
    assert "cost $0.0500" in out.stdout
    assert KEY not in out.stdout + out.stderr and KEY not in open(outdir / "manifest.jsonl").read()
    starts = sorted(t["submitted"] for t in server.tasks.values())
    assert starts[2] - starts[0] < 1.0, "three jobs ran at once"


def test_headless_script_example(saved_prefs, tmp_path):
    script = os.path.join(ROOT, "examples", "headless_generate.py")
    target = tmp_path / "headless.blend"
    if bpy.app.binary_path:
        cmd = [bpy.app.binary_path, "-b", "--python-exit-code", "1", "--python", script, "--", EXAMPLE_IMAGE,
               str(target)]
    else:
        cmd = [sys.executable, script, EXAMPLE_IMAGE, str(target)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert target.exists() and "mushroom:" in out.stdout and "seed 42" in out.stdout
    bad = subprocess.run(cmd[:-2] + [str(tmp_path / "missing.png"), str(tmp_path / "x.blend")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "generation failed" in bad.stderr and "Image file not found" in bad.stderr


def test_generate_quote_prints_the_price_and_generates_nothing(saved_prefs, tmp_path):
    key, secret = "sc-cli-key-1029", "sc-cli-secret-3847"
    with ScenarioServer(key=key, secret=secret) as server:
        out = run("generate", EXAMPLE_IMAGE, "--backend", "scenario", "--quote", "--number-results", "3",
                  online=True, env={"SCENARIO_API_KEY": key, "SCENARIO_API_SECRET": secret,
                                    "TRELLIS_SCENARIO_URL": server.url})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Scenario quote: 36 CU (3 × 12)" in out.stdout
    assert server.quotes == 1 and server.jobs == {}
    assert key not in out.stdout + out.stderr and secret not in out.stdout + out.stderr
    refused = run("generate", EXAMPLE_IMAGE, "--backend", "preview", "--quote")
    assert refused.returncode == 1 and "no cost quote" in refused.stderr


def test_creative_units_are_printed_as_cu_and_never_added_to_dollars(images, tmp_path):
    """Scenario bills creative units: generate prints "12 CU", a batch sums CU apart from USD, the manifest
    names the unit of each cost."""
    key, secret = "sc-cli-key-5566", "sc-cli-secret-7788"
    env = {"SCENARIO_API_KEY": key, "SCENARIO_API_SECRET": secret}
    with ScenarioServer(key=key, secret=secret) as server:
        env["TRELLIS_SCENARIO_URL"] = server.url
        one = run("generate", EXAMPLE_IMAGE, "--backend", "scenario", "--seed", "3", *FAST, online=True, env=env)
        outdir = tmp_path / "out"
        batch = run("batch", str(images), "-o", str(outdir), "--backend", "scenario", "--seed", "4",
                    "--jobs", "2", *FAST, online=True, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    assert "cost 12 CU)" in one.stdout and "$" not in one.stdout
    assert batch.returncode == 0, batch.stderr[-2000:]
    done = [e for e in manifest(outdir) if e["state"] == "done"]
    assert len(done) == 4 and all(e["cost"] == 12 and e["cost_unit"] == "CU" for e in done)
    assert "; cost 48 CU;" in batch.stdout and "$" not in batch.stdout


def test_generate_finishes_and_exports_by_extension_with_qa(saved_prefs, tmp_path):
    target = tmp_path / "out" / "mushroom.fbx"
    out = run("generate", EXAMPLE_IMAGE, *FAST, "--seed", "7", "--lods", "1", "--origin", "center",
              "--target-size", "2", "-o", str(target))
    assert out.returncode == 0, out.stderr[-2000:]
    assert str(target) in out.stdout
    qa_line = next(line for line in out.stdout.splitlines() if line.startswith("trellis: mushroom: "))
    assert " triangles, " in qa_line and "LODs " in qa_line and "texels/m" in qa_line
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.fbx(filepath=str(target)) == {"FINISHED"}
    names = {o.name for o in bpy.data.objects if o.type == "MESH"}
    assert names == {"mushroom", "mushroom_LOD1"}
    obj = bpy.data.objects["mushroom"]
    bpy.context.view_layer.update()
    corners = [obj.matrix_world @ v.co for v in obj.data.vertices]
    longest = max(max(c[i] for c in corners) - min(c[i] for c in corners) for i in range(3))
    assert longest == pytest.approx(2.0, rel=1e-3)
    assert min(c.z for c in corners) == pytest.approx(0.0, abs=1e-3), "standing where it was placed"
    local = [obj.matrix_world.to_3x3() @ v.co for v in obj.data.vertices]  # around the origin, world axes
    centre = [(max(c[i] for c in local) + min(c[i] for c in local)) / 2 for i in range(3)]
    assert max(abs(v) for v in centre) < 1e-3 * longest, "origin CENTER: at the bounds' centre"


def test_cli_refuses_outputs_it_cannot_write(saved_prefs, tmp_path):
    out = run("generate", EXAMPLE_IMAGE, "-o", str(tmp_path / "x.ply"))
    assert out.returncode == 2 and "-o must end in one of .glb" in out.stderr
    out = run("generate", EXAMPLE_IMAGE, "--export", "low", "-o", str(tmp_path / "x.glb"))
    assert out.returncode == 2 and "--export low needs a baked low-poly" in out.stderr
    out = run("generate", EXAMPLE_IMAGE, "--lods", "7")
    assert out.returncode == 2 and "--lods: 7 is out of range (0 to 4)" in out.stderr


def test_batch_writes_the_format_asked_with_qa_in_the_manifest(images, tmp_path):
    for name in ("bottle", "chair", "drum"):
        os.remove(images / f"{name}.png")
    outdir = tmp_path / "out"
    out = run("batch", str(images), "-o", str(outdir), "--format", "obj", "--no-mark-asset", *FAST, "--seed", "3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "apple.obj" in os.listdir(outdir) and "apple.mtl" in os.listdir(outdir)
    (entry,) = manifest(outdir)
    assert entry["output"] == [str(outdir / "apple.obj")]
    (qa,) = entry["qa"]
    assert qa["triangles"] > 1000 and qa["watertight"] in (True, False) and len(qa["size_m"]) == 3
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.wm.obj_import(filepath=entry["output"][0]) == {"FINISHED"}
    (obj,) = [o for o in bpy.data.objects if o.type == "MESH"]
    assert len(obj.data.polygons) == qa["triangles"]
