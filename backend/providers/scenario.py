"""Backend "Scenario": TRELLIS.2 (model_trellis-2) and its retexture model on Scenario's REST API.

URL: the API root is registry default_url (https://api.cloud.scenario.com/v1); an override may be written
with or without the trailing /v1 (http.normalize_url). Paths are relative to it.

Protocol (docs): Basic auth base64(API_KEY:API_SECRET). The image (and, to retexture, the mesh GLB) is
uploaded as an asset, `POST /assets {"image": data URI, "name"}` -> `{"asset":{"id"}}`; then
`POST /generate/custom/{model}` with the asset ids and camelCase parameters (MAPPINGS)
-> `{"job":{"jobId"}}`; `GET /jobs/{jobId}` -> `{"job":{"status","progress"?,"metadata":{"assetIds",
"error"?}}}` with status pending, queued, warming-up, in-progress, finalizing, then success, failure or
canceled; `GET /assets/{id}` -> `{"asset":{"url"}}`, a signed URL fetched without credentials.
`?dryRun=true` on the generate call answers `{"creativeUnitsCost": n}`: a quote, nothing generated.
Costs are creative units (registry cost_unit "CU"). One generate call makes one model: N results are N
jobs (seed, seed+1, ...). Uploading the mesh through `/assets` with a `data:model/gltf-binary` URI is
inferred (the docs show images).

Errors carry reason/message/error/detail (and traceId); 429 (with remainingSeconds), 500, 502, 503,
504 are retried. A generate call that may have been accepted (500/502/504, connection cut) is not
re-sent (it would be charged twice).

Options (protocol.HostedOptions): base_url, project_id, quote_only (answer the dryRun quote instead of
generating), poll_timeout, poll_first/poll_factor/poll_cap, retry_*, download_tries, read_timeout.
"""
from __future__ import annotations

import base64
import os

from .. import registry, schema
from ..protocol import ErrorCode, Job, JobError
from . import hosted, http
from .mapping import SEED_MAX, Knob, Mapping, camel, stage_knobs

INFO = registry.get("scenario")
MODELS = {"generate": INFO.model, "retexture": f"{INFO.model}-retexture"}
RUNNING = ("pending", "queued", "warming-up", "in-progress", "finalizing")
QUEUED = ("pending", "queued", "warming-up")
MAX_MESH_BYTES = 6 * 1000 * 1000  # /assets takes files below 6 MB
HINTS = {"key": "the API key and secret", "balance": "not enough creative units", "forbidden": "this key may not use "
         "TRELLIS.2", "auth_fix": "check them in the add-on preferences or SCENARIO_API_KEY / SCENARIO_API_SECRET"}

_SAMPLER = camel({"sparse_structure": "ss", "shape_slat": "shapeSlat", "tex_slat": "texSlat"})
_LIMITS = {"steps": (1, 50), "guidance_strength": (0, 10), "guidance_rescale": (0, 1), "rescale_t": (1, 6)}
MAPPINGS = {
    "generate": Mapping("scenario", "Scenario", (
        Knob("resolution", "resolution", choices=(512, 1024, 1536)),
        Knob("decimation_target", "decimationTarget", 100000, 2000000),
        Knob("texture_size", "textureSize", choices=(1024, 2048, 4096)),
        Knob("remesh", "remesh"),
        Knob("remesh_band", "remeshBand", 1, 4),
        Knob("seed", "seed", 0, SEED_MAX),
    ) + stage_knobs(_SAMPLER, _LIMITS, without=("shape_slat_rescale_t",))),  # its table has no shapeSlatRescaleT
    "retexture": Mapping("scenario_retexture", "Scenario Retexture", (
        Knob("resolution", "resolution", choices=(512, 1024)),
        Knob("texture_size", "textureSize", choices=(1024, 2048, 4096)),
        Knob("seed", "seed", 0, SEED_MAX),
    ) + stage_knobs(_SAMPLER, _LIMITS, stages=(schema.STAGES[2],))),
}


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
            return http.one_line(value)
    return ""


def status_error(status: int, body) -> JobError:
    trace = body.get("traceId") if isinstance(body, dict) else None
    return http.status_error("Scenario", status, _reason(body), HINTS, trace=http.one_line(trace, 80))


def wait_hint(response) -> float | None:
    """Retry-After, or the remainingSeconds a 429 body may carry."""
    hint = http.retry_after(response)
    if hint is None:
        body = http.read_json(response)
        seconds = body.get("remainingSeconds") if isinstance(body, dict) else None
        hint = hosted.number(seconds)
    return hint


def generate_body(mode: str, settings: dict, seed: int, image_asset: str, mesh_asset: str | None = None) -> dict:
    body = {"image": image_asset}
    if mode == "retexture":
        body["model"] = mesh_asset
    body.update(MAPPINGS[mode].request(dict(settings, seed=seed)))
    return body


def _not_again() -> bool:
    raise JobError(ErrorCode.REMOTE, "Scenario may have accepted the job but its answer was lost; not sending it "
                                     "again (it would be charged twice): check your Scenario jobs page")


def _keys(answer: dict) -> str:
    return http.one_line(", ".join(sorted(map(str, answer))))


def _job(answer: dict) -> dict:
    return hosted.obj(answer.get("job"), "Scenario", "job")


class Api:
    def __init__(self, ctx, job: Job, key: str, secret: str):
        self.ctx = ctx
        self.client = http.Client(ctx, "Scenario", job.options, INFO.default_url,
                                  {"Authorization": basic_auth(key, secret)}, status_error, wait_hint)
        project = job.options.project_id
        self.params = {"projectId": project} if project else None
        self.costs: list = []  # per submitted job: creative units, or None when not answered

    def call(self, method: str, path: str, body=None, stage: str = "queued", fraction: float = hosted.REMOTE_START,
             **kwargs) -> dict:
        params = dict(self.params or {}, **kwargs.pop("query", {})) or None
        return self.client.request(method, path, body, stage=stage, fraction=fraction, params=params, **kwargs)

    def upload(self, data_uri: str, name: str, fraction: float) -> str:
        self.ctx.progress("upload", 0, 1, fraction, f"Uploading {name} ({len(data_uri) / 1e6:.2f} MB)")
        body = self.call("POST", "/assets", {"image": data_uri, "name": name}, "upload", fraction)
        asset = hosted.obj(body.get("asset"), "Scenario", "asset")
        if not asset.get("id"):
            raise JobError(ErrorCode.REMOTE, f"Scenario stored {name} without an asset id (keys: {_keys(body)})")
        http.path_id("Scenario", "assetId", asset["id"])
        return asset["id"]

    def quote(self, model: str, body: dict) -> float:
        answer = self.call("POST", f"/generate/custom/{model}", body, query={"dryRun": "true"})
        cost = answer.get("creativeUnitsCost", _job(answer).get("creativeUnitsCost"))
        known = hosted.cost(cost, "Scenario", self.ctx, "CU")
        if known is None:
            raise JobError(ErrorCode.REMOTE, f"Scenario quote without a usable creativeUnitsCost (keys: "
                                             f"{_keys(answer)})")
        return known

    def submit(self, model: str, body: dict) -> str:
        answer = self.call("POST", f"/generate/custom/{model}", body, acted=_not_again)
        job = _job(answer)
        if not job.get("jobId"):
            raise JobError(ErrorCode.REMOTE, f"Scenario accepted the request without a jobId (keys: {_keys(answer)})")
        http.path_id("Scenario", "jobId", job["jobId"])
        self.costs.append(hosted.cost(answer.get("creativeUnitsCost", job.get("creativeUnitsCost")), "Scenario",
                                      self.ctx, "CU"))
        return job["jobId"]

    def poll_one(self, job_id: str) -> hosted.Poll | None:
        status, body = self.client.once("GET", f"/jobs/{http.path_id('Scenario', 'jobId', job_id)}")
        if hosted.transient(status, body, status_error):
            return None
        job = _job(body)
        state = job.get("status")
        if not isinstance(state, str):
            raise http.type_error("Scenario", "job status", state)
        state = state.lower()
        metadata = hosted.obj(job.get("metadata"), "Scenario", "job metadata")
        progress = hosted.number(job.get("progress"))
        if progress is not None and progress > 1:
            progress /= 100
        if state == "success":
            ids = [a for a in hosted.array(metadata.get("assetIds"), "Scenario", "assetIds") if a]
            for asset_id in ids:
                http.path_id("Scenario", "assetId", asset_id)
            if not ids:
                return hosted.Poll("failed", value=JobError(ErrorCode.BAD_OUTPUT,
                                                            f"Scenario job {job_id} succeeded without assetIds"))
            return hosted.Poll("done", 1.0, ids)
        if state in ("failure", "failed", "canceled", "cancelled"):
            error = metadata.get("error") or job.get("error")
            message = http.one_line(error.get("message") if isinstance(error, dict) else error) or "no message"
            return hosted.Poll("failed", value=JobError(ErrorCode.REMOTE, f"Scenario job {state}: {message}"))
        return hosted.Poll("running", progress, queued=state in QUEUED or state not in RUNNING)

    def asset_url(self, asset_ids: list[str]) -> str:
        """The signed URL of the job's 3D asset (the first one that looks like a GLB)."""
        assets = []
        for asset_id in asset_ids:
            body = self.call("GET", f"/assets/{http.path_id('Scenario', 'assetId', asset_id)}", stage="download",
                             fraction=hosted.DOWNLOAD_START)
            asset = hosted.obj(body.get("asset"), "Scenario", "asset")
            if not isinstance(asset.get("url"), (str, type(None))):
                raise http.type_error("Scenario", "asset url", asset["url"])
            if asset.get("url"):
                assets.append(asset)
        for asset in assets:
            if asset.get("kind") == "3d" or "gltf" in str(asset.get("mimeType", "")):
                return asset["url"]
        if assets:
            return assets[0]["url"]
        names = http.one_line(", ".join(asset_ids))
        raise JobError(ErrorCode.BAD_OUTPUT, f"Scenario result assets {names} have no url")


def mesh_data_uri(path: str) -> str:
    size = os.path.getsize(path)
    if size > MAX_MESH_BYTES:
        raise JobError(ErrorCode.BAD_INPUT, f"The mesh is {size / 1e6:.1f} MB; Scenario takes meshes below 6 MB: "
                                            "decimate it first")
    with open(path, "rb") as f:
        return "data:model/gltf-binary;base64," + base64.b64encode(f.read()).decode("ascii")


def _run(job: Job, ctx, key: str, secret: str) -> dict:
    settings, mode = job.settings, job.mode
    model = MODELS[mode]
    api = Api(ctx, job, key, secret)
    # submitted before Blender stopped: poll, never submit twice
    job_ids, seeds = hosted.resumed(job, ctx, "Scenario", "jobId")
    if job_ids:
        api.costs = [None] * len(job_ids)
        return _collect(ctx, api, job, job_ids, seeds, model)
    image_asset = api.upload(hosted.image_uri(job), "image.png", 0.01)
    mesh_asset = api.upload(mesh_data_uri(job.input["mesh"]), "mesh.glb", 0.03) if mode == "retexture" else None
    seeds = hosted.seeds(settings)
    bodies = [generate_body(mode, settings, seed, image_asset, mesh_asset) for seed in seeds]
    if job.options.quote_only:
        per_result = api.quote(model, bodies[0])
        ctx.log(f"quote: {per_result:g} CU per result, {len(seeds)} result(s)")
        return {"files": [], "seeds": [], "cost": per_result * len(seeds),
                "info": {"quote": True, "cost_per_result": per_result, "number_results": len(seeds)}}
    job_ids = hosted.submit_each(ctx, api.client, job, bodies, lambda body: api.submit(model, body), mode=mode)
    ctx.log(f"submitted {', '.join(job_ids)} ({model})")
    return _collect(ctx, api, job, job_ids, seeds, model)


def _collect(ctx, api: Api, job: Job, job_ids: list[str], seeds: list[int], model: str) -> dict:
    """Poll the submitted jobs, download each success's GLB."""
    done, asset_ids, failed = hosted.finished(ctx, api.client, job_ids, api.poll_one)
    files = [hosted.save_result(ctx, job.options, ("url", api.asset_url(ids)), n, len(done), "Scenario")
             for n, ids in enumerate(asset_ids)]
    known = [api.costs[i] for i in done]
    return {"files": files, "seeds": [seeds[i] for i in done], "cost": None if None in known else sum(known),
            "info": {"job_ids": job_ids, "failed_results": failed, "mode": job.mode, "model": model,
                     "bytes_sent": api.client.sent}}


def run(job: Job, ctx) -> dict:
    key, secret = hosted.credentials(job)
    token = basic_auth(key, secret)[6:]
    return hosted.run_scrubbed(lambda j, safe: _run(j, safe, key, secret), job, ctx, key, secret, token)
