"""Hostile providers and files (issue 13): what a server or a result file sends can neither lose a paid
result nor hurt the user. Real worker processes against the local servers' fault modes."""
import base64
import json
import os
import re
import struct
import time

import pytest

from backend import glb, registry
from backend.protocol import ErrorCode, JobError
from backend.providers import http
from servers.base import (FILE_FAULTS, HOSTILE_GLBS, MALFORMED_GLBS, MiB, glb_bytes, hostile_glb, png_data_uri,
                          png_head, tiny_doc, tiny_glb)
from servers.empiriolabs_server import EmpirioLabsServer
from servers.runware_server import RunwareServer
from servers.scenario_server import ScenarioServer
from workerkit import ENDS, FAST, close, read_until, run_job, save_rgba, send, start_worker

RW, EL, SC, SC_SECRET = "rw-key-0123456789", "el-key-0123456789", "sc-key-0123456789", "sc-secret-0123456789"
SECRETS = {"runware": {"api_key": RW}, "empiriolabs": {"api_key": EL},
           "scenario": {"api_key": SC, "api_secret": SC_SECRET}}
SERVERS = {"runware": lambda **kw: RunwareServer(api_key=RW, **kw),
           "empiriolabs": lambda **kw: EmpirioLabsServer(api_key=EL, **kw),
           "scenario": lambda **kw: ScenarioServer(key=SC, secret=SC_SECRET, **kw)}


def job(tmp_path, backend, server, options=None, **extra):
    return dict(id="h1", backend=backend, input={"rgba": save_rgba(tmp_path), "name": "disc"},
                settings={"seed": 3}, output_dir=str(tmp_path / "out"),
                options=dict(FAST, base_url=server.url, **(options or {})), secrets=SECRETS[backend], **extra)


def written(messages) -> list[int]:
    """The bytes each failed download attempt wrote (from its log line)."""
    return [int(m.group(1)) for msg in messages if msg["type"] == "log"
            for m in [re.search(r"(\d+) bytes written", msg["text"])] if m]


def leftovers(tmp_path) -> list[str]:
    out = tmp_path / "out"
    return sorted(os.listdir(out)) if out.exists() else []


# --- 4: result GLBs that read outside themselves ------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(HOSTILE_GLBS))
def test_check_self_contained_refuses_outside_references(tmp_path, kind):
    path = tmp_path / "x.glb"
    path.write_bytes(hostile_glb(kind))
    with pytest.raises(ValueError, match="refers to another file|points outside|does not have|outside its buffer|"
                                         "pixels|size can be read|over 64 images"):
        glb.check_self_contained(str(path))
    path.write_bytes(tiny_glb())
    assert glb.check_self_contained(str(path))["asset"]["version"] == "2.0"


def test_data_uris_are_accepted(tmp_path):
    doc = tiny_doc()
    doc["images"] = [{"uri": png_data_uri(4096, 4096)}] * 4  # a TRELLIS.2 result's textures at their largest
    doc["buffers"].append({"byteLength": 1, "uri": "data:application/octet-stream;base64,AA=="})
    path = tmp_path / "x.glb"
    path.write_bytes(glb_bytes(doc, bytes(36)))
    glb.check_self_contained(str(path))


def test_a_glb_of_more_images_than_any_result_is_refused(tmp_path):
    doc = tiny_doc()
    doc["images"] = [{"uri": png_data_uri(1, 1)}] * glb.MAX_IMAGES
    path = tmp_path / "x.glb"
    path.write_bytes(glb_bytes(doc, bytes(36)))
    glb.check_self_contained(str(path))
    doc["images"].append({"uri": png_data_uri(1, 1)})
    path.write_bytes(glb_bytes(doc, bytes(36)))
    with pytest.raises(ValueError, match=f"over {glb.MAX_IMAGES} images"):
        glb.check_self_contained(str(path))


def glb_with_texture(path, head: bytes, offset_in_view: int = 0) -> None:
    """A GLB whose one image lies in its binary chunk after the triangle (a bufferView of its own)."""
    doc = tiny_doc()
    image = bytes(offset_in_view) + head
    doc["bufferViews"].append({"buffer": 0, "byteOffset": 36, "byteLength": len(image)})
    doc["buffers"][0]["byteLength"] = 36 + len(image)
    doc["images"] = [{"bufferView": 1, "mimeType": "image/png"}]
    path.write_bytes(glb_bytes(doc, struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0) + image))


def test_a_textures_size_is_read_from_its_header_in_the_binary_chunk(tmp_path):
    path = tmp_path / "x.glb"
    glb_with_texture(path, png_head(8192, 8192))
    glb.check_self_contained(str(path))
    glb_with_texture(path, png_head(8193, 16))
    with pytest.raises(ValueError, match=r"image 0 is 8193 x 16 pixels; at most 8192 on a side"):
        glb.check_self_contained(str(path))
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "mushroom.png"), "rb") as f:
        glb_with_texture(path, f.read())  # a real picture, its bytes after the header too
    glb.check_self_contained(str(path))


def test_a_texture_in_a_data_uri_buffer_is_read_there(tmp_path):
    doc = tiny_doc()
    head = png_head(30000, 30000)
    doc["buffers"].append({"byteLength": 4 + len(head),
                           "uri": "data:application/octet-stream;base64," + base64.b64encode(bytes(4) + head).decode()})
    doc["bufferViews"].append({"buffer": 1, "byteOffset": 4, "byteLength": len(head)})
    doc["images"] = [{"bufferView": 1, "mimeType": "image/png"}]
    path = tmp_path / "x.glb"
    path.write_bytes(glb_bytes(doc, struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)))
    with pytest.raises(ValueError, match="30000 x 30000"):
        glb.check_self_contained(str(path))


@pytest.mark.parametrize("backend", sorted(SERVERS))
@pytest.mark.parametrize("kind", ["buffer ../", "image absolute", "accessor index", "texture 60000²", "65 images"])
def test_hostile_result_glb_is_refused_and_removed(tmp_path, backend, kind):
    with SERVERS[backend](glb=hostile_glb(kind)) as server:
        messages, _ = run_job(job(tmp_path, backend, server))
    error = messages[-1]
    assert error["type"] == "error" and error["code"] == "bad_output", error
    assert "is not a complete GLB" in error["message"] and registry.get(backend).short_label in error["message"]
    assert leftovers(tmp_path) == [], "nothing left to import"


@pytest.mark.parametrize("kind,why", [("JSON 100 000 deep", "nests 100000 levels deep"),
                                      ("12 bytes", "too short to hold a JSON chunk"),
                                      ("JSON not UTF-8", "not UTF-8"),
                                      ("10M zeros", "no bufferView and a count of 10000000")])
def test_malformed_result_glb_is_bad_output_and_removed(tmp_path, kind, why):
    """A GLB whose check once ended in a RecursionError or struct.error (an `internal` error, "a bug", the file
    left on disk) or that passed it (10M vertices of zeros from 396 bytes) is refused like any bad result."""
    with RunwareServer(api_key=RW, glb=MALFORMED_GLBS[kind]()) as server:
        messages, _ = run_job(job(tmp_path, "runware", server))
    error = messages[-1]
    assert error["type"] == "error" and error["code"] == "bad_output", error
    assert "Runware result" in error["message"] and "is not a complete GLB" in error["message"], error
    assert why in error["message"], error
    assert leftovers(tmp_path) == [], "nothing left to import"


# --- 5: download size cap, free space, gzip bombs -----------------------------------------------------

@pytest.mark.parametrize("fault,limit", [("huge length", 0), ("no length", 1 * MiB), ("chunked", 1 * MiB),
                                         ("false length", 512 * 1024), ("gzip bomb", 1 * MiB)])
def test_hostile_downloads_stop_at_the_cap(tmp_path, fault, limit):
    assert fault in FILE_FAULTS
    with RunwareServer(api_key=RW, scenario={"file_fault": fault}) as server:
        messages, _ = run_job(job(tmp_path, "runware", server, {"max_download_bytes": MiB, "download_tries": 1}))
    error = messages[-1]
    assert error["type"] == "error" and error["code"] == "bad_output", error
    counts = written(messages)
    assert counts and max(counts) <= limit, counts
    assert leftovers(tmp_path) == []
    if fault == "huge length":
        assert "50000 MB announced, over the 1 MB download limit" in error["message"]
    elif fault != "false length":
        assert "more than the 1 MB download limit" in error["message"]


def test_download_requests_identity_and_no_credentials(tmp_path):
    with RunwareServer(api_key=RW) as server:
        messages, _ = run_job(job(tmp_path, "runware", server))
    assert messages[-1]["type"] == "result"
    assert [(g["encoding"], g["auth"]) for g in server.gets] == [("identity", "")]


def test_no_free_space_refuses_before_writing(tmp_path):
    # an announced size no disk holds, under the cap; a body of no announced size: tests/unit/test_download_space.py
    with RunwareServer(api_key=RW, scenario={"file_fault": "exabyte length"}) as server:
        messages, _ = run_job(job(tmp_path, "runware", server, {"max_download_bytes": 2 ** 62}))
    assert messages[-1]["code"] == "bad_output" and "free in the output folder" in messages[-1]["message"]
    assert written(messages) == [0] and leftovers(tmp_path) == []


def test_huge_api_answer_is_refused(tmp_path):
    with RunwareServer(api_key=RW, scenario={"huge_answer": 9 * MiB}) as server:
        messages, _ = run_job(job(tmp_path, "runware", server))
    assert messages[-1]["code"] == "bad_output" and "over 8 MiB" in messages[-1]["message"]
    # the submit arrived and may have been accepted: its task (our own UUID) is announced, so it stays resumable
    tasks = [m for m in messages if m["type"] == "remote_task"]
    assert len(tasks) == 1 and tasks[0]["unconfirmed"] is True and server.submits <= 1


# --- 6: deadlines and heartbeats ----------------------------------------------------------------------

def test_trickling_download_ends_by_its_deadline(tmp_path):
    with RunwareServer(api_key=RW, scenario={"file_fault": "trickle"}) as server:
        started = time.monotonic()
        messages, _ = run_job(job(tmp_path, "runware", server, {"download_deadline": 3.0, "download_rate": 1e9}))
    assert time.monotonic() - started < 12
    error = messages[-1]
    assert error["code"] == "timeout" and "did not finish in time" in error["message"], error
    assert leftovers(tmp_path) == []


def test_trickling_poll_counts_against_the_poll_timeout(tmp_path):
    with RunwareServer(api_key=RW, scenario={"trickle_polls": 100}) as server:
        started = time.monotonic()
        messages, _ = run_job(job(tmp_path, "runware", server, {"request_deadline": 2.0, "poll_timeout": 4.0}))
    took = time.monotonic() - started
    assert messages[-1]["code"] == "timeout" and "did not finish within" in messages[-1]["message"]
    assert took < 10, took
    assert any(m["type"] == "remote_task" for m in messages), "the task stays resumable"


@pytest.mark.parametrize("backend", ["empiriolabs", "scenario"])
def test_trickling_submit_answer_ends_by_the_request_deadline(tmp_path, backend):
    with SERVERS[backend]() as server:
        server.trickle_polls = 100
        started = time.monotonic()
        messages, _ = run_job(job(tmp_path, backend, server, {"request_deadline": 2.0, "poll_timeout": 3.0}))
    assert messages[-1]["code"] == "timeout" and time.monotonic() - started < 10


def test_heartbeats_arrive_while_a_job_polls(tmp_path):
    with RunwareServer(api_key=RW, scenario="never finish") as server:
        messages, _ = run_job(job(tmp_path, "runware", server, {"poll_timeout": 5.5}))
    beats = [m for m in messages if m["type"] == "heartbeat"]
    assert len(beats) >= 2 and all(m["id"] == "h1" for m in beats)
    assert messages[-1]["code"] == "timeout"


# --- 7: costs that are not costs ----------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5, "0.01", 5000.0, True])
def test_runware_cost_that_is_not_a_cost_is_unknown(tmp_path, value):
    with RunwareServer(api_key=RW, scenario={"cost": value}) as server:
        messages, _ = run_job(job(tmp_path, "runware", server))
    result = messages[-1]
    assert result["type"] == "result" and result["cost"] is None, result
    warning = [m["text"] for m in messages if m["type"] == "log" and "not a cost" in m["text"]]
    assert warning and warning[0].startswith("Runware reported a cost of ")


@pytest.mark.parametrize("value", [float("nan"), float("-inf"), -12, "12", 1e7])
def test_scenario_creative_units_that_are_not_a_cost_are_unknown(tmp_path, value):
    with ScenarioServer(key=SC, secret=SC_SECRET, scenario={"cost": value}) as server:
        messages, _ = run_job(job(tmp_path, "scenario", server))
        assert messages[-1]["type"] == "result" and messages[-1]["cost"] is None
        assert any(m["type"] == "log" and m["text"].startswith("Scenario reported a cost of") for m in messages)
        quote, _ = run_job(job(tmp_path, "scenario", server, {"quote_only": True}))
    assert quote[-1]["type"] == "error" and "creativeUnitsCost" in quote[-1]["message"]


# --- 8: redirects and ids in paths --------------------------------------------------------------------

def test_api_redirect_is_an_error_and_nothing_reaches_the_target(tmp_path):
    with RunwareServer(api_key=RW) as target, RunwareServer(api_key=RW) as server:
        server.api_redirect = target.url
        messages, _ = run_job(job(tmp_path, "runware", server))
        assert target.requests == [] and target.gets == []
    error = messages[-1]
    assert error["code"] == "remote_error" and "Runware answered HTTP 307 (a redirect)" in error["message"]


@pytest.mark.parametrize("where,ok", [("http://example.invalid/x.glb", False), ("{root}/files/x.glb", True)])
def test_download_redirects_only_to_https_or_this_machine(tmp_path, where, ok):
    with RunwareServer(api_key=RW) as target, RunwareServer(api_key=RW) as server:
        server.file_fault = "redirect:" + where.format(root=target.root)
        messages, _ = run_job(job(tmp_path, "runware", server))
        assert target.downloads == (1 if ok else 0) and all(not g["auth"] for g in target.gets)
    assert messages[-1]["type"] == ("result" if ok else "error"), messages[-1]
    if not ok:
        assert "only https is followed" in messages[-1]["message"]


@pytest.mark.parametrize("backend,field", [("empiriolabs", "job_id"), ("scenario", "jobId")])
def test_hostile_job_id_from_the_provider_is_never_requested(tmp_path, backend, field):
    with SERVERS[backend]() as server:
        server.submit_id = "../../admin?x=1#"
        messages, _ = run_job(job(tmp_path, backend, server))
        assert not any("admin" in r["path"] for r in server.requests)
    error = messages[-1]
    assert error["code"] == "bad_output" and f"{registry.get(backend).short_label} {field}" in error["message"]


@pytest.mark.parametrize("backend,field", [("runware", "taskUUID"), ("empiriolabs", "job_id"), ("scenario", "jobId")])
def test_hostile_resume_task_id_is_refused_before_any_request(tmp_path, backend, field):
    with SERVERS[backend]() as server:
        messages, _ = run_job(job(tmp_path, backend, server,
                                  {"resume_tasks": [{"task_id": "../../admin?x=1#", "seed": 3}]}))
        assert server.requests == []
    error = messages[-1]
    assert error["code"] == "bad_settings" and f"{field} to resume" in error["message"], error


def test_path_ids_are_checked_and_quoted():
    assert http.path_id("X", "id", "job_AZ-09") == "job_AZ-09"
    for bad in ("../x", "a/b", "a?b", "", "x" * 129, 5, None):
        with pytest.raises(JobError, match="X id .* not a valid X id"):
            http.path_id("X", "id", bad)


# --- 9: provider text ---------------------------------------------------------------------------------

def test_a_huge_provider_message_is_one_short_line(tmp_path):
    body = {"errors": [{"code": "x", "message": "bad\n" * 1_000_000}]}
    with RunwareServer(api_key=RW, scenario={"submit_statuses": [400], "error_body": body}) as server:
        messages, _ = run_job(job(tmp_path, "runware", server))
    message = messages[-1]["message"]
    assert len(message) < 400 and "\n" not in message and message.endswith("\u2026")


def test_one_line_truncates():
    assert http.one_line("a  b\nc.") == "a b c"
    assert len(http.one_line("x" * 10_000)) == 300 and http.one_line("x" * 10_000).endswith("\u2026")


# --- 11, 12: keys in the environment, credentials in URLs ---------------------------------------------

def test_worker_forgets_credential_variables(tmp_path):
    probe = {"id": "probe", "label": "Probe", "description": "env probe", "module": "tests.servers.envprobe",
             "credentials": [{"name": "api_key", "label": "API Key", "env": "PROBE_API_KEY", "description": ""}]}
    names = [c.env for info in registry.BACKENDS for c in info.credentials] + ["PROBE_API_KEY"]
    env = dict({n: "secret-value-0123" for n in names}, TRELLIS_EXTRA_BACKENDS=json.dumps([probe]),
               KEEP_ME="1")
    proc = start_worker(env, isolated=False)
    send(proc, "job", id="p1", backend="probe", input={"rgba": save_rgba(tmp_path), "name": "x"},
         settings={"seed": 1}, output_dir=str(tmp_path / "out"))
    result = read_until(proc, ENDS)[-1]
    log = close(proc)
    assert result["type"] == "result", result
    seen = result["info"]["environ"]
    assert "KEEP_ME" in seen and not set(names) & set(seen)
    assert "secret-value-0123" not in log and "SCENARIO_API_SECRET" in log


@pytest.mark.parametrize("url", ["https://user:pass@api.example.com/v1", "http://k:s@127.0.0.1:9/v1",
                                 "https://token@api.example.com"])
def test_url_with_credentials_is_refused_without_quoting_them(url):
    with pytest.raises(JobError) as info:
        http.normalize_url(url, "https://d/v1", "Runware")
    assert info.value.code == ErrorCode.BAD_SETTINGS and "Runware URL" in str(info.value)
    assert url.split("//")[1].split("@")[0] not in str(info.value)


def test_url_with_credentials_fails_the_job_before_any_request(tmp_path):
    with RunwareServer(api_key=RW) as server:
        bad = job(tmp_path, "runware", server)
        bad["options"]["base_url"] = server.url.replace("http://", "http://u:p@")
        messages, _ = run_job(bad)
        assert server.requests == []
    assert messages[-1]["code"] == "bad_settings" and "u:p" not in messages[-1]["message"]


# --- smaller: bad lines from the add-on ---------------------------------------------------------------

def test_a_huge_input_line_is_answered_and_the_worker_keeps_reading(tmp_path):
    proc = start_worker()
    proc.stdin.write(b'{"type": "job", "pad": "' + b"x" * (6 * MiB) + b'"}\n')
    proc.stdin.flush()
    error = read_until(proc, {"error"})[-1]
    assert error["id"] is None and "over 4 MiB" in error["message"]
    send(proc, "job", id="j2", backend="preview", input={"rgba": save_rgba(tmp_path), "name": "x"},
         settings={"seed": 1, "resolution": 512}, output_dir=str(tmp_path / "out"))
    assert read_until(proc, ENDS)[-1]["type"] == "result"
    close(proc)
