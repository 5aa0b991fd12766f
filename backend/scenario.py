"""Backend "Scenario": TRELLIS.2 (model_trellis-2) and its retexture model on Scenario's REST API.

Protocol (docs): Basic auth base64(API_KEY:API_SECRET). The image (and, to retexture, the mesh GLB) is
uploaded as an asset, `POST /assets {"image": data URI, "name"}` -> `{"asset":{"id"}}`; then
`POST /generate/custom/{model}` with the asset ids and camelCase parameters (backend/providers.py)
-> `{"job":{"jobId"}}`; `GET /jobs/{jobId}` -> `{"job":{"status","progress"?,"metadata":{"assetIds",
"error"?}}}` with status pending, queued, warming-up, in-progress, finalizing, then success, failure or
canceled; `GET /assets/{id}` -> `{"asset":{"url"}}`, a signed URL fetched without credentials.
`?dryRun=true` on the generate call answers `{"creativeUnitsCost": n}`: a quote, nothing generated.
Costs are creative units (CU), reported with cost_unit "CU". One generate call makes one model: N
results are N jobs (seed, seed+1, ...). Uploading the mesh through `/assets` with a
`data:model/gltf-binary` URI is inferred (the docs show images).

Errors carry reason/message/error/detail (and traceId); 429 (with remainingSeconds), 500, 502, 503,
504 are retried. A generate call that may have been accepted (500/502/504, connection cut) is not
re-sent (it would be charged twice).

Options (job["options"]): base_url, project_id, quote_only (bool: answer the dryRun quote instead of
generating), poll_timeout (s), poll_first/poll_factor/poll_cap (s), retry_tries/retry_base/retry_cap,
download_tries, read_timeout (s).
"""
from __future__ import annotations

import base64
import os

from . import hosted, inputs, protocol, providers, remote, runware
from .worker import JobError

PROVIDER = "Scenario"
DEFAULT_URL = "https://api.cloud.scenario.com/v1"
MODELS = {"generate": "model_trellis-2", "retexture": "model_trellis-2-retexture"}
MAPPINGS = {"generate": providers.SCENARIO, "retexture": providers.SCENARIO_RETEXTURE}
RUNNING = ("pending", "queued", "warming-up", "in-progress", "finalizing")
QUEUED = ("pending", "queued", "warming-up")
MAX_MESH_BYTES = 6 * 1000 * 1000  # /assets takes files below 6 MB


def basic_auth(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode("ascii")


def _reason(body) -> str:
    if not isinstance(body, dict):
        return ""
    for key in ("message", "reason", "error", "detail"):
        value = body.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("reason")
        if isinstance(value, str) and value.strip():
            return hosted.one_line(value)
    return ""


def status_error(status: int, body) -> JobError:
    message = _reason(body)
    detail = f": {message}" if message else ""
    trace = body.get("traceId") if isinstance(body, dict) else None
    trace_text = f" (trace {trace})" if trace else ""
    kind = remote.classify(status)
    if kind == remote.AUTH:
        return JobError(kind, f"{PROVIDER} rejected the API key and secret (HTTP 401): check them in the add-on "
                              "preferences or SCENARIO_API_KEY / SCENARIO_API_SECRET")
    if kind == remote.BALANCE:
        return JobError(kind, f"{PROVIDER}: not enough creative units (HTTP 402){detail}")
    if status == 429:
        return JobError(remote.NETWORK, f"{PROVIDER} rate limit reached (HTTP 429){detail}")
    if kind == remote.BAD_REQUEST:
        return JobError(kind, f"{PROVIDER} rejected the request{detail}{trace_text}")
    if kind == remote.FORBIDDEN:
        return JobError(kind, f"{PROVIDER}: this key may not use TRELLIS.2 (HTTP 403){detail}")
    return JobError(kind if kind not in (remote.OK, remote.TRANSIENT) else remote.REMOTE,
                    f"{PROVIDER} answered HTTP {status}{detail}{trace_text}")


def wait_hint(response) -> float | None:
    """Retry-After, or the remainingSeconds a 429 body may carry."""
    hint = remote.retry_after(response)
    if hint is None:
        body = remote.read_json(response)
        seconds = body.get("remainingSeconds") if isinstance(body, dict) else None
        hint = float(seconds) if isinstance(seconds, (int, float)) else None
    return hint


def generate_body(mode: str, settings: dict, seed: int, image_asset: str, mesh_asset: str | None = None) -> dict:
    body = {"image": image_asset}
    if mode == "retexture":
        body["model"] = mesh_asset
    body.update(MAPPINGS[mode].request(dict(settings, seed=seed)))
    return body


def _not_again() -> bool:
    raise JobError(remote.REMOTE, f"{PROVIDER} may have accepted the job but its answer was lost; not sending it "
                                  "again (it would be charged twice): check your Scenario jobs page")


class Api:
    def __init__(self, ctx, options: dict, key: str, secret: str):
        self.ctx = ctx
        self.client = hosted.Client(ctx, PROVIDER, options, {"base_url": DEFAULT_URL},
                                    {"Authorization": basic_auth(key, secret)}, status_error, wait_hint)
        project = options.get("project_id")
        self.params = {"projectId": project} if project else None

    def upload(self, data_uri: str, name: str, fraction: float) -> str:
        self.ctx.progress("upload", 0, 1, fraction, f"Uploading {name} ({len(data_uri) / 1e6:.2f} MB)")
        body = self.client.request("POST", "/assets", {"image": data_uri, "name": name}, stage="upload",
                                   fraction=fraction, params=self.params)
        asset = body.get("asset") if isinstance(body.get("asset"), dict) else {}
        if not asset.get("id"):
            raise JobError(remote.REMOTE, f"{PROVIDER} stored {name} without an asset id "
                                          f"(keys: {', '.join(sorted(map(str, body)))})")
        return str(asset["id"])

    def quote(self, model: str, body: dict) -> float:
        answer = self.client.request("POST", f"/generate/custom/{model}", body, stage="queued",
                                     fraction=hosted.REMOTE_START, params=dict(self.params or {}, dryRun="true"))
        cost = answer.get("creativeUnitsCost")
        if not isinstance(cost, (int, float)):
            job = answer.get("job") if isinstance(answer.get("job"), dict) else {}
            cost = job.get("creativeUnitsCost")
        if not isinstance(cost, (int, float)):
            raise JobError(remote.REMOTE, f"{PROVIDER} quote without creativeUnitsCost "
                                          f"(keys: {', '.join(sorted(map(str, answer)))})")
        return float(cost)

    def submit(self, model: str, body: dict) -> tuple[str, float | None]:
        answer = self.client.request("POST", f"/generate/custom/{model}", body, stage="queued",
                                     fraction=hosted.REMOTE_START, params=self.params, acted=_not_again)
        job = answer.get("job") if isinstance(answer.get("job"), dict) else {}
        if not job.get("jobId"):
            raise JobError(remote.REMOTE, f"{PROVIDER} accepted the request without a jobId "
                                          f"(keys: {', '.join(sorted(map(str, answer)))})")
        cost = answer.get("creativeUnitsCost", job.get("creativeUnitsCost"))
        return str(job["jobId"]), float(cost) if isinstance(cost, (int, float)) else None

    def poll_one(self, job_id: str) -> hosted.Poll | None:
        status, body = self.client.get_once(f"/jobs/{job_id}")
        if hosted.transient_or_raise(status, body, status_error):
            return None
        job = body.get("job") if isinstance(body.get("job"), dict) else {}
        state = str(job.get("status") or "").lower()
        metadata = job.get("metadata") if isinstance(job.get("metadata"), dict) else {}
        progress = job.get("progress")
        progress = float(progress) if isinstance(progress, (int, float)) else None
        if progress is not None and progress > 1:
            progress /= 100
        if state == "success":
            ids = [str(a) for a in metadata.get("assetIds") or [] if a]
            if not ids:
                return hosted.Poll("failed", value=JobError(remote.BAD_OUTPUT,
                                                            f"{PROVIDER} job {job_id} succeeded without assetIds"))
            return hosted.Poll("done", 1.0, ids)
        if state in ("failure", "failed", "canceled", "cancelled"):
            error = metadata.get("error") or job.get("error")
            message = hosted.one_line(error.get("message") if isinstance(error, dict) else error) or "no message"
            return hosted.Poll("failed", value=JobError(remote.REMOTE, f"{PROVIDER} job {state}: {message}"))
        return hosted.Poll("running", progress, queued=state in QUEUED or state not in RUNNING)

    def asset_url(self, asset_ids: list[str]) -> str:
        """The signed URL of the job's 3D asset (the first one that looks like a GLB)."""
        assets = []
        for asset_id in asset_ids:
            body = self.client.request("GET", f"/assets/{asset_id}", stage="download", fraction=hosted.DOWNLOAD_START,
                                       params=self.params)
            asset = body.get("asset") if isinstance(body.get("asset"), dict) else {}
            if asset.get("url"):
                assets.append(asset)
        for asset in assets:
            if asset.get("kind") == "3d" or "gltf" in str(asset.get("mimeType", "")):
                return asset["url"]
        if assets:
            return assets[0]["url"]
        raise JobError(remote.BAD_OUTPUT, f"{PROVIDER} result assets {', '.join(asset_ids)} have no url")


def mesh_data_uri(path: str) -> str:
    size = os.path.getsize(path)
    if size > MAX_MESH_BYTES:
        raise JobError(protocol.BAD_INPUT, f"The mesh is {size / 1e6:.1f} MB; {PROVIDER} takes meshes below 6 MB: "
                                           "decimate it first")
    with open(path, "rb") as f:
        return "data:model/gltf-binary;base64," + base64.b64encode(f.read()).decode("ascii")


def _run(job: dict, ctx, key: str, secret: str) -> dict:
    settings = job["settings"]
    mode = job.get("mode", "generate")
    if mode not in MODELS:
        raise JobError(protocol.BAD_SETTINGS, f"{PROVIDER}: unknown job mode {mode!r}")
    MAPPINGS[mode].check(settings)
    options = job.get("options") or {}
    api = Api(ctx, options, key, secret)
    resumed = hosted.resumed_tasks(options, ctx)  # submitted before Blender stopped: poll, never submit twice
    if resumed:
        job_ids, seeds = [str(t["task_id"]) for t in resumed], [int(t.get("seed", settings["seed"])) for t in resumed]
        return _collect(ctx, api, job_ids, seeds, [None] * len(job_ids), mode, MODELS[mode])
    image = inputs.data_uri(runware.image_png(inputs.load_rgba(job["input"]["rgba"])))
    mesh_uri = mesh_data_uri(job["input"]["mesh"]) if mode == "retexture" else None
    image_asset = api.upload(image, "image.png", 0.01)
    mesh_asset = api.upload(mesh_uri, "mesh.glb", 0.03) if mesh_uri else None
    count = settings["number_results"]
    seeds = [(settings["seed"] + i) % (providers.SEED_MAX + 1) for i in range(count)]
    bodies = [generate_body(mode, settings, seed, image_asset, mesh_asset) for seed in seeds]
    model = MODELS[mode]
    if options.get("quote_only"):
        per_result = api.quote(model, bodies[0])
        ctx.log(f"quote: {per_result:g} CU per result, {count} result(s)")
        return {"files": [], "seeds": [], "cost": per_result * count, "cost_unit": "CU",
                "info": {"quote": True, "cost_per_result": per_result, "number_results": count}}
    job_ids, costs = [], []
    for index, body in enumerate(bodies):
        ctx.progress("queued", index, count, hosted.REMOTE_START,
                     f"Submitting to {PROVIDER}" + (f" ({index + 1}/{count})" if count > 1 else ""))
        job_id, cost = api.submit(model, body)
        ctx.remote_task("scenario", job_id, base_url=api.client.url, seed=seeds[index], index=index, mode=mode)
        job_ids.append(job_id)
        costs.append(cost)
    ctx.log(f"submitted {', '.join(job_ids)} ({model})")
    return _collect(ctx, api, job_ids, seeds, costs, mode, model)


def _collect(ctx, api: Api, job_ids: list[str], seeds: list[int], costs: list, mode: str, model: str) -> dict:
    """Poll the submitted jobs, download each success's GLB."""
    count = len(job_ids)
    states = hosted.poll_all(api.client, job_ids, api.poll_one)
    done = [i for i, job_id in enumerate(job_ids) if states[job_id].state == "done"]
    failed = [states[j].value for j in job_ids if states[j].state == "failed"]
    if not done:
        raise failed[0]
    if failed:
        ctx.log(f"{len(failed)} of {count} results failed: {failed[0]}", "warning")
    files = []
    for n, i in enumerate(done):
        url = api.asset_url(states[job_ids[i]].value)
        files.append(hosted.save_result(ctx, api.client, ("url", url), n, len(done)))
    known = [costs[i] for i in done if costs[i] is not None]
    return {"files": files, "seeds": [seeds[i] for i in done], "cost": sum(known) if known else None,
            "cost_unit": "CU", "info": {"job_ids": job_ids, "failed_results": len(failed), "mode": mode,
                                        "model": model, "bytes_sent": api.client.sent}}


def run(job: dict, ctx) -> dict:
    secrets = job.get("secrets") or {}
    key, secret = (str(secrets.get(name) or "").strip() for name in ("api_key", "api_secret"))
    if not key or not secret:
        raise JobError(remote.AUTH, "No Scenario API key and secret: set both in the add-on preferences or "
                                    "SCENARIO_API_KEY and SCENARIO_API_SECRET")
    token = basic_auth(key, secret)[6:]
    return hosted.run_scrubbed(lambda j, safe: _run(j, safe, key, secret), job, ctx, key, secret, token)
