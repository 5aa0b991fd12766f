"""The local TRELLIS.2 backend in the real worker process, under stand-in trellis2/o_voxel/torch modules
(tests/standins) that record every call."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from backend import glb, png, protocol
from workerkit import ROOT, close, read_until, save_rgba, send, start_worker

STANDINS = os.path.join(ROOT, "tests", "standins")
PY310 = os.environ.get("TRELLIS_PY310") or os.path.join(ROOT, ".venv-py310", "bin", "python")


class LocalWorker:
    """`python -m backend` as the add-on starts it for local jobs: the TRELLIS.2 environment on PYTHONPATH."""

    def __init__(self, tmp_path, python=sys.executable, idle_exit=0, **env):
        self.tmp_path, self.calls_path = tmp_path, str(tmp_path / "calls.jsonl")
        self.proc = start_worker(dict(PYTHONPATH=STANDINS, TRELLIS_STANDIN_LOG=self.calls_path, **env), python,
                                 ("--idle-exit", str(idle_exit)), isolated=False)
        self.count = 0

    def job(self, options=None, **settings):
        self.count += 1
        rgba_path = save_rgba(self.tmp_path)
        job_id = f"local{self.count}"
        send(self.proc, "job", id=job_id, backend="local", input={"rgba": rgba_path, "name": "disc"},
             settings=dict({"seed": 5}, **settings), output_dir=str(self.tmp_path / job_id),
             options=dict({"model": "microsoft/TRELLIS.2-4B"}, **(options or {})))
        return job_id

    def finish(self, timeout=60):
        return read_until(self.proc, {"result", "error", "cancelled"}, timeout)

    def calls(self, name=None):
        if not os.path.exists(self.calls_path):
            return []
        rows = [json.loads(line) for line in open(self.calls_path)]
        return [r for r in rows if name is None or r["call"] == name]

    def close(self):
        self.proc.stdin.close()
        code = self.proc.wait(10)
        return code, self.proc.stderr.read().decode()


@pytest.fixture()
def worker(tmp_path):
    w = LocalWorker(tmp_path)
    yield w
    if w.proc.poll() is None:
        w.proc.kill()
        w.proc.wait()


@pytest.mark.parametrize("resolution,pipeline_type", [(512, "512"), (1024, "1024_cascade"), (1536, "1536_cascade")])
def test_resolution_maps_to_the_official_pipeline_type(worker, resolution, pipeline_type):
    worker.job(resolution=resolution)
    assert worker.finish()[-1]["type"] == "result"
    run = worker.calls("pipeline.run")[0]
    assert run["pipeline_type"] == pipeline_type and run["num_samples"] == 1 and run["seed"] == 5
    assert run["image_mode"] == "RGBA" and run["preprocess_image"] is True and run["max_num_tokens"] == 49152
    glb = worker.calls("to_glb")[0]
    assert glb["voxel_size"] == pytest.approx(1 / resolution)


def test_sampler_dicts_and_to_glb_arguments_are_exact(worker):
    worker.job(sparse_structure_override=True, sparse_structure_steps=20, sparse_structure_guidance_strength=6.0,
               decimation_target=250000, texture_size=4096, remesh=False)
    assert worker.finish()[-1]["type"] == "result"
    run = worker.calls("pipeline.run")[0]
    assert run["sparse_structure_sampler_params"] == {"steps": 20, "guidance_strength": 6.0,
                                                      "guidance_rescale": 0.7, "rescale_t": 5.0,
                                                      "guidance_interval": [0.6, 1.0]}
    assert run["shape_slat_sampler_params"] == {} and run["tex_slat_sampler_params"] == {}, \
        "stages without override use the model's own defaults"
    glb = worker.calls("to_glb")[0]
    assert glb["decimation_target"] == 250000 and glb["decimation_target_type"] == "int"
    assert (glb["texture_size"], glb["remesh"], glb["remesh_band"], glb["remesh_project"]) == (4096, False, 1.0, 0.9)
    assert glb["aabb"] == [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]] and glb["grid_size"] is None
    assert glb["attr_layout"] == ["alpha", "base_color", "metallic", "roughness"]
    export = worker.calls("Trimesh.export")[0]
    assert export["kwargs"] == {} and export["file_obj"].endswith("result_0.glb"), "PNG textures by default"


def test_local_only_settings(worker):
    worker.job(tex_slat_override=True, tex_slat_guidance_interval_start=0.5, tex_slat_guidance_interval_end=0.8,
               max_num_tokens=32768, preprocess_image=False, remesh_band=2.0, remesh_project=0.0,
               options={"webp": True})
    assert worker.finish()[-1]["type"] == "result"
    run = worker.calls("pipeline.run")[0]
    assert run["tex_slat_sampler_params"] == {"steps": 12, "guidance_strength": 1.0, "guidance_rescale": 0.0,
                                              "rescale_t": 3.0, "guidance_interval": [0.5, 0.8]}
    assert run["max_num_tokens"] == 32768 and run["preprocess_image"] is False
    assert (worker.calls("to_glb")[0]["remesh_band"], worker.calls("to_glb")[0]["remesh_project"]) == (2.0, 0.0)
    assert worker.calls("Trimesh.export")[0]["kwargs"] == {"extension_webp": True}


def test_one_model_load_serves_three_jobs(worker):
    for _ in range(3):
        worker.job(resolution=512)
        assert worker.finish()[-1]["type"] == "result"
    assert len(worker.calls("from_pretrained")) == 1 and len(worker.calls("pipeline.cuda")) == 1
    assert worker.calls("pipeline.cuda")[0]["low_vram"] is True
    assert len({c["pid"] for c in worker.calls("pipeline.run")}) == 1 and len(worker.calls("pipeline.run")) == 3


def test_low_vram_off_is_set_before_cuda(worker):
    worker.job(options={"low_vram": False}, resolution=512)
    assert worker.finish()[-1]["type"] == "result"
    assert worker.calls("pipeline.cuda")[0]["low_vram"] is False


def test_progress_per_sampling_step_and_export_step(worker):
    worker.job(resolution=1024, shape_slat_override=True, shape_slat_steps=5)
    messages = worker.finish()
    progress = [m for m in messages if m["type"] == "progress" and m["stage"] != "load"]
    steps = {}
    for m in progress:
        steps.setdefault(m["stage"], set()).add((m["text"], m["step"], m["total"]))
    assert list(steps) == ["sparse_structure", "shape_slat", "tex_slat", "export"]
    assert {(s, t) for _, s, t in steps["sparse_structure"]} == {(i, 12) for i in range(13)}
    assert {text for text, _, _ in steps["shape_slat"]} == {"Shape (1/2)", "Shape (2/2)"}
    assert max(s for _, s, _ in steps["shape_slat"]) == 5
    assert {(s, t) for _, s, t in steps["export"]} == {(i, 6) for i in range(7)}
    fractions = [m["fraction"] for m in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_several_results_are_one_run_per_seed(worker):
    worker.job(number_results=3, seed=100, resolution=512)
    result = worker.finish()[-1]
    assert result["seeds"] == [100, 101, 102] and len(result["files"]) == 3
    assert [(c["seed"], c["num_samples"]) for c in worker.calls("pipeline.run")] == [(100, 1), (101, 1), (102, 1)]


def test_library_output_goes_to_the_log(worker):
    worker.job(resolution=512)
    assert worker.finish()[-1]["type"] == "result"
    code, log = worker.close()
    assert code == 0 and "[SPARSE] Backend: flex_gemm" in log and "Sampling sparse structure: 0/12" in log


def test_out_of_memory_is_reported_and_the_worker_recovers(tmp_path):
    w = LocalWorker(tmp_path, TRELLIS_STANDIN_OOM_ONCE=str(tmp_path / "oom-fired"))
    w.job(resolution=1536)
    error = w.finish()[-1]
    assert error["type"] == "error" and error["code"] == "cuda_oom"
    assert "CUDA out of memory at resolution 1536: turn on Low VRAM" in error["message"]
    assert w.calls("torch.cuda.empty_cache")
    w.job(resolution=512)
    assert w.finish()[-1]["type"] == "result"
    assert len(w.calls("from_pretrained")) == 1, "recovered without reloading"
    w.close()


def test_cancel_between_steps_keeps_the_model_loaded(tmp_path):
    w = LocalWorker(tmp_path, TRELLIS_STANDIN_STEP_SECONDS="0.2")
    w.job(resolution=512)
    read_until(w.proc, {"progress"})
    read_until(w.proc, {"progress"})
    send(w.proc, "cancel", id="local1")
    started = time.monotonic()
    assert w.finish()[-1]["type"] == "cancelled" and time.monotonic() - started < 1.0
    w.job(resolution=512, sparse_structure_override=True, sparse_structure_steps=1, shape_slat_override=True,
          shape_slat_steps=1, tex_slat_override=True, tex_slat_steps=1)
    assert w.finish()[-1]["type"] == "result"
    assert len(w.calls("from_pretrained")) == 1
    w.close()


def test_idle_worker_exits_and_frees_the_gpu(tmp_path):
    w = LocalWorker(tmp_path, idle_exit=0.5)
    w.job(resolution=512)
    assert w.finish()[-1]["type"] == "result"
    assert w.proc.wait(5) == 0
    assert "idle for 0.5 s: exiting" in w.proc.stderr.read().decode()


@pytest.mark.parametrize("env,code,fragment", [
    ({"TRELLIS_STANDIN_GATED": "1"}, "weights", "gated: accept the licence on huggingface.co"),
    ({"TRELLIS_STANDIN_NO_CUDA": "1"}, "no_cuda", "No CUDA GPU is visible"),
])
def test_setup_errors_name_what_to_do(tmp_path, env, code, fragment):
    w = LocalWorker(tmp_path, **env)
    w.job()
    error = w.finish()[-1]
    assert (error["type"], error["code"]) == ("error", code) and fragment in error["message"]
    w.close()


def test_missing_package_is_named(tmp_path):
    proc = start_worker()  # no stand-ins: no torch
    send(proc, "job", id="x", backend="local", input={"rgba": save_rgba(tmp_path), "name": "d"},
         settings={}, output_dir=str(tmp_path / "out"), options={})
    error = read_until(proc, {"error", "result"})[-1]
    assert error["code"] == "missing_package" and "lacks the package 'torch'" in error["message"]
    close(proc)


def test_killed_mid_job_leaves_a_clear_exit(tmp_path):
    w = LocalWorker(tmp_path, TRELLIS_STANDIN_STEP_SECONDS="0.2")
    w.job(resolution=512)
    read_until(w.proc, {"progress"})
    os.kill(w.proc.pid, signal.SIGKILL)
    assert w.proc.wait(5) == -signal.SIGKILL


@pytest.mark.skipif(not os.path.exists(PY310), reason=f"no Python 3.10 venv at {PY310} (scripts/test.sh makes one)")
def test_backend_runs_on_python_310(tmp_path):
    w = LocalWorker(tmp_path, python=PY310)
    hello = read_until(w.proc, {"hello"})[-1]
    assert hello["python"].startswith("3.10")
    w.job(resolution=1024, number_results=2, tex_slat_override=True)
    assert w.finish()[-1]["type"] == "result"
    assert [c["pipeline_type"] for c in w.calls("pipeline.run")] == ["1024_cascade"] * 2
    assert w.close()[0] == 0
    assert protocol.PROTOCOL_VERSION == hello["protocol"]


def doctor(env_path, **env):
    out = subprocess.run([sys.executable, "-s", "-m", "backend.doctor"], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=env_path, **env), timeout=60)
    report = json.loads(out.stdout)
    return report, {c["name"]: c for c in report["checks"]}


def test_doctor_on_a_broken_environment():
    report, checks = doctor(STANDINS)
    assert report["ready"] is False
    assert checks["torch"]["ok"] and checks["CUDA"]["ok"] and checks["trellis2"]["ok"]
    assert checks["GPU 0"]["detail"] == "Stand-in GPU 24GB, 20.0 of 24.0 GB free"
    missing = {name for name, c in checks.items() if not c["ok"] and not c["optional"]}
    assert {"flex_gemm", "cumesh", "nvdiffrast", "transformers", "attention: flash_attn"} <= missing
    assert "No module named 'cumesh'" in checks["cumesh"]["detail"]


def test_doctor_on_a_complete_environment():
    report, checks = doctor(os.pathsep.join([STANDINS, os.path.join(STANDINS, "extra")]))
    assert report["ready"] is True, [c for c in report["checks"] if not c["ok"]]
    assert checks["weights offline"]["ok"] and checks["spconv"]["optional"] and not checks["spconv"]["ok"]
    report, checks = doctor(os.pathsep.join([STANDINS, os.path.join(STANDINS, "extra")]), TRELLIS_STANDIN_NO_CUDA="1",
                            ATTN_BACKEND="sdpa")
    assert report["ready"] is False and not checks["CUDA"]["ok"] and checks["attention: sdpa"]["ok"]


def _box_glb(path, offset=(3.0, -1.0, 2.0), size=(2.0, 0.5, 1.0)):
    """A box mesh GLB placed by its node's translation (as Blender's exporter writes objects)."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32) * size
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.uint32)
    pixel = png.encode_png(np.full((1, 1, 4), 255, np.uint8))
    glb.write_glb(str(path), corners, np.zeros_like(corners), np.zeros((8, 2), np.float32), faces, pixel, pixel)
    data = bytearray(open(path, "rb").read())  # move the node, not the vertices
    length = int.from_bytes(data[12:16], "little")
    doc = json.loads(bytes(data[20:20 + length]))
    doc["nodes"][0]["translation"] = list(offset)
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    out = b"glTF" + (2).to_bytes(4, "little") + b"\0\0\0\0" + len(text).to_bytes(4, "little") + bytes(data[16:20])
    out += text + bytes(data[20 + length:])
    out = out[:8] + len(out).to_bytes(4, "little") + out[12:]
    open(path, "wb").write(out)
    return corners + np.array(offset, np.float32), faces


def test_retexture_runs_the_texturing_pipeline_and_restores_the_mesh_placement(worker, tmp_path):
    mesh_path = tmp_path / "mesh.glb"
    corners, _ = _box_glb(mesh_path)
    rgba_path = save_rgba(tmp_path)
    send(worker.proc, "job", id="rt1", backend="local", mode="retexture",
         input={"rgba": rgba_path, "name": "disc", "mesh": str(mesh_path)},
         settings={"seed": 3, "resolution": 512, "texture_size": 1024, "tex_slat_override": True, "tex_slat_steps": 7},
         output_dir=str(tmp_path / "rt1"), options={"model": "microsoft/TRELLIS.2-4B"})
    messages = worker.finish()
    result = messages[-1]
    assert result["type"] == "result", messages[-1]
    load = worker.calls("from_pretrained")[0]
    assert load["config_file"] == "texturing_pipeline.json" and load["pipeline"] == "texturing"
    run = worker.calls("texturing.run")[0]
    assert (run["seed"], run["resolution"], run["texture_size"], run["preprocess_image"]) == (3, 512, 1024, True)
    assert run["tex_slat_sampler_params"] == {"steps": 7, "guidance_strength": 1.0, "guidance_rescale": 0.0,
                                              "rescale_t": 3.0, "guidance_interval": [0.6, 0.9]}
    assert run["vertices"] == 8
    assert [m["stage"] for m in messages if m["type"] == "progress"][-1] == "export"
    count, doc_min, doc_max = _glb_bounds(result["files"][0])
    assert np.allclose(doc_min, corners.min(0), atol=1e-4) and np.allclose(doc_max, corners.max(0), atol=1e-4)
    assert count == 36, "UVs rebuilt: corners split per face (the add-on transfers them to the original mesh)"
    assert result["info"]["normalization"]["scale"] == pytest.approx(0.99999 / 2.0)


def _glb_bounds(path):
    data = open(path, "rb").read()
    length = int.from_bytes(data[12:16], "little")
    doc = json.loads(data[20:20 + length])
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    return acc["count"], np.array(acc["min"]), np.array(acc["max"])


def test_retexture_refuses_1536(worker, tmp_path):
    mesh_path = tmp_path / "mesh.glb"
    _box_glb(mesh_path)
    send(worker.proc, "job", id="rt2", backend="local", mode="retexture",
         input={"rgba": save_rgba(tmp_path), "name": "disc", "mesh": str(mesh_path)},
         settings={"resolution": 1536}, output_dir=str(tmp_path / "rt2"), options={})
    error = worker.finish()[-1]
    assert error["code"] == "bad_settings" and "Local retexture accepts Resolution" in error["message"]
    assert worker.calls("from_pretrained") == []
