"""What every hosted job does around the HTTP client (http.py): credentials from the job, secrets scrubbed
out of every text, the image as PNG, remote jobs polled together (one loop for every provider), resumed
tasks, and the results saved as checked GLBs.
"""
from __future__ import annotations

import base64
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import inputs, png, registry, schema
from ..protocol import Cancelled, ErrorCode, HostedOptions, Job, JobError
from . import download, http
from .mapping import SEED_MAX

# Fractions of the job's progress bar: upload and submit, remote processing, downloads.
REMOTE_START, DOWNLOAD_START = 0.05, 0.85


def credentials(job: Job) -> list[str]:
    """The job's secrets in the order of its backend's registry credentials; JobError(AUTH) when one is
    missing (nothing is sent then)."""
    info = registry.get(job.backend)
    values = [str(job.secrets.get(c.name) or "").strip() for c in info.credentials]
    if not all(values):
        names = " and ".join(c.label.lower().replace("api ", "API ", 1) for c in info.credentials)
        where = " and ".join(c.env for c in info.credentials)
        raise JobError(ErrorCode.AUTH, f"No {info.short_label} {names}: set {'both' if len(values) > 1 else 'it'} "
                                       f"in the add-on preferences or {where}")
    return values


def image_png(rgba: np.ndarray) -> bytes:
    """The PNG sent for an HxWx4 uint8 image: colour under alpha 0 zeroed (it compresses to almost
    nothing; TRELLIS.2 multiplies colour by alpha before use), RGB only when fully opaque."""
    hidden = rgba[..., 3] == 0
    if hidden.any():
        rgba = rgba.copy()
        rgba[hidden, :3] = 0
        return png.encode_png(rgba)
    return inputs.png_bytes(rgba)


def image_uri(job: Job) -> str:
    return inputs.data_uri(image_png(inputs.load_rgba(job.input["rgba"])))


def seeds(settings: dict) -> list[int]:
    """One seed per result: seed, seed+1, ... (wrapping at the providers' limit)."""
    return [(settings["seed"] + i) % (SEED_MAX + 1) for i in range(settings["number_results"])]


# --- secrets -------------------------------------------------------------------------------------------

def scrub(text: str, *secrets: str) -> str:
    """text with every secret (of 4+ characters) replaced by '***'."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class ScrubbedContext:
    """A job context whose progress, log and remote_task texts pass through scrub(): whatever a
    provider echoes back (an error message quoting the key, say) never reaches the user or a log."""

    def __init__(self, ctx, *secrets: str):
        self._ctx = ctx
        self._secrets = secrets
        self.output_dir = ctx.output_dir

    def scrub(self, text: str) -> str:
        return scrub(text, *self._secrets)

    def progress(self, stage: str, step: int, total: int, fraction: float, text: str = "") -> None:
        self._ctx.progress(stage, step, total, fraction, self.scrub(text))

    def log(self, text: str, level: str = "info") -> None:
        self._ctx.log(self.scrub(text), level)

    def remote_task(self, provider: str, task_id: str, **fields) -> None:
        self._ctx.remote_task(provider, task_id, **fields)

    def cancelled(self) -> bool:
        return self._ctx.cancelled()

    def check_cancel(self) -> None:
        self._ctx.check_cancel()


def run_scrubbed(fn: Callable, job: Job, ctx, *secrets: str):
    """fn(job, scrubbed ctx) with every secret kept out of messages, logs and errors."""
    safe = ScrubbedContext(ctx, *secrets)
    try:
        return fn(job, safe)
    except JobError as exc:
        raise JobError(exc.code, safe.scrub(str(exc))) from None
    except (Cancelled, schema.SettingError):
        raise
    except Exception as exc:  # report without secrets; the scrubbed traceback goes to the log
        print(safe.scrub(traceback.format_exc()), file=sys.stderr, flush=True)
        raise JobError(ErrorCode.INTERNAL, safe.scrub(f"{type(exc).__name__}: {exc}")) from None


def resumed(job: Job, ctx, label: str, field: str, pattern=http.ID_FORMAT) -> tuple[list[str], list[int]]:
    """(task ids, seeds) of an earlier session's tasks to poll again instead of submitting
    (options.resume_tasks: [{"task_id", "seed", ...}]), announced again so the record keeps them;
    ([], []) for a new job. A task id that does not match the provider's format (`field`, `pattern`) is
    a BAD_SETTINGS error naming the provider and the field, before any request."""
    tasks = [t for t in job.options.resume_tasks or [] if isinstance(t, dict) and t.get("task_id")]
    for task in tasks:
        http.path_id(label, f"{field} to resume", task["task_id"], pattern, ErrorCode.BAD_SETTINGS)
    for task in tasks:
        provider = task.get("provider") if isinstance(task.get("provider"), str) else ""
        ctx.remote_task(provider or job.backend, str(task["task_id"]),
                        **{k: v for k, v in task.items() if k not in ("task_id", "provider", "resumed")}, resumed=True)
        ctx.log(f"resuming task {task['task_id']}")
    return [str(t["task_id"]) for t in tasks], [seed_or(t.get("seed"), job.settings["seed"]) for t in tasks]


def seed_or(value, default: int) -> int:
    """value when it is a seed (an int in the providers' range), else default."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX else default


# Above these a cost per result is not believed (USD, Scenario's creative units).
MAX_COST = {"USD": 1000.0, "CU": 100000.0}


def cost(value, label: str, ctx, unit: str = "USD", results: int = 1) -> float | None:
    """A provider's cost for `results` results if it is one: a finite number in [0, MAX_COST per result];
    else None (unknown: the estimate counts), with a warning naming the provider and the value."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and 0 <= value <= MAX_COST.get(unit, MAX_COST["USD"]) * max(results, 1):
        return float(value)
    ctx.log(f"{label} reported a cost of {http.one_line(repr(value), 60)}, which is not a cost; counted as "
            "unknown", "warning")
    return None


def number(value) -> float | None:
    """A finite JSON number (not a bool), else None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def obj(value, label: str, field: str) -> dict:
    """value when it is a JSON object ({} for null / absent), else the BAD_OUTPUT error naming the field
    and its type."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise http.type_error(label, field, value)
    return value


def array(value, label: str, field: str) -> list:
    """value when it is a JSON array ([] for null / absent), else the BAD_OUTPUT error."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise http.type_error(label, field, value)
    return value


# --- polling -------------------------------------------------------------------------------------------

@dataclass
class Poll:
    """One remote job's state from one poll."""
    state: str  # "running" | "done" | "failed"
    progress: float | None = None  # 0..1 of its furthest result (shown as %)
    value: object = None  # done: what the provider needs to fetch the results; failed: the JobError
    queued: bool = False
    done: int = 0  # results of a running multi-result job that are already in
    work: float | None = None  # results' worth of work done (default: done + progress)


def transient(status: int, body, error) -> bool:
    """For a poll answer: True when worth polling again (transient, or 2xx without a JSON object);
    raises error(status, body) for other failures; False for a usable answer."""
    kind = http.classify(status)
    if kind == http.TRANSIENT or (kind == http.OK and not isinstance(body, dict)):
        return True
    if kind != http.OK:
        raise error(status, body)
    return False


def poll_all(client: http.Client, job_ids: list[str], poll_one: Callable[[str], Poll | None], *,
             results: dict | None = None, initial: dict | None = None, noun: str = "job") -> dict:
    """Poll every job until each is done or failed; {job_id: Poll}. results: how many results a job makes
    (default 1); initial: states already known (a synchronous answer). Network failures and transient
    answers keep polling (poll_one raises http.NETWORK_ERRORS or returns None for those)."""
    ctx, opt, label = client.ctx, client.opt, client.label
    timeout = float(opt.poll_timeout)
    deadline = time.monotonic() + timeout
    delays = http.poll_delays(client.poll_first, float(opt.poll_factor), float(opt.poll_cap))
    states: dict[str, Poll] = dict(initial or {})
    counts = {j: (results or {}).get(j, 1) for j in job_ids}
    count, fraction, seen = sum(counts.values()), REMOTE_START, False
    while True:
        open_ids = [j for j in job_ids if j not in states or states[j].state == "running"]
        if not open_ids:
            return states
        http.sleep(min(next(delays), max(0.0, deadline - time.monotonic())), ctx)
        if time.monotonic() >= deadline:
            raise JobError(ErrorCode.TIMEOUT, f"{label} did not finish within {timeout / 60:g} min ({noun} "
                                              f"{', '.join(open_ids)}); it may still complete and be billed")
        for job_id in open_ids:
            try:
                state = http.cancellable(lambda job_id=job_id: poll_one(job_id), ctx)
            except http.NETWORK_ERRORS as exc:
                reason = http.network_reason(exc)
                ctx.log(f"poll failed ({reason}); still polling {noun} {job_id}", "warning")
                state, note = None, f"{label} unreachable ({reason}), still polling"
            else:
                note = f"{label} busy, still polling"
            if state is None:
                ctx.progress("remote" if seen else "queued", 0, count, fraction, note)
                continue
            states[job_id] = state
        running = [s for s in states.values() if s.state == "running"]
        done = sum(counts[j] for j, s in states.items() if s.state != "running") + sum(s.done for s in running)
        seen = seen or done > 0 or any(not s.queued for s in running)
        if not seen:
            ctx.progress("queued", 0, count, REMOTE_START, f"{label}: queued")
            continue
        work = sum(s.work if s.work is not None else s.done + (s.progress or 0.0) for s in running)
        fraction = max(fraction, REMOTE_START + (DOWNLOAD_START - REMOTE_START) * min((done + work) / count, 1.0))
        text = f"{label} generating" + (f": {done}/{count} done" if count > 1 else "")
        known = [s.progress for s in running if s.progress is not None]
        if known:
            text += f"{',' if count > 1 else ''} {max(known) * 100:.0f}%"
        ctx.progress("remote", done, count, fraction, text)


def finished(ctx, client: http.Client, job_ids: list[str], poll_one) -> tuple[list[int], list, int]:
    """Poll one-result jobs together: (indices of those done, their Poll values, how many failed); raises
    the first failure when none is done."""
    states = poll_all(client, job_ids, poll_one)
    done = [i for i, job_id in enumerate(job_ids) if states[job_id].state == "done"]
    failed = [states[j].value for j in job_ids if states[j].state == "failed"]
    if not done:
        raise failed[0]
    if failed:
        ctx.log(f"{len(failed)} of {len(job_ids)} results failed: {failed[0]}", "warning")
    return done, [states[job_ids[i]].value for i in done], len(failed)


def submit_each(ctx, client: http.Client, job: Job, bodies: list, submit: Callable[[dict], str],
                **fields) -> list[str]:
    """One remote job per result body, each announced (remote_task) as soon as it is accepted: the ids."""
    job_ids, count = [], len(bodies)
    for index, (seed, body) in enumerate(zip(seeds(job.settings), bodies)):
        ctx.progress("queued", index, count, REMOTE_START,
                     f"Submitting to {client.label}" + (f" ({index + 1}/{count})" if count > 1 else ""))
        job_ids.append(submit(body))
        ctx.remote_task(job.backend, job_ids[-1], base_url=client.url, seed=seed, index=index, **fields)
    return job_ids


# --- results -------------------------------------------------------------------------------------------

def save_result(ctx, options: HostedOptions, source: tuple, index: int, count: int, label: str) -> str:
    """Write result `index` to output_dir/result_{index}.glb from ("url", url) or ("b64", text); checked."""
    path = os.path.join(ctx.output_dir, f"result_{index}.glb")
    kind, value = source
    if kind == "b64":
        try:
            data = base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
        except ValueError:
            raise JobError(ErrorCode.BAD_OUTPUT, f"{label} result {index + 1} is not valid base64") from None
        with open(path, "wb") as f:
            f.write(data)
        download.check_glb(path, f"result_{index}.glb", label)
        return path
    span = (DOWNLOAD_START + (1 - DOWNLOAD_START) * index / count,
            DOWNLOAD_START + (1 - DOWNLOAD_START) * (index + 1) / count)
    download.download(value, path, ctx, options, fraction_range=span, text=f"Downloading result {index + 1}/{count}",
                      label=label)
    return path
