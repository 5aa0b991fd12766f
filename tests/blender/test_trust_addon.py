"""The add-on's side of trusting nothing from outside: a cost that is no number counts as the estimate
(the session's total stays a number and the cap keeps refusing), workers never see a key in their
environment, and a worker that falls silent fails its job instead of hanging Blender."""
import math
import os
import signal
import time

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod
from test_runware_operator import KEY, generate, runware  # noqa: F401 (fixture)


@pytest.mark.parametrize("cost", [float("nan"), float("inf"), -3.0, "0.01", 1e12])
def test_a_cost_that_is_no_price_counts_as_the_estimate(runware, cost):  # noqa: F811
    runware.cost = cost
    spending = mod("trellis_addon.spending").session
    before = spending.total("USD")
    assert generate(resolution=1024) == {"FINISHED"}
    job = mod("trellis_addon.queue").manager.jobs[-1]
    assert job.cost is None, "unknown, not trusted"
    spent = spending.total("USD")
    assert math.isfinite(spent) and spent == pytest.approx(before + 0.03), "the price list's estimate counts"
    assert mod("trellis_addon.queue").job.sane_cost(cost) is None


def test_workers_never_inherit_a_key_from_the_environment(scene, monkeypatch):
    for name in ("RUNWARE_API_KEY", "SCENARIO_API_SECRET"):
        monkeypatch.setenv(name, f"{name.lower()}-from-env-1234")
    queue = mod("trellis_addon.queue")
    worker = queue.WorkerProcess(mod("trellis_addon.queue.manager").pool_spec()).start()
    try:
        with open(f"/proc/{worker.proc.pid}/environ", "rb") as f:
            environ = f.read().decode("utf-8", "replace")
        assert "from-env-1234" not in environ and "RUNWARE_API_KEY=" not in environ
    finally:
        worker.close_stdin()
        worker.wait_exit(5)


def test_a_silent_worker_fails_its_job(runware, monkeypatch):  # noqa: F811
    """A SIGSTOP'd hosted worker sends nothing: after SILENT_SECONDS the job fails and the process is ended;
    its submitted task stays in History to be fetched."""
    queue, request = mod("trellis_addon.queue"), mod("trellis_addon.request")
    monkeypatch.setattr(queue.job, "SILENT_SECONDS", 3.0)
    runware.polls_to_finish = 1000  # it would poll for ever
    settings = request.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 5})
    job = queue.manager.enqueue(request.prepare_job(image=EXAMPLE_IMAGE, backend="runware", settings=settings,
                                                    force_new=True))
    end = time.monotonic() + 30
    while not (job.beating and job.remote) and time.monotonic() < end:
        queue.manager.poll_all()
        time.sleep(0.05)
    assert job.beating and job.remote, "heartbeats and the submitted task arrived"
    pid = job.worker.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        while not job.is_finished and time.monotonic() < stopped + 20:
            queue.manager.poll_all()
            time.sleep(0.05)
        assert job.state == "failed" and "stopped answering" in job.error
        assert time.monotonic() - stopped < 3.0 + 6.0, "within the silence limit (+ one heartbeat period)"
        queue.flush_records()
        history = mod("trellis_addon.history")
        history.history.invalidate()
        assert history.read_entry(job.output_dir).state == history.PENDING, "the paid task can still be fetched"
    finally:
        os.kill(pid, signal.SIGCONT)
