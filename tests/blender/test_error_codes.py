"""A failed job keeps its worker's ErrorCode; the sidebar acts on the code's remedy (a button to the key's
preferences, a "try again later" note) instead of showing the message alone."""
import pytest

from conftest import mod
from test_runware_operator import generate, runware  # noqa: F401 (fixture)
from test_sidebar_ignored import Record, RecordingLayout


def outcome(job):
    record = Record()
    mod("panels.sidebar").draw_outcome(RecordingLayout(record), job)
    return record


@pytest.mark.parametrize("status,code,remedy,button", [
    (401, "auth", "fix_account", "preferences.addon_show"),
    (402, "balance", "fix_account", "preferences.addon_show"),
    (400, "bad_request", "fix_request", None),
])
def test_the_error_code_reaches_the_job_and_the_panel_acts_on_it(runware, status, code, remedy, button):  # noqa: F811
    runware.submit_statuses = [status]
    with pytest.raises(RuntimeError):
        generate()
    job = mod("trellis_addon.queue").manager.jobs[-1]
    assert job.state == "failed" and job.error_code.value == code and job.error_code.remedy.value == remedy
    drawn = outcome(job)
    assert (button in drawn.operators) if button else not drawn.operators
    assert job.record().error_code == code, "the record keeps the code"


def test_an_unknown_code_from_a_worker_is_internal():
    protocol = mod("backend.protocol")
    assert protocol.ErrorCode.parse("no such code") is protocol.ErrorCode.INTERNAL
    assert protocol.ErrorCode.parse(None) is protocol.ErrorCode.INTERNAL
    codes, remedy = protocol.ErrorCode, protocol.Remedy  # what the sidebar offers for each kind of failure
    assert {c for c in codes if c.remedy is remedy.FIX_ACCOUNT} == {codes.AUTH, codes.BALANCE, codes.FORBIDDEN}
    assert {codes.NETWORK, codes.RATE_LIMIT, codes.TIMEOUT, codes.WORKER_EXIT} <= {
        c for c in codes if c.remedy is remedy.RETRY}
    assert {codes.MISSING_PACKAGE, codes.NO_CUDA, codes.WEIGHTS, codes.PYTHON} == {
        c for c in codes if c.remedy is remedy.FIX_SETUP}
