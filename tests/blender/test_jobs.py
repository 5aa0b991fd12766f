"""Jobs in real Blender: cancel, a killed worker, no orphans, registration cycles, presets."""
import glob
import os
import signal
import time

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, PKG, mod


def start_job(monkeypatch, delay="0", **settings):
    """A real job through the add-on's own path (the modal operator uses the same calls)."""
    monkeypatch.setenv("TRELLIS_PREVIEW_DELAY", delay)
    generation, jobs = mod("trellis_addon.request"), mod("trellis_addon.queue")
    resolved = generation.resolve_settings(bpy.context.scene.trellis2.to_settings(),
                                           dict(resolution=512, texture_size=1024, decimation_target=100000,
                                                seed=5, **settings))
    job = generation.prepare_job(image=EXAMPLE_IMAGE, backend="preview", settings=resolved)
    job.start()
    return jobs.manager.add(job)


def wait_for(job, predicate, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job.poll()
        if predicate(job):
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out; state {job.state}, text {job.text}, error {job.error}")


def assert_process_gone(pid, timeout=5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} is still running")


def test_progress_comes_per_stage_while_the_main_thread_is_free(scene, monkeypatch):
    job = start_job(monkeypatch, delay="0.3")
    seen, polls = [], 0
    end = time.monotonic() + 60
    while not job.is_finished and job.state != "importing" and time.monotonic() < end:
        started = time.perf_counter()
        job.poll()
        assert time.perf_counter() - started < 0.005, "draining the queue never blocks"
        polls += 1
        if job.stage and (not seen or seen[-1] != job.stage):
            seen.append(job.stage)
        time.sleep(0.01)
    assert job.state == "importing", job.error
    assert seen == ["mask", "shape", "texture", "export"]
    assert polls > 20


def test_cancel_stops_the_worker_group_and_imports_nothing(scene, monkeypatch):
    job = start_job(monkeypatch, delay="10")
    wait_for(job, lambda j: j.stage == "mask")
    pid = job.worker.proc.pid
    bpy.ops.trellis.cancel(job_id=job.id)
    assert job.state == "cancelled"
    assert_process_gone(pid)
    wait_for(job, lambda j: j.worker.proc.poll() is not None)
    assert not glob.glob(os.path.join(job.output_dir, "*.glb"))
    assert "TRELLIS" not in bpy.data.collections or not bpy.data.collections["TRELLIS"].objects


def test_killed_worker_is_reported_with_its_log(scene, monkeypatch):
    job = start_job(monkeypatch, delay="10")
    wait_for(job, lambda j: j.stage == "mask")
    os.kill(job.worker.proc.pid, signal.SIGKILL)
    wait_for(job, lambda j: j.is_finished)
    assert job.state == "failed"
    assert "Worker stopped unexpectedly (exit code -9)" in job.error
    assert "Last lines of" in job.error and "worker.log" in job.error
    assert job.error_code.value == "worker_exit" and job.error_code.remedy.value == "retry"
    assert_process_gone(job.worker.proc.pid)
    assert job.worker.proc.returncode == -9, "reaped, not a zombie"


def test_failed_import_leaves_nothing_half_imported(scene, monkeypatch, tmp_path):
    job = start_job(monkeypatch)
    wait_for(job, lambda j: j.state == "importing")
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"glTF not really")
    job.result["files"] = [str(broken)]
    with pytest.raises(mod("trellis_addon.request").RequestError, match="Import failed"):
        mod("trellis_addon.results").import_job(bpy.context, job)
    assert job.state == "failed"
    assert "TRELLIS" not in bpy.data.collections or not bpy.data.collections["TRELLIS"].objects


def _leftovers():
    found = [name for name in dir(bpy.types) if name.startswith("TRELLIS_")]
    found += ["Scene.trellis2"] if hasattr(bpy.types.Scene, "trellis2") else []
    found += [f"handler {h}" for hs in bpy.app.handlers if isinstance(hs, list) for h in hs
              if getattr(h, "__module__", "").startswith(PKG)]
    return found


def test_register_unregister_three_times_leaves_nothing(addon):
    import addon_utils
    for _ in range(3):
        addon_utils.disable(PKG, default_set=True)
        assert _leftovers() == []
        addon_utils.enable(PKG, default_set=True)
        assert "TRELLIS_OT_generate" in dir(bpy.types) and hasattr(bpy.types.Scene, "trellis2")
    assert PKG in bpy.context.preferences.addons


def test_bundled_and_user_presets(scene):
    settings = scene.trellis2
    bpy.ops.trellis.apply_preset(name="High")
    assert (settings.resolution, settings.texture_size, settings.decimation_target) == ("1536", "4096", 1000000)
    bpy.ops.trellis.apply_preset(name="Orc Character Bust")
    assert settings.seed == 424242 and not settings.random_seed and settings.tex_slat_override
    assert settings.tex_slat_steps == 30 and settings.tex_slat_guidance_strength == pytest.approx(8.5)
    bpy.ops.trellis.preset_add(name="My Look")
    preset = bpy.utils.user_resource("SCRIPTS", path="presets/trellis2/generation/My_Look.py")
    assert os.path.isfile(preset)
    bpy.ops.trellis.apply_preset(name="Draft")
    assert settings.resolution == "512"
    bpy.ops.script.execute_preset(filepath=preset, menu_idname="TRELLIS_MT_presets")
    assert settings.resolution == "1024" and settings.seed == 424242 and settings.tex_slat_steps == 30


def test_scene_properties_carry_the_schema_ranges(addon):
    schema = mod("backend.schema")
    rna = bpy.types.Scene.bl_rna.properties["trellis2"].fixed_type.properties
    for param in schema.PARAMS:
        prop = rna[param.name]
        assert prop.description == param.description
        if param.choice_values():
            assert [int(i.identifier) for i in prop.enum_items] == list(param.choice_values())
            assert prop.default == str(param.default)
        elif param.kind in ("int", "float"):
            assert (prop.hard_min, prop.hard_max) == pytest.approx((param.min, param.max))
            assert prop.default == pytest.approx(param.default)
        else:
            assert prop.default == param.default
