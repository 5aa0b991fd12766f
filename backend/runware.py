"""Backend "Runware": TRELLIS.2 (microsoft:trellis-2@4b) on Runware's REST API, as documented.

POST {base_url} with a JSON array of tasks and `Authorization: Bearer KEY`; a 3dInference task with
deliveryMethod "async" is acknowledged at once and polled with getResponse until every result
succeeded; each GLB is then downloaded and checked. Options (job["options"]): base_url, poll_timeout
(s), poll_first/poll_factor/poll_cap (s), retry_tries/retry_base/retry_cap, inline_limit (bytes).
"""
from __future__ import annotations

import os
import time
import uuid

import requests

from . import inputs, remote, schema
from .worker import JobError

PROVIDER = "Runware"
MODEL = "microsoft:trellis-2@4b"
DEFAULT_URL = "https://api.runware.ai/v1"
# Above this the image is sent once with imageUpload and referenced by UUID, so a retried submit
# (429/5xx) does not send it again.
INLINE_LIMIT = 256 * 1024

DEFAULTS = {"base_url": DEFAULT_URL, "poll_timeout": 1200.0, "poll_first": 1.0, "poll_factor": 1.5,
            "poll_cap": 10.0, "retry_tries": 4, "retry_base": 1.0, "retry_cap": 30.0,
            "inline_limit": INLINE_LIMIT}


def inference_task(settings: dict, image: str, task_uuid: str) -> dict:
    """The 3dInference task for validated flat settings: only what the user set."""
    return {
        "taskType": "3dInference", "taskUUID": task_uuid, "model": MODEL, "inputs": {"image": image},
        "seed": settings["seed"], "numberResults": settings["number_results"], "includeCost": True,
        "outputType": "URL", "outputFormat": "GLB", "deliveryMethod": "async",
        "settings": schema.model_request(settings),
    }


class Client:
    def __init__(self, ctx, api_key: str, options: dict):
        self.ctx = ctx
        self.opt = dict(DEFAULTS, **{k: v for k, v in options.items() if v not in (None, "")})
        self.url = self.opt["base_url"].rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})

    def post(self, tasks: list, stage: str, fraction: float) -> dict:
        """POST with retries for transient failures; errors mapped to one-line JobErrors."""
        response = remote.request_with_retries(
            lambda: self.session.post(self.url, json=tasks, timeout=(10, 120)), self.ctx, provider=PROVIDER,
            tries=int(self.opt["retry_tries"]), base=self.opt["retry_base"], cap=self.opt["retry_cap"],
            stage=stage, fraction=fraction)
        return self.parse(response)

    def parse(self, response: requests.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200 and isinstance(body, dict):
            return body
        raise status_error(response.status_code, body)


def status_error(status: int, body) -> JobError:
    first = (body.get("errors") or [{}])[0] if isinstance(body, dict) else {}
    message = str(first.get("message") or "").strip().rstrip(".")
    detail = f": {message}" if message else ""
    if status == 400:
        param = first.get("parameter")
        where = f" (parameter {param})" if param else ""
        return JobError(remote.BAD_REQUEST, f"{PROVIDER} rejected the request{where}{detail}")
    if status == 401:
        return JobError(remote.AUTH, f"{PROVIDER} rejected the API key (HTTP 401): check it in the add-on "
                                     "preferences or RUNWARE_API_KEY")
    if status == 402:
        return JobError(remote.BALANCE, f"{PROVIDER}: insufficient account balance (HTTP 402): top up at runware.ai")
    if status == 403:
        return JobError(remote.FORBIDDEN, f"{PROVIDER}: this API key may not use TRELLIS.2 (HTTP 403){detail}")
    return JobError(remote.REMOTE, f"{PROVIDER} answered HTTP {status}{detail}")


def task_error(item: dict) -> JobError:
    err = item.get("error") if isinstance(item.get("error"), dict) else item
    code = err.get("code") or "error"
    message = str(err.get("message") or "no message").strip().rstrip(".")
    return JobError(remote.REMOTE, f"{PROVIDER} task failed ({code}): {message}")


def send_image(client: Client, rgba) -> tuple[str, int]:
    """The image reference for inputs.image and the bytes it took: inline data URI when small,
    otherwise one imageUpload and its UUID."""
    uri = inputs.data_uri(inputs.png_bytes(rgba))
    if len(uri) <= client.opt["inline_limit"]:
        return uri, len(uri)
    client.ctx.progress("upload", 0, 1, 0.01, f"Uploading image ({len(uri) / 1e6:.1f} MB)")
    task_uuid = str(uuid.uuid4())
    body = client.post([{"taskType": "imageUpload", "taskUUID": task_uuid, "image": uri}], "upload", 0.01)
    item = next((d for d in body.get("data", []) if d.get("taskUUID") == task_uuid), None)
    if not item or not item.get("imageUUID"):
        raise JobError(remote.REMOTE, f"{PROVIDER} imageUpload returned no imageUUID (keys: {sorted(body)})")
    client.ctx.progress("upload", 1, 1, 0.05, "Image uploaded")
    return item["imageUUID"], len(uri)


def poll(client: Client, task_uuid: str, count: int) -> list[dict]:
    """getResponse until `count` success items; transient failures keep polling the same task."""
    ctx, opt = client.ctx, client.opt
    deadline = time.monotonic() + float(opt["poll_timeout"])
    delay = float(opt["poll_first"])
    successes: dict[str, dict] = {}
    while True:
        remote.sleep(min(delay, max(0.0, deadline - time.monotonic())), ctx)
        if time.monotonic() >= deadline:
            minutes = float(opt["poll_timeout"]) / 60
            raise JobError(remote.TIMEOUT, f"{PROVIDER} did not finish within {minutes:g} min (task {task_uuid}); "
                                           "it may still complete and be billed")
        delay = min(delay * float(opt["poll_factor"]), float(opt["poll_cap"]))
        try:
            response = client.session.post(client.url, json=[{"taskType": "getResponse", "taskUUID": task_uuid}],
                                           timeout=(10, 60))
        except (requests.ConnectionError, requests.Timeout) as exc:
            ctx.log(f"poll failed ({remote.network_reason(exc)}); still polling task {task_uuid}", "warning")
            continue
        if response.status_code in remote.TRANSIENT_STATUS:
            ctx.progress("remote", 0, 0, 0.05, f"{PROVIDER} busy (HTTP {response.status_code}), still polling")
            continue
        body = client.parse(response)
        for err in body.get("errors") or []:
            if err.get("taskUUID") in (None, task_uuid):
                raise task_error(err)
        progress = []
        for item in body.get("data") or []:
            if item.get("taskUUID") not in (None, task_uuid):
                continue
            status = item.get("status")
            if status == "error" or item.get("error"):
                raise task_error(item)
            if status == "success" or item.get("outputs"):
                for file in (item.get("outputs") or {}).get("files") or []:
                    if file.get("url"):
                        successes.setdefault(file["url"], item)
            elif item.get("progress") is not None:
                progress.append(float(item["progress"]))
        done = len(successes)
        if done >= count:
            return list(successes.items())[:count]
        share = (done + (sum(progress) / 100 if progress else 0)) / count
        text = f"{PROVIDER} generating: {done}/{count} done" if count > 1 else f"{PROVIDER} generating"
        if progress:
            text += f", {max(progress):.0f}%"
        ctx.progress("remote", done, count, 0.05 + 0.8 * min(share, 1.0), text)


def run(job: dict, ctx) -> dict:
    api_key = (job.get("secrets") or {}).get("api_key")
    if not api_key:
        raise JobError(remote.AUTH, "No Runware API key: set it in the add-on preferences or RUNWARE_API_KEY")
    client = Client(ctx, api_key, job.get("options") or {})
    settings = job["settings"]
    rgba = inputs.load_rgba(job["input"]["rgba"])
    image, sent = send_image(client, rgba)
    task_uuid = str(uuid.uuid4())
    ctx.progress("queued", 0, 1, 0.05, f"Submitting to {PROVIDER}")
    body = client.post([inference_task(settings, image, task_uuid)], "queued", 0.05)
    for err in body.get("errors") or []:
        raise task_error(err)
    count = settings["number_results"]
    ctx.remote_task("runware", task_uuid, base_url=client.url, number_results=count)
    ctx.log(f"submitted task {task_uuid} ({sent} image bytes)")
    items = poll(client, task_uuid, count)
    files, seeds, cost = [], [], 0.0
    for index, (url, item) in enumerate(items):
        path = os.path.join(ctx.output_dir, f"result_{index}.glb")
        span = (0.85 + 0.15 * index / count, 0.85 + 0.15 * (index + 1) / count)
        remote.download(client.session, url, path, ctx, stage="download", fraction_range=span,
                        text=f"Downloading result {index + 1}/{count}",
                        tries=int(client.opt["retry_tries"]), base=client.opt["retry_base"],
                        cap=client.opt["retry_cap"])
        remote.check_glb(path, url)
        files.append(path)
        seeds.append(int(item.get("seed", settings["seed"] + index)))
        cost += float(item.get("cost") or 0.0)
    return {"files": files, "seeds": seeds, "cost": round(cost, 6),
            "info": {"task_uuid": task_uuid, "image_bytes": sent}}
