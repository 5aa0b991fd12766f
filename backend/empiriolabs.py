"""Backend "EmpirioLabs": TRELLIS.2 (trellis-2-4b) on EmpirioLabs' REST API.

Protocol (docs): `POST {base}/v1/3d/generations` with `Authorization: Bearer KEY` and snake_case
parameters (backend/providers.py EMPIRIOLABS) answers `{"job_id","status","poll_url",...}`;
`GET {base}/v1/jobs/{job_id}` answers `{job_id,status,progress 0..1,result,error}` with status queued,
processing, completed or failed (cancelled inferred). One request makes one model, so N results are N
jobs with seeds seed, seed+1, ... submitted one after another and polled together.

The shape of `result` for 3D is not documented: a URL field (url, glb_url, model_url, file_url,
output_url), a files/outputs/data list of such objects or strings (OpenAI-style data[0].url), or base64
(b64_json, glb_base64) are accepted; anything else fails with a message listing the body's keys.
Errors use an OpenAI-style envelope `{"error":{"message","type","code"}}`; 429 (50 requests/min) and
5xx before acceptance are retried with backoff. A submit that may have been accepted (HTTP 500/502/504
or a connection cut after sending) is not re-sent: the API has no way to find the job, and a second
one would be billed too.

Options (job["options"]): base_url, poll_timeout (s), poll_first/poll_factor/poll_cap (s),
retry_tries/retry_base/retry_cap, download_tries, read_timeout (s).
"""
from __future__ import annotations

from . import hosted, inputs, providers, registry, remote, runware
from .worker import JobError

PROVIDER = "EmpirioLabs"
MODEL = registry.BY_ID["empiriolabs"].model
DEFAULT_URL = "https://api.empiriolabs.ai"
PIPELINE_TYPES = {512: "512", 1024: "1024_cascade", 1536: "1536_cascade"}
PRICE_USD = {512: 0.025, 1024: 0.249, 1536: 0.499}  # per generated asset, published price list

URL_KEYS = ("url", "glb_url", "model_url", "file_url", "output_url", "download_url")
B64_KEYS = ("b64_json", "glb_base64", "b64", "base64")
LIST_KEYS = ("files", "outputs", "data", "assets", "output")


def generation_body(settings: dict, image: str, seed: int) -> dict:
    body = {"model": MODEL, "image": image, "response_format": "url"}
    body.update(providers.EMPIRIOLABS.request(dict(settings, seed=seed)))
    body["pipeline_type"] = PIPELINE_TYPES[settings["resolution"]]
    return body


def _error_fields(body) -> tuple[str, str]:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or err.get("type") or ""), hosted.one_line(err.get("message"))
    if isinstance(err, str):
        return "", hosted.one_line(err)
    if isinstance(body, dict):
        return str(body.get("code") or ""), hosted.one_line(body.get("message") or body.get("detail"))
    return "", ""


def status_error(status: int, body) -> JobError:
    code, message = _error_fields(body)
    detail = f": {message}" if message else ""
    kind = remote.classify(status)
    if kind == remote.AUTH:
        return JobError(kind, f"{PROVIDER} rejected the API key (HTTP 401): check it in the add-on preferences "
                              "or EMPIRIOLABS_API_KEY")
    if kind == remote.BALANCE:
        return JobError(kind, f"{PROVIDER}: insufficient credits (HTTP 402): top up at empiriolabs.ai")
    if status == 429:
        return JobError(remote.NETWORK, f"{PROVIDER} rate limit reached (HTTP 429, 50 requests/min): try again "
                                        "in a minute")
    if kind == remote.BAD_REQUEST:
        return JobError(kind, f"{PROVIDER} rejected the request{detail}")
    if kind == remote.FORBIDDEN:
        return JobError(kind, f"{PROVIDER}: this API key may not use {MODEL} (HTTP 403){detail}")
    if kind == remote.NOT_FOUND:
        return JobError(kind, f"{PROVIDER} answered HTTP 404{f' ({code})' if code else ''}{detail}")
    return JobError(kind if kind not in (remote.OK, remote.TRANSIENT) else remote.REMOTE,
                    f"{PROVIDER} answered HTTP {status}{detail}")


def result_source(result, keys_of) -> tuple[str, str]:
    """("url", url) or ("b64", data) from a completed job's result; JobError naming the keys otherwise."""
    if isinstance(result, str) and result:
        return ("url", result) if result.startswith(("http://", "https://")) else ("b64", result)
    if isinstance(result, dict):
        for key in URL_KEYS:
            if isinstance(result.get(key), str) and result[key]:
                return "url", result[key]
        for key in B64_KEYS:
            if isinstance(result.get(key), str) and result[key]:
                return "b64", result[key]
        for key in LIST_KEYS:
            items = result.get(key)
            if isinstance(items, dict):
                items = [items]
            if isinstance(items, list):
                for item in items:
                    try:
                        return result_source(item, keys_of)
                    except JobError:
                        continue
    if isinstance(result, list):
        for item in result:
            try:
                return result_source(item, keys_of)
            except JobError:
                continue
    raise JobError(remote.BAD_OUTPUT, f"{PROVIDER} finished without a GLB URL or data in a form this add-on "
                                      f"knows (job keys: {keys_of}; result: {_shape(result)})")


def _shape(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(sorted(map(str, value))) + "}"
    if isinstance(value, list):
        return f"list of {len(value)}"
    return type(value).__name__


def poll_one(client: hosted.Client, job_id: str) -> hosted.Poll | None:
    status, body = client.get_once(f"/v1/jobs/{job_id}")
    if hosted.transient_or_raise(status, body, status_error):
        return None
    state = str(body.get("status") or "").lower()
    progress = body.get("progress")
    progress = float(progress) if isinstance(progress, (int, float)) else None
    if progress is not None and progress > 1:
        progress /= 100  # tolerate percent
    if state in ("completed", "succeeded", "success"):
        keys = ", ".join(sorted(map(str, body)))
        return hosted.Poll("done", 1.0, result_source(body.get("result"), keys))
    if state in ("failed", "cancelled", "canceled", "error"):
        code, message = _error_fields(body)
        what = f" ({code})" if code else ""
        return hosted.Poll("failed", value=JobError(remote.REMOTE, f"{PROVIDER} job {state}{what}: "
                                                                   f"{message or 'no message'}"))
    return hosted.Poll("running", progress, queued=state in ("queued", "pending"))


def _not_again() -> bool:
    raise JobError(remote.REMOTE, f"{PROVIDER} may have accepted the job but its answer was lost; not sending it "
                                  "again (it would be billed twice): check your EmpirioLabs dashboard")


def _submit(client: hosted.Client, ctx, settings: dict, rgba_path: str) -> tuple[list[str], list[int]]:
    """One generation per result (seed, seed+1, ...), each announced as soon as it is accepted:
    (job ids, seeds)."""
    image = inputs.data_uri(runware.image_png(inputs.load_rgba(rgba_path)))
    count = settings["number_results"]
    job_ids, seeds = [], []
    for index in range(count):
        seed = (settings["seed"] + index) % (providers.SEED_MAX + 1)
        text = f"Submitting to {PROVIDER}" + (f" ({index + 1}/{count})" if count > 1 else "")
        ctx.progress("queued", index, count, hosted.REMOTE_START, text)
        body = client.request("POST", "/v1/3d/generations", generation_body(settings, image, seed), stage="queued",
                              fraction=hosted.REMOTE_START, acted=_not_again)
        job_id = str(body.get("job_id") or body.get("id") or "")
        if not job_id:
            raise JobError(remote.REMOTE, f"{PROVIDER} accepted the request without a job_id "
                                          f"(keys: {', '.join(sorted(map(str, body)))})")
        ctx.remote_task("empiriolabs", job_id, base_url=client.url, seed=seed, index=index)
        job_ids.append(job_id)
        seeds.append(seed)
    ctx.log(f"submitted {', '.join(job_ids)} ({len(image)} image bytes each)")
    return job_ids, seeds


def _run(job: dict, ctx, api_key: str) -> dict:
    settings = job["settings"]
    if job.get("mode", "generate") != "generate":
        raise JobError("bad_settings", f"{PROVIDER} cannot retexture a mesh: use Scenario or the local GPU")
    providers.EMPIRIOLABS.check(settings)
    client = hosted.Client(ctx, PROVIDER, job.get("options") or {}, {"base_url": DEFAULT_URL},
                           {"Authorization": f"Bearer {api_key}"}, status_error)
    resumed = hosted.resumed_tasks(job.get("options") or {}, ctx)  # submitted before Blender stopped
    if resumed:  # poll them again, never submit (or pay) twice
        job_ids = [str(t["task_id"]) for t in resumed]
        seeds = [int(t.get("seed", settings["seed"])) for t in resumed]
    else:
        job_ids, seeds = _submit(client, ctx, settings, job["input"]["rgba"])
    count = len(job_ids)
    states = hosted.poll_all(client, job_ids, lambda job_id: poll_one(client, job_id))
    done = [(job_id, seed) for job_id, seed in zip(job_ids, seeds) if states[job_id].state == "done"]
    failed = [states[j].value for j in job_ids if states[j].state == "failed"]
    if not done:
        raise failed[0]
    if failed:
        ctx.log(f"{len(failed)} of {count} results failed: {failed[0]}", "warning")
    files = [hosted.save_result(ctx, client, states[job_id].value, i, len(done)) for i, (job_id, _) in enumerate(done)]
    return {"files": files, "seeds": [seed for _, seed in done],
            "cost": round(PRICE_USD[settings["resolution"]] * len(done), 6), "cost_unit": "USD",
            "info": {"job_ids": job_ids, "failed_results": len(failed), "cost_source": "price list",
                     "bytes_sent": client.sent}}


def run(job: dict, ctx) -> dict:
    api_key = str((job.get("secrets") or {}).get("api_key") or "").strip()
    if not api_key:
        raise JobError(remote.AUTH, "No EmpirioLabs API key: set it in the add-on preferences or EMPIRIOLABS_API_KEY")
    return hosted.run_scrubbed(lambda j, safe: _run(j, safe, api_key), job, ctx, api_key)
