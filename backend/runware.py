"""Backend "Runware": TRELLIS.2 (microsoft:trellis-2@4b) on Runware's REST API, as documented.

Protocol: every request is `POST {base_url}` with a JSON array of tasks and `Authorization: Bearer KEY`.
A 3dInference task with deliveryMethod "async" is acknowledged at once; `getResponse` with the same
taskUUID is then polled (1 s, x1.5, capped at 10 s, up to options.poll_timeout) and answers
cumulatively, one item per result (processing with progress %, success with outputs.files[].url, seed
and cost, or error); the job is done when numberResults successes arrived. Each GLB is then streamed
to output_dir/result_{i}.glb and checked.

Image: the prepared RGBA as PNG (alpha kept, dropped only when fully opaque; colour under fully
transparent pixels zeroed, which TRELLIS.2's preprocessing multiplies away anyway) in a data URI.
Upload rule: a data URI of at most options.inline_limit bytes (64 KiB) goes inline in the 3dInference
task; a larger one is sent once with an imageUpload task and the submit carries its 36-character
imageUUID. The upload costs one extra small request (~0.6 KB of headers and JSON), while every retried
submit (429/503/504 from a full queue: the common retries) would re-send an inline image; above 64 KiB
the upload is smaller as soon as about 1 submit in 100 is retried.

A submit that fails where Runware may have accepted it (connection cut after sending, HTTP
500/502/504) is not blindly re-sent: a getResponse for the same taskUUID first checks whether the task
exists, so a paid task is neither lost nor started twice.

Options (job["options"]): base_url, poll_timeout (s), poll_first/poll_factor/poll_cap (s),
retry_tries/retry_base/retry_cap (submit/upload retries), download_tries, read_timeout (s, polls),
inline_limit (bytes), resume_tasks ([{"task_id"}]: poll that earlier task UUID instead of submitting).
"""
from __future__ import annotations

import os
import sys
import time
import traceback
import uuid
from urllib.parse import urlsplit

import numpy as np
import requests

from . import inputs, png, protocol, providers, registry, remote, schema
from .worker import Cancelled, JobError

PROVIDER = "Runware"
MODEL = registry.BY_ID["runware"].model
DEFAULT_URL = "https://api.runware.ai/v1"
INLINE_LIMIT = 64 * 1024

DEFAULTS = {"base_url": DEFAULT_URL, "poll_timeout": 1200.0, "poll_first": 1.0, "poll_factor": 1.5,
            "poll_cap": 10.0, "retry_tries": 4, "retry_base": 1.0, "retry_cap": 30.0, "download_tries": 3,
            "read_timeout": 60.0, "inline_limit": INLINE_LIMIT}

# Fractions of the job's progress bar: upload and submit, Runware processing, downloads.
REMOTE_START, DOWNLOAD_START = 0.05, 0.85


# --- request bodies ------------------------------------------------------------------------------------

def inference_task(settings: dict, image: str, task_uuid: str) -> dict:
    """The 3dInference task for validated flat settings: sampler stages only when overridden."""
    return {
        "taskType": "3dInference", "taskUUID": task_uuid, "model": MODEL, "inputs": {"image": image},
        "seed": settings["seed"], "numberResults": settings["number_results"], "includeCost": True,
        "outputType": "URL", "outputFormat": "GLB", "deliveryMethod": "async",
        "settings": schema.model_request(settings),
    }


def upload_task(data_uri: str, task_uuid: str) -> dict:
    return {"taskType": "imageUpload", "taskUUID": task_uuid, "image": data_uri}


def poll_task(task_uuid: str) -> dict:
    return {"taskType": "getResponse", "taskUUID": task_uuid}


def image_png(rgba: np.ndarray) -> bytes:
    """The PNG sent for an HxWx4 uint8 image: colour under alpha 0 zeroed (it compresses to almost
    nothing; TRELLIS.2 multiplies colour by alpha before use), RGB only when fully opaque."""
    hidden = rgba[..., 3] == 0
    if hidden.any():
        rgba = rgba.copy()
        rgba[hidden, :3] = 0
        return png.encode_png(rgba)
    return inputs.png_bytes(rgba)


def use_upload(data_uri_bytes: int, inline_limit: int = INLINE_LIMIT) -> bool:
    """The upload rule (see the module docstring)."""
    return data_uri_bytes > inline_limit


# --- errors --------------------------------------------------------------------------------------------

def _first_error(body) -> dict:
    errors = body.get("errors") if isinstance(body, dict) else None
    return errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}


def _one_line(text) -> str:
    return " ".join(str(text or "").split()).rstrip(".")


def status_error(status: int, body) -> JobError:
    """A one-line JobError for a non-transient HTTP status and Runware's `errors` body."""
    first = _first_error(body)
    message = _one_line(first.get("message"))
    detail = f": {message}" if message else ""
    kind = remote.classify(status)
    if kind == remote.BAD_REQUEST:
        param = first.get("parameter")
        where = f" (parameter {param})" if param else ""
        return JobError(kind, f"{PROVIDER} rejected the request{where}{detail}")
    if kind == remote.AUTH:
        return JobError(kind, f"{PROVIDER} rejected the API key (HTTP 401): check it in the add-on "
                              "preferences or RUNWARE_API_KEY")
    if kind == remote.BALANCE:
        return JobError(kind, f"{PROVIDER}: insufficient account balance (HTTP 402): top up at runware.ai")
    if kind == remote.FORBIDDEN:
        return JobError(kind, f"{PROVIDER}: this API key may not use TRELLIS.2 (HTTP 403){detail}")
    return JobError(kind if kind != remote.OK else remote.REMOTE, f"{PROVIDER} answered HTTP {status}{detail}")


def task_error(item: dict) -> JobError:
    """A failed task: an `error` item of getResponse, or an entry of a top-level `errors` array."""
    err = item.get("error") if isinstance(item.get("error"), dict) else item
    code = err.get("code") or "error"
    message = _one_line(err.get("message")) or "no message"
    return JobError(remote.REMOTE, f"{PROVIDER} task failed ({code}): {message}")


def check_url(url: str) -> str:
    """The API URL, if usable: https, or plain http only to this machine (the key is in a header)."""
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "https" and parts.hostname or parts.scheme == "http" and local:
        return url
    raise JobError(protocol.BAD_SETTINGS, f"{PROVIDER} URL must be https://... (plain http only to this machine), "
                                          f"got {url!r}")


# --- client --------------------------------------------------------------------------------------------

class Client:
    def __init__(self, ctx, api_key: str, options: dict):
        self.ctx = ctx
        self.opt = dict(DEFAULTS, **{k: v for k, v in options.items() if v not in (None, "")})
        self.url = check_url(str(self.opt["base_url"]).strip().rstrip("/"))
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.sent = 0  # request body bytes, all requests

    def post(self, tasks: list, stage: str, fraction: float, acted=None) -> dict | None:
        """POST tasks with retries for transient failures; a non-200 answer becomes a one-line JobError.
        None when `acted` found that an ambiguously failed request went through."""
        data = remote.encode_json(tasks)

        def send():
            self.sent += len(data)
            return self.session.post(self.url, data=data, headers={"Content-Type": "application/json"},
                                     timeout=(10, 120))

        response = remote.request_with_retries(
            send, self.ctx, provider=PROVIDER, tries=int(self.opt["retry_tries"]), base=float(self.opt["retry_base"]),
            cap=float(self.opt["retry_cap"]), stage=stage, fraction=fraction, acted=acted)
        if response is None:
            return None
        body = remote.read_json(response)
        if response.status_code == 200 and isinstance(body, dict):
            return body
        raise status_error(response.status_code, body)

    def poll_once(self, task_uuid: str):
        """One getResponse: (status, body) or raises requests' network errors."""
        data = remote.encode_json([poll_task(task_uuid)])
        self.sent += len(data)
        response = self.session.post(self.url, data=data, headers={"Content-Type": "application/json"},
                                     timeout=(10, float(self.opt["read_timeout"])))
        return response.status_code, remote.read_json(response)

    def task_exists(self, task_uuid: str) -> bool:
        """Whether Runware knows the task (after a submit whose answer was lost). Unknown -> False."""
        try:
            status, body = remote.cancellable(lambda: self.poll_once(task_uuid), self.ctx)
        except remote.NETWORK_ERRORS:
            return False
        if status != 200 or not isinstance(body, dict):
            return False
        if any(e.get("taskUUID") in (None, task_uuid) for e in body.get("errors") or [] if isinstance(e, dict)):
            return False
        return any(isinstance(d, dict) and d.get("taskUUID") == task_uuid for d in body.get("data") or [])


def send_image(client: Client, rgba: np.ndarray) -> tuple[str, int]:
    """(inputs.image value, PNG data URI bytes): the data URI itself, or the imageUUID of one upload."""
    uri = inputs.data_uri(image_png(rgba))
    if not use_upload(len(uri), int(client.opt["inline_limit"])):
        return uri, len(uri)
    client.ctx.progress("upload", 0, 1, 0.01, f"Uploading image ({len(uri) / 1e6:.2f} MB)")
    task_uuid = str(uuid.uuid4())
    body = client.post([upload_task(uri, task_uuid)], "upload", 0.01)
    items = [d for d in body.get("data") or [] if isinstance(d, dict)]
    item = next((d for d in items if d.get("taskUUID") == task_uuid), items[0] if len(items) == 1 else None)
    if not item or not item.get("imageUUID"):
        if body.get("errors"):
            raise task_error(_first_error(body))
        raise JobError(remote.REMOTE, f"{PROVIDER} imageUpload returned no imageUUID")
    client.ctx.progress("upload", 1, 1, REMOTE_START, "Image uploaded")
    return item["imageUUID"], len(uri)


class Tally:
    """The cumulative state of one task's results, from submit and getResponse answers."""

    def __init__(self, task_uuid: str, count: int):
        self.task_uuid, self.count = task_uuid, count
        self.successes: dict[str, dict] = {}  # file URL -> success item, in arrival order
        self.errors: list[dict] = []  # error items: failed results
        self.fatal: list[dict] = []  # top-level `errors` about the task: it failed as a whole
        self.progress: list[float] = []
        self.processing = 0
        self.seen = False  # Runware reported anything about the task
        self.fraction = REMOTE_START  # last reported progress-bar position

    def absorb(self, body: dict) -> None:
        self.errors, self.fatal, self.progress, self.processing = [], [], [], 0  # each answer is the whole state
        for err in body.get("errors") or []:
            if isinstance(err, dict) and err.get("taskUUID") in (None, self.task_uuid):
                self.fatal.append(err)
        for item in body.get("data") or []:
            if not isinstance(item, dict) or item.get("taskUUID") not in (None, self.task_uuid):
                continue
            status = item.get("status")
            if status == "error" or isinstance(item.get("error"), dict):
                self.errors.append(item)
                self.seen = True
            elif status == "success" or item.get("outputs"):  # sync-style items may lack status
                for file in (item.get("outputs") or {}).get("files") or []:
                    if isinstance(file, dict) and file.get("url"):
                        self.successes.setdefault(file["url"], item)
                self.seen = True
            elif status == "processing":
                self.processing += 1
                self.seen = True
                if isinstance(item.get("progress"), (int, float)):
                    self.progress.append(float(item["progress"]))

    def finished(self) -> bool:
        """All results in, or a failure with nothing left running. Raises when nothing succeeded."""
        if len(self.successes) >= self.count:
            return True
        if self.fatal:
            if self.successes:
                self.errors = self.fatal
                return True
            raise task_error(self.fatal[0])
        if self.errors and not self.processing:
            if self.successes:
                return True  # keep the paid results that did arrive
            raise task_error(self.errors[0])
        return False

    def results(self) -> list[tuple[str, dict]]:
        return list(self.successes.items())[: self.count]

    def report(self, ctx) -> None:
        done = len(self.successes)
        share = (done + sum(self.progress) / 100) / self.count
        if not self.seen:
            ctx.progress("queued", 0, self.count, REMOTE_START, f"{PROVIDER}: queued")
            return
        text = f"{PROVIDER} generating"
        if self.count > 1:
            text += f": {done}/{self.count} done"
        if self.progress:
            text += f"{',' if self.count > 1 else ''} {max(self.progress):.0f}%"
        self.fraction = max(self.fraction, REMOTE_START + (DOWNLOAD_START - REMOTE_START) * min(share, 1.0))
        ctx.progress("remote", done, self.count, self.fraction, text)

    def note(self, ctx, text: str) -> None:
        """A transient problem while polling, shown without moving the bar."""
        ctx.progress("remote" if self.seen else "queued", len(self.successes), self.count, self.fraction, text)


def submit(client: Client, task: dict, tally: Tally) -> None:
    """Send the 3dInference task (retried on transient failures, never started twice)."""
    task_uuid = task["taskUUID"]
    client.ctx.progress("queued", 0, 1, REMOTE_START, f"Submitting to {PROVIDER}")
    body = client.post([task], "queued", REMOTE_START, acted=lambda: client.task_exists(task_uuid))
    if body is not None:
        tally.absorb(body)
        if tally.fatal or tally.errors:
            raise task_error((tally.fatal or tally.errors)[0])


def poll(client: Client, tally: Tally) -> list[tuple[str, dict]]:
    """getResponse until every result arrived; transient failures keep polling the same taskUUID."""
    ctx, opt = client.ctx, client.opt
    timeout = float(opt["poll_timeout"])
    deadline = time.monotonic() + timeout
    delays = remote.poll_delays(float(opt["poll_first"]), float(opt["poll_factor"]), float(opt["poll_cap"]))
    while not tally.finished():
        remote.sleep(min(next(delays), max(0.0, deadline - time.monotonic())), ctx)
        if time.monotonic() >= deadline:
            raise JobError(remote.TIMEOUT, f"{PROVIDER} did not finish within {timeout / 60:g} min (task "
                                           f"{tally.task_uuid}); it may still complete and be billed")
        try:
            status, body = remote.cancellable(lambda: client.poll_once(tally.task_uuid), ctx)
        except remote.NETWORK_ERRORS as exc:
            reason = remote.network_reason(exc)
            ctx.log(f"poll failed ({reason}); still polling task {tally.task_uuid}", "warning")
            tally.note(ctx, f"{PROVIDER} unreachable ({reason}), still polling")
            continue
        kind = remote.classify(status)
        if kind == remote.TRANSIENT or (kind == remote.OK and not isinstance(body, dict)):
            what = f"HTTP {status}" if kind == remote.TRANSIENT else "an answer that is not JSON"
            ctx.log(f"poll got {what}; still polling task {tally.task_uuid}", "warning")
            tally.note(ctx, f"{PROVIDER} busy ({what}), still polling")
            continue
        if kind == remote.BAD_REQUEST and _first_error(body):
            raise task_error(_first_error(body))  # e.g. taskFailedOrNotFound
        if kind != remote.OK:
            raise status_error(status, body)
        tally.absorb(body)
        tally.report(ctx)
    return tally.results()


def _run(job: dict, ctx, api_key: str) -> dict:
    settings = job["settings"]
    providers.RUNWARE.check(settings)
    client = Client(ctx, api_key, job.get("options") or {})
    count = settings["number_results"]
    resume = [t for t in (job.get("options") or {}).get("resume_tasks") or [] if isinstance(t, dict)
              and t.get("task_id")]
    if resume:  # submitted before Blender stopped: poll it again, never submit (or pay) twice
        task, image_bytes = {"taskUUID": str(resume[-1]["task_id"])}, 0
        tally = Tally(task["taskUUID"], count)
        ctx.remote_task("runware", task["taskUUID"], base_url=client.url, number_results=count, resumed=True)
        ctx.log(f"resuming task {task['taskUUID']}")
    else:
        rgba = inputs.load_rgba(job["input"]["rgba"])
        image, image_bytes = send_image(client, rgba)
        task = inference_task(settings, image, str(uuid.uuid4()))
        tally = Tally(task["taskUUID"], count)
        submit(client, task, tally)
        ctx.remote_task("runware", task["taskUUID"], base_url=client.url, number_results=count)
        ctx.log(f"submitted task {task['taskUUID']} ({image_bytes} image bytes, {client.sent} bytes sent)")
    items = poll(client, tally)
    if len(items) < count:
        ctx.log(f"{count - len(items)} of {count} results failed: {task_error(tally.errors[0])}", "warning")
    files, seeds, costs = [], [], []
    for index, (url, item) in enumerate(items):
        path = os.path.join(ctx.output_dir, f"result_{index}.glb")
        span = (DOWNLOAD_START + (1 - DOWNLOAD_START) * index / len(items),
                DOWNLOAD_START + (1 - DOWNLOAD_START) * (index + 1) / len(items))
        remote.download(url, path, ctx, stage="download", fraction_range=span,
                        text=f"Downloading result {index + 1}/{len(items)}", tries=int(client.opt["download_tries"]),
                        base=float(client.opt["retry_base"]), cap=float(client.opt["retry_cap"]))
        remote.check_glb(path, url)
        files.append(path)
        seed = item.get("seed")
        seeds.append(int(seed) if isinstance(seed, (int, float)) else settings["seed"] + index)
        if isinstance(item.get("cost"), (int, float)):
            costs.append(float(item["cost"]))
    return {"files": files, "seeds": seeds, "cost": round(sum(costs), 6) if costs else None,
            "info": {"task_uuid": task["taskUUID"], "image_bytes": image_bytes, "bytes_sent": client.sent,
                     "failed_results": count - len(items)}}


def run(job: dict, ctx) -> dict:
    api_key = str((job.get("secrets") or {}).get("api_key") or "").strip()
    if not api_key:
        raise JobError(remote.AUTH, "No Runware API key: set it in the add-on preferences or RUNWARE_API_KEY")
    safe = remote.ScrubbedContext(ctx, api_key)
    try:
        return _run(job, safe, api_key)
    except JobError as exc:
        raise JobError(exc.code, safe.scrub(str(exc))) from None
    except (Cancelled, KeyError, schema.SettingError):
        raise
    except Exception as exc:  # report without the key; the scrubbed traceback goes to the log
        print(safe.scrub(traceback.format_exc()), file=sys.stderr, flush=True)
        raise JobError(protocol.INTERNAL, safe.scrub(f"{type(exc).__name__}: {exc}")) from None
