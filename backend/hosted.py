"""What the job-style hosted backends (EmpirioLabs, Scenario) share: a JSON client with retries and the
provider's own error mapping, one remote job per result polled together, and result downloads.

A provider module supplies the wire details: its status_error(status, body) -> JobError and a
poll function turning one job's answer into a Poll.
"""
from __future__ import annotations

import base64
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import requests

from . import protocol, remote, schema
from .worker import Cancelled, JobError

# Fractions of the job's progress bar: upload and submit, remote processing, downloads.
REMOTE_START, DOWNLOAD_START = 0.05, 0.85

DEFAULTS = {"poll_timeout": 1200.0, "poll_first": 2.0, "poll_factor": 1.5, "poll_cap": 10.0, "retry_tries": 4,
            "retry_base": 1.0, "retry_cap": 30.0, "download_tries": 3, "read_timeout": 60.0}


def one_line(text) -> str:
    return " ".join(str(text or "").split()).rstrip(".")


def check_url(url: str, provider: str) -> str:
    """The API URL, if usable: https, or plain http only to this machine (credentials are in a header)."""
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "https" and parts.hostname or parts.scheme == "http" and local:
        return url
    raise JobError(protocol.BAD_SETTINGS, f"{provider} URL must be https://... (plain http only to this machine), "
                                          f"got {url!r}")


class Client:
    """JSON requests to one API: transient failures retried with backoff, other failures mapped by the
    provider's status_error. Credentials live in the session's headers only."""

    def __init__(self, ctx, provider: str, options: dict, defaults: dict, headers: dict,
                 status_error: Callable[[int, object], JobError], wait_hint=None):
        self.ctx, self.provider = ctx, provider
        self.opt = dict(DEFAULTS, **defaults)
        self.opt.update({k: v for k, v in options.items() if v not in (None, "")})
        self.url = check_url(str(self.opt["base_url"]).strip().rstrip("/"), provider)
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.status_error = status_error
        self.wait_hint = wait_hint or remote.retry_after
        self.sent = 0

    def request(self, method: str, path: str, body=None, *, stage: str = "", fraction: float = 0.0,
                params: dict | None = None, acted=None) -> dict | None:
        """The JSON answer of a 2xx response; JobError otherwise; None when `acted` says an ambiguously
        failed request went through."""
        data = remote.encode_json(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        read = float(self.opt["read_timeout"]) if method == "GET" else 120.0

        def send():
            self.sent += len(data or b"")
            return self.session.request(method, self.url + path, data=data, headers=headers, params=params,
                                        timeout=(10, read))

        response = remote.request_with_retries(
            send, self.ctx, provider=self.provider, tries=int(self.opt["retry_tries"]),
            base=float(self.opt["retry_base"]), cap=float(self.opt["retry_cap"]), stage=stage, fraction=fraction,
            acted=acted, wait_hint=self.wait_hint)
        if response is None:
            return None
        answer = remote.read_json(response)
        if remote.classify(response.status_code) == remote.OK:
            if isinstance(answer, dict):
                return answer
            raise JobError(remote.REMOTE, f"{self.provider} answered HTTP {response.status_code} without a JSON "
                                          "object")
        raise self.status_error(response.status_code, answer)

    def get_once(self, path: str):
        """One GET without retries (polling keeps its own cadence): (status, JSON or None)."""
        response = self.session.get(self.url + path, timeout=(10, float(self.opt["read_timeout"])))
        return response.status_code, remote.read_json(response)


@dataclass
class Poll:
    """One remote job's state from one poll."""
    state: str  # "running" | "done" | "failed"
    progress: float | None = None  # 0..1
    value: object = None  # done: what the provider needs to fetch the result; failed: the JobError
    queued: bool = False


def poll_all(client: Client, job_ids: list[str], poll_one: Callable[[str], Poll]) -> dict:
    """Poll every job until each is done or failed; {job_id: Poll}. Network failures and transient
    statuses keep polling (poll_one raises remote.NETWORK_ERRORS or returns None for those)."""
    ctx, opt, provider = client.ctx, client.opt, client.provider
    timeout = float(opt["poll_timeout"])
    deadline = time.monotonic() + timeout
    delays = remote.poll_delays(float(opt["poll_first"]), float(opt["poll_factor"]), float(opt["poll_cap"]))
    states: dict[str, Poll] = {}
    fraction = REMOTE_START
    count = len(job_ids)
    while True:
        open_ids = [j for j in job_ids if j not in states or states[j].state == "running"]
        if not open_ids:
            return states
        remote.sleep(min(next(delays), max(0.0, deadline - time.monotonic())), ctx)
        if time.monotonic() >= deadline:
            raise JobError(remote.TIMEOUT, f"{provider} did not finish within {timeout / 60:g} min (job "
                                           f"{', '.join(open_ids)}); it may still complete and be billed")
        for job_id in open_ids:
            try:
                state = remote.cancellable(lambda job_id=job_id: poll_one(job_id), ctx)
            except remote.NETWORK_ERRORS as exc:
                reason = remote.network_reason(exc)
                ctx.log(f"poll failed ({reason}); still polling job {job_id}", "warning")
                ctx.progress("remote", 0, count, fraction, f"{provider} unreachable ({reason}), still polling")
                continue
            if state is None:
                ctx.progress("remote", 0, count, fraction, f"{provider} busy, still polling")
                continue
            states[job_id] = state
        done = sum(1 for s in states.values() if s.state != "running")
        running = [s for s in states.values() if s.state == "running"]
        if running and all(s.queued for s in running) and not done:
            ctx.progress("queued", 0, count, REMOTE_START, f"{provider}: queued")
            continue
        share = (done + sum(s.progress or 0.0 for s in running)) / count
        fraction = max(fraction, REMOTE_START + (DOWNLOAD_START - REMOTE_START) * min(share, 1.0))
        text = f"{provider} generating"
        if count > 1:
            text += f": {done}/{count} done"
        known = [s.progress for s in running if s.progress is not None]
        if known:
            text += f"{',' if count > 1 else ''} {max(known) * 100:.0f}%"
        ctx.progress("remote", done, count, fraction, text)


def transient_or_raise(status: int, body, status_error) -> bool:
    """For a poll answer: True when worth polling again (transient, or 2xx without JSON object);
    raises the provider's JobError for other failures; False for a usable answer."""
    kind = remote.classify(status)
    if kind == remote.TRANSIENT or (kind == remote.OK and not isinstance(body, dict)):
        return True
    if kind != remote.OK:
        raise status_error(status, body)
    return False


def save_result(ctx, client: Client, source: tuple, index: int, count: int) -> str:
    """Write result `index` to output_dir/result_{index}.glb from ("url", url) or ("b64", text); checked."""
    path = os.path.join(ctx.output_dir, f"result_{index}.glb")
    kind, value = source
    if kind == "b64":
        try:
            data = base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
        except ValueError:
            raise JobError(remote.BAD_OUTPUT, f"{client.provider} result {index + 1} is not valid base64") from None
        with open(path, "wb") as f:
            f.write(data)
        remote.check_glb(path, f"result_{index}.glb")
        return path
    span = (DOWNLOAD_START + (1 - DOWNLOAD_START) * index / count,
            DOWNLOAD_START + (1 - DOWNLOAD_START) * (index + 1) / count)
    remote.download(value, path, ctx, stage="download", fraction_range=span,
                    text=f"Downloading result {index + 1}/{count}", tries=int(client.opt["download_tries"]),
                    base=float(client.opt["retry_base"]), cap=float(client.opt["retry_cap"]))
    remote.check_glb(path, value)
    return path


def run_scrubbed(fn: Callable, job: dict, ctx, *secrets: str):
    """fn(job, scrubbed ctx) with every secret kept out of messages, logs and errors."""
    safe = remote.ScrubbedContext(ctx, *secrets)
    try:
        return fn(job, safe)
    except JobError as exc:
        raise JobError(exc.code, safe.scrub(str(exc))) from None
    except (Cancelled, KeyError, schema.SettingError):
        raise
    except Exception as exc:  # report without secrets; the scrubbed traceback goes to the log
        print(safe.scrub(traceback.format_exc()), file=sys.stderr, flush=True)
        raise JobError(protocol.INTERNAL, safe.scrub(f"{type(exc).__name__}: {exc}")) from None


def resumed_tasks(options: dict, ctx) -> list[dict]:
    """Tasks of an earlier session to poll again instead of submitting (options["resume_tasks"]:
    [{"task_id", "seed", ...}]), announced again so the record keeps them; [] for a new job."""
    tasks = [t for t in options.get("resume_tasks") or [] if isinstance(t, dict) and t.get("task_id")]
    for task in tasks:
        ctx.remote_task(task.get("provider", ""), str(task["task_id"]),
                        **{k: v for k, v in task.items() if k not in ("task_id", "provider", "resumed")}, resumed=True)
        ctx.log(f"resuming job {task['task_id']}")
    return tasks
