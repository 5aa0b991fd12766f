"""Backend "Runware": TRELLIS.2 on Runware's REST API, as documented.

URL: the API root is registry default_url (https://api.runware.ai/v1); an override may be written with or
without the trailing /v1 (http.normalize_url). Every request is `POST {root}` itself with a JSON array of
tasks and `Authorization: Bearer KEY`. A 3dInference task with deliveryMethod "async" is acknowledged at
once; `getResponse` with the same taskUUID is then polled (1 s, x1.5, capped at 10 s, up to
options.poll_timeout) and answers cumulatively, one item per result (processing with progress %, success
with outputs.files[].url, seed and cost, or error); the job is done when numberResults successes arrived.
Each GLB is then streamed to output_dir/result_{i}.glb and checked.

Image: the prepared RGBA as PNG (hosted.image_png) in a data URI. Upload rule: a data URI of at most
options.inline_limit bytes (64 KiB) goes inline in the 3dInference task; a larger one is sent once with
an imageUpload task and the submit carries its 36-character imageUUID. The upload costs one extra small
request (~0.6 KB of headers and JSON), while every retried submit (429/503/504 from a full queue: the
common retries) would re-send an inline image; above 64 KiB the upload is smaller as soon as about 1
submit in 100 is retried.

A submit that fails where Runware may have accepted it (connection cut after sending, HTTP
500/502/504) is not blindly re-sent: a getResponse for the same taskUUID first checks whether the task
exists, so a paid task is neither lost nor started twice.

Options (protocol.HostedOptions): base_url, poll_timeout, poll_first/poll_factor/poll_cap, retry_*,
download_tries, read_timeout, inline_limit, resume_tasks ([{"task_id"}]: poll that task instead).
"""
from __future__ import annotations

import re
import uuid

from .. import registry, schema
from ..protocol import ErrorCode, HostedOptions, Job, JobError
from . import hosted, http
from .mapping import SEED_MAX, Knob, Mapping, nested, stage_knobs

INFO = registry.get("runware")
INLINE_LIMIT = HostedOptions().inline_limit
UUID_FORMAT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
HINTS = {"auth_fix": "check it in the add-on preferences or RUNWARE_API_KEY", "balance": "insufficient account balance",
         "balance_fix": "top up at runware.ai"}

MAPPINGS = {"generate": Mapping("runware", "Runware", (
    Knob("resolution", "resolution", choices=(512, 1024, 1536)),
    Knob("texture_size", "textureSize", 1024, 4096),  # multiples of 1024: 3072 too
    Knob("decimation_target", "decimationTarget", 100000, 1000000),
    Knob("remesh", "remesh"),
    Knob("seed", "seed", 0, SEED_MAX),
) + stage_knobs(nested({"sparse_structure": "sparseStructure", "shape_slat": "shapeSlat", "tex_slat": "texSlat"}),
                {"steps": (1, 50), "guidance_strength": (1, 10), "guidance_rescale": (0, 1), "rescale_t": (1, 6)}))}


# --- request bodies ------------------------------------------------------------------------------------

def settings_body(settings: dict) -> dict:
    """The task's `settings` object: the mapped model settings, a nested object per overridden stage."""
    body = MAPPINGS["generate"].request(schema.validate(settings))
    body.pop("seed", None)  # a top-level field of the task
    return body


def inference_task(settings: dict, image: str, task_uuid: str) -> dict:
    """The 3dInference task for validated flat settings: sampler stages only when overridden."""
    return {
        "taskType": "3dInference", "taskUUID": task_uuid, "model": INFO.model, "inputs": {"image": image},
        "seed": settings["seed"], "numberResults": settings["number_results"], "includeCost": True,
        "outputType": "URL", "outputFormat": "GLB", "deliveryMethod": "async", "settings": settings_body(settings),
    }


def upload_task(data_uri: str, task_uuid: str) -> dict:
    return {"taskType": "imageUpload", "taskUUID": task_uuid, "image": data_uri}


def poll_task(task_uuid: str) -> dict:
    return {"taskType": "getResponse", "taskUUID": task_uuid}


def use_upload(data_uri_bytes: int, inline_limit: int = INLINE_LIMIT) -> bool:
    """The upload rule (see the module docstring)."""
    return data_uri_bytes > inline_limit


# --- errors --------------------------------------------------------------------------------------------

def _first_error(body) -> dict:
    errors = body.get("errors") if isinstance(body, dict) else None
    return errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}


def status_error(status: int, body) -> JobError:
    """A one-line JobError for a non-transient HTTP status and Runware's `errors` body."""
    first = _first_error(body)
    param = first.get("parameter") if status == 400 else None
    return http.status_error("Runware", status, first.get("message"), HINTS, note=f"parameter {param}" if param else "")


def task_error(item: dict) -> JobError:
    """A failed task: an `error` item of getResponse, or an entry of a top-level `errors` array."""
    err = item.get("error") if isinstance(item.get("error"), dict) else item
    code = http.one_line(err.get("code"), 60) or "error"
    message = http.one_line(err.get("message")) or "no message"
    return JobError(ErrorCode.REMOTE, f"Runware task failed ({code}): {message}")


# --- the task's results --------------------------------------------------------------------------------

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

    def absorb(self, body: dict) -> None:
        self.errors, self.fatal, self.progress, self.processing = [], [], [], 0  # each answer is the whole state
        for err in hosted.array(body.get("errors"), "Runware", "errors"):
            if isinstance(err, dict) and err.get("taskUUID") in (None, self.task_uuid):
                self.fatal.append(err)
        for item in hosted.array(body.get("data"), "Runware", "data"):
            item = hosted.obj(item, "Runware", "data item")
            if item.get("taskUUID") not in (None, self.task_uuid):
                continue
            status = item.get("status")
            if status == "error" or isinstance(item.get("error"), dict):
                self.errors.append(item)
            elif status == "success" or item.get("outputs"):  # sync-style items may lack status
                outputs = hosted.obj(item.get("outputs"), "Runware", "outputs")
                for file in hosted.array(outputs.get("files"), "Runware", "outputs.files"):
                    url = hosted.obj(file, "Runware", "outputs.files item").get("url")
                    if not isinstance(url, str) or not url:
                        raise http.type_error("Runware", "file url", url)
                    self.successes.setdefault(url, item)
            elif status == "processing":
                self.processing += 1
                progress = hosted.number(item.get("progress"))
                if progress is not None:
                    self.progress.append(min(max(progress, 0.0), 100.0))
            else:
                continue
            self.seen = True

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

    def state(self) -> hosted.Poll:
        """The task as poll_all sees it."""
        if self.finished():
            return hosted.Poll("done", 1.0, list(self.successes.items())[: self.count])
        done = len(self.successes)
        return hosted.Poll("running", max(self.progress) / 100 if self.progress else None, queued=not self.seen,
                           done=done, work=done + sum(self.progress) / 100)


# --- calls ---------------------------------------------------------------------------------------------

def poll_one(client: http.Client, tally: Tally) -> hosted.Poll | None:
    """One getResponse folded into the tally; None for a transient answer (keep polling)."""
    status, body = client.once("POST", "", [poll_task(tally.task_uuid)])
    if status == 400 and _first_error(body):
        raise task_error(_first_error(body))  # e.g. taskFailedOrNotFound
    if hosted.transient(status, body, status_error):
        return None
    tally.absorb(body)
    return tally.state()


def task_exists(client: http.Client, task_uuid: str) -> bool:
    """Whether Runware knows the task (after a submit whose answer was lost). Unknown -> False."""
    try:
        status, body = http.cancellable(lambda: client.once("POST", "", [poll_task(task_uuid)]), client.ctx)
    except (http.Unusable, *http.NETWORK_ERRORS):
        return False
    if status != 200 or not isinstance(body, dict):
        return False
    errors, data = body.get("errors"), body.get("data")
    errors, data = errors if isinstance(errors, list) else [], data if isinstance(data, list) else []
    if any(e.get("taskUUID") in (None, task_uuid) for e in errors if isinstance(e, dict)):
        return False
    return any(isinstance(d, dict) and d.get("taskUUID") == task_uuid for d in data)


def send_image(client: http.Client, job: Job) -> tuple[str, int]:
    """(inputs.image value, PNG data URI bytes): the data URI itself, or the imageUUID of one upload."""
    uri = hosted.image_uri(job)
    if not use_upload(len(uri), int(client.opt.inline_limit)):
        return uri, len(uri)
    client.ctx.progress("upload", 0, 1, 0.01, f"Uploading image ({len(uri) / 1e6:.2f} MB)")
    task_uuid = str(uuid.uuid4())
    body = client.request("POST", "", [upload_task(uri, task_uuid)], stage="upload", fraction=0.01)
    items = [hosted.obj(d, "Runware", "data item") for d in hosted.array(body.get("data"), "Runware", "data")]
    item = next((d for d in items if d.get("taskUUID") == task_uuid), items[0] if len(items) == 1 else None)
    if item and not isinstance(item.get("imageUUID"), (str, type(None))):
        raise http.type_error("Runware", "imageUUID", item["imageUUID"])
    if not item or not item.get("imageUUID"):
        if body.get("errors"):
            raise task_error(_first_error(body))
        raise JobError(ErrorCode.REMOTE, "Runware imageUpload returned no imageUUID")
    client.ctx.progress("upload", 1, 1, hosted.REMOTE_START, "Image uploaded")
    return item["imageUUID"], len(uri)


def submit(client: http.Client, task: dict, tally: Tally) -> None:
    """Send the 3dInference task (retried on transient failures, never started twice)."""
    client.ctx.progress("queued", 0, 1, hosted.REMOTE_START, "Submitting to Runware")
    body = client.request("POST", "", [task], stage="queued", fraction=hosted.REMOTE_START,
                          acted=lambda: task_exists(client, task["taskUUID"]))
    if body is not None:
        tally.absorb(body)
        if tally.fatal or tally.errors:
            raise task_error((tally.fatal or tally.errors)[0])


def _run(job: Job, ctx, api_key: str) -> dict:
    settings, count = job.settings, job.settings["number_results"]
    client = http.Client(ctx, "Runware", job.options, INFO.default_url, {"Authorization": f"Bearer {api_key}"},
                         status_error, poll_first=1.0)
    task_ids, _ = hosted.resumed(job, ctx, "Runware", "taskUUID", UUID_FORMAT)
    if task_ids:  # submitted before Blender stopped: poll it again, never submit (or pay) twice
        task_uuid, image_bytes = task_ids[-1], 0
        tally = Tally(task_uuid, count)
    else:
        image, image_bytes = send_image(client, job)
        task_uuid = str(uuid.uuid4())
        tally = Tally(task_uuid, count)
        try:
            submit(client, inference_task(settings, image, task_uuid), tally)
        except http.Unusable:  # it arrived and may have been accepted: the task (our own UUID) stays resumable
            ctx.remote_task("runware", task_uuid, base_url=client.url, number_results=count, unconfirmed=True)
            raise
        ctx.remote_task("runware", task_uuid, base_url=client.url, number_results=count)
        ctx.log(f"submitted task {task_uuid} ({image_bytes} image bytes, {client.sent} bytes sent)")
    initial = {task_uuid: tally.state()} if tally.finished() else None
    states = hosted.poll_all(client, [task_uuid], lambda _: poll_one(client, tally), results={task_uuid: count},
                             initial=initial, noun="task")
    items = states[task_uuid].value
    if len(items) < count:
        ctx.log(f"{count - len(items)} of {count} results failed: {task_error(tally.errors[0])}", "warning")
    files, seeds, costs = [], [], []
    for index, (url, item) in enumerate(items):
        files.append(hosted.save_result(ctx, job.options, ("url", url), index, len(items), "Runware"))
        seeds.append(hosted.seed_or(item.get("seed"), settings["seed"] + index))
        costs.append(hosted.cost(item.get("cost"), "Runware", ctx))
    known = None if None in costs else round(sum(costs), 6)  # one unknown cost: the total is unknown
    return {"files": files, "seeds": seeds, "cost": known,
            "info": {"task_uuid": task_uuid, "image_bytes": image_bytes, "bytes_sent": client.sent,
                     "failed_results": count - len(items)}}


def run(job: Job, ctx) -> dict:
    [api_key] = hosted.credentials(job)
    return hosted.run_scrubbed(lambda j, safe: _run(j, safe, api_key), job, ctx, api_key)
