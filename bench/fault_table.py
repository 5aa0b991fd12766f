"""The fault table (issue 13): every hostile-provider fault, tried N times against the local test servers
(tests/servers) with real `python -m backend` workers, as the add-on runs them. Prints a Markdown table:
results lost (a task the server accepted whose result was neither downloaded nor announced as resumable:
must be 0), duplicate submissions (server-side submits beyond one per job: must be 0), the most bytes a
hostile download wrote, the time to a clear error (median / max) and the error code. Exits 1 when a
result was lost or submitted twice.

    .venv/bin/python bench/fault_table.py [--tries 5]
"""
import argparse
import os
import re
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "unit")]

from servers.base import MiB, hostile_glb  # noqa: E402
from servers.empiriolabs_server import EmpirioLabsServer  # noqa: E402
from servers.runware_server import RunwareServer  # noqa: E402
from workerkit import ENDS, FAST, close, read_until, save_rgba, send, start_worker  # noqa: E402

KEY = "rw-bench-key-0123456789"
COMMAND = ".venv/bin/python bench/fault_table.py"


def job(tmp, url, options=None, job_id="b1", backend="runware"):
    return dict(id=job_id, backend=backend, input={"rgba": save_rgba_once(tmp), "name": "disc"}, settings={"seed": 5},
                output_dir=tempfile.mkdtemp(dir=tmp), options=dict(FAST, **dict({"base_url": url}, **(options or {}))),
                secrets={"api_key": KEY})


_RGBA: dict = {}


def save_rgba_once(tmp):
    if tmp not in _RGBA:
        import pathlib
        _RGBA[tmp] = save_rgba(pathlib.Path(tmp))
    return _RGBA[tmp]


def written(messages):
    counts = [int(m.group(1)) for msg in messages if msg["type"] == "log"
              for m in [re.search(r"(\d+) bytes written", msg["text"])] if m]
    return max(counts) if counts else None


def outcome(server, messages, started, jobs=1):
    """One try's figures from the server's records and the job's messages."""
    end = messages[-1]
    announced = {m["task_id"] for m in messages if m["type"] == "remote_task"}
    got = end["type"] == "result" and bool(end.get("files"))
    accepted = set(server.tasks) if hasattr(server, "tasks") else set()
    lost = sum(1 for task in accepted if not got and task not in announced)
    dup = max(0, server.submits - jobs) if hasattr(server, "submits") else 0
    return {"lost": lost, "dup": dup, "bytes": written(messages), "seconds": time.monotonic() - started,
            "code": end.get("code", "ok" if end["type"] == "result" else end["type"]), "end": end}


def one_job(tmp, server, options=None, env=None, **kw):
    proc = start_worker(env)
    started = time.monotonic()
    send(proc, "job", **job(tmp, server.url, options, **kw))
    messages = read_until(proc, ENDS, timeout=120)
    close(proc)
    return messages, started


def runware(scenario=None, options=None, glb=None, check=None):
    def run(tmp):
        with RunwareServer(api_key=KEY, scenario=scenario, glb=glb) as server:
            messages, started = one_job(tmp, server, options)
            result = outcome(server, messages, started)
        if check:
            check(result["end"])
        return result
    return run


def redirect(tmp):
    with RunwareServer(api_key=KEY) as target, RunwareServer(api_key=KEY, scenario={"api_redirect": ""}) as server:
        server.api_redirect = target.url
        messages, started = one_job(tmp, server)
        assert not target.requests, "the redirect target got a request"
        return outcome(server, messages, started)


def hostile_id(tmp):
    with EmpirioLabsServer(api_key=KEY, scenario={"submit_id": "../../admin?x=1#"}) as server:
        messages, started = one_job(tmp, server, backend="empiriolabs")
        assert not any("admin" in r["path"] for r in server.requests), "GET of /admin"
        return dict(outcome(server, messages, started), dup=max(0, len(
            [r for r in server.requests if r["method"] == "POST"]) - 1))


def hostile_resume(tmp):
    with RunwareServer(api_key=KEY) as server:
        messages, started = one_job(tmp, server, {"resume_tasks": [{"task_id": "../../admin?x=1#", "seed": 5}]})
        assert not server.requests
        return outcome(server, messages, started)


def killed_then_resumed(tmp):
    """Kill the worker mid-poll, then resume the announced task in a fresh worker: one submit, a result."""
    with RunwareServer(api_key=KEY, scenario={"polls_to_finish": 8}) as server:
        proc = start_worker()
        started = time.monotonic()
        send(proc, "job", **job(tmp, server.url))
        task = read_until(proc, {"remote_task"})[-1]
        proc.kill()
        proc.wait()
        resume = [{"task_id": task["task_id"], "seed": task.get("seed", 5)}]
        messages, _ = one_job(tmp, server, {"resume_tasks": resume}, job_id="b2")
        return outcome(server, messages, started)


def must(code):
    def check(end):
        assert end.get("code") == code, end
    return check


FAULTS = [
    ("result GLB reads `../` (item 4)", runware(glb=hostile_glb("buffer ../"), check=must("bad_output"))),
    ("result GLB reads an absolute path (item 4)",
     runware(glb=hostile_glb("image absolute"), check=must("bad_output"))),
    ("50 GB Content-Length (item 5)", runware({"file_fault": "huge length"}, {"download_tries": 1})),
    ("300 MiB, no Content-Length, cap 1 MiB (item 5)",
     runware({"file_fault": "no length"}, {"max_download_bytes": MiB, "download_tries": 1})),
    ("300 MiB chunked, cap 1 MiB (item 5)",
     runware({"file_fault": "chunked"}, {"max_download_bytes": MiB, "download_tries": 1})),
    ("gzip bomb 300 MiB, cap 1 MiB (item 5)",
     runware({"file_fault": "gzip bomb"}, {"max_download_bytes": MiB, "download_tries": 1})),
    ("9 MiB API answer (item 5)", runware({"huge_answer": 9 * MiB})),
    ("download trickles 1 B/s, deadline 3 s (item 6)",
     runware({"file_fault": "trickle"}, {"download_deadline": 3.0, "download_rate": 1e9}, check=must("timeout"))),
    ("poll answer trickles 1 B/s, poll_timeout 4 s (item 6)",
     runware({"trickle_polls": 100}, {"request_deadline": 2.0, "poll_timeout": 4.0}, check=must("timeout"))),
    ("cost NaN (item 7)", runware({"cost": float("nan")}, check=lambda end: end["cost"] is None or 1 / 0)),
    ("cost -1 (item 7)", runware({"cost": -1.0}, check=lambda end: end["cost"] is None or 1 / 0)),
    ("API 307 to another port (item 8)", redirect),
    ("job id `../../admin?x=1#` from the provider (item 8)", hostile_id),
    ("job id `../../admin?x=1#` in resume_tasks (item 8)", hostile_resume),
    ("5 MB error message (item 9)", runware({"submit_statuses": [400], "error_body": {"errors": [
        {"code": "x", "message": "bad " * 1_250_000}]}}, check=lambda end: len(end["message"]) < 400 or 1 / 0)),
    ("poll answer of the wrong type (item 9)", runware({"poll_errors": "not a list"}, check=must("bad_output"))),
    ("URL with user:pass@ (item 12)", runware(options={"base_url": "http://u:p@127.0.0.1:9/v1"},
                                              check=must("bad_settings"))),
    ("503 storm", runware("503 forever", check=must("network"))),
    ("connection cut mid-download", runware("cut glb", check=must("bad_output"))),
    ("submit accepted, answer lost (cut)",
     runware("dropped submit", check=lambda end: end["type"] == "result" or 1 / 0)),
    ("submit accepted, answer lost (502)", runware({"submit_statuses": [502]})),
    ("poll timeout", runware("never finish", {"poll_timeout": 1.0}, check=must("timeout"))),
    ("worker killed mid-poll, then resumed", killed_then_resumed),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5)
    args = parser.parse_args()
    rows, bad = [], False
    with tempfile.TemporaryDirectory(prefix="fault-table-") as tmp:
        for name, run in FAULTS:
            tries = [run(tmp) for _ in range(args.tries)]
            lost, dup = sum(t["lost"] for t in tries), sum(t["dup"] for t in tries)
            bad = bad or lost or dup
            sizes = [t["bytes"] for t in tries if t["bytes"] is not None]
            seconds = [t["seconds"] for t in tries]
            codes = sorted({t["code"] for t in tries})
            rows.append(f"| {name} | {len(tries)} | {lost} | {dup} | {max(sizes) if sizes else '-'} | "
                        f"{statistics.median(seconds):.1f} / {max(seconds):.1f} | {', '.join(codes)} |")
            print(f"  {name}: done", file=sys.stderr, flush=True)
    print(f"Fault table, measured by `{COMMAND} --tries {args.tries}` against the local hostile servers "
          "(tests/servers) with real worker processes:\n")
    print("| fault | tries | results lost | duplicate submissions | bytes written (max) | "
          "seconds to the end (median / max) | error code |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
