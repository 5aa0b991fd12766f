"""Backend "EmpirioLabs": TRELLIS.2 (trellis-2-4b) on EmpirioLabs' REST API.

URL: the API root is registry default_url (https://api.empiriolabs.ai/v1, as its docs write it); an
override may be written with or without the trailing /v1 (http.normalize_url). Paths are relative to it.

Protocol (docs): `POST {root}/3d/generations` with `Authorization: Bearer KEY` and snake_case parameters
(MAPPINGS) answers `{"job_id","status","poll_url",...}`; `GET {root}/jobs/{job_id}` answers
`{job_id,status,progress 0..1,result,error}` with status queued, processing, completed or failed
(cancelled inferred). One request makes one model, so N results are N jobs with seeds seed, seed+1, ...
submitted one after another and polled together.

The shape of `result` for 3D is not documented: a URL field (url, glb_url, model_url, file_url,
output_url), a files/outputs/data list of such objects or strings (OpenAI-style data[0].url), or base64
(b64_json, glb_base64) are accepted; anything else fails with a message listing the body's keys.
Errors use an OpenAI-style envelope `{"error":{"message","type","code"}}`; 429 (50 requests/min) and
5xx before acceptance are retried with backoff. A submit that may have been accepted (HTTP 500/502/504
or a connection cut after sending) is not re-sent: the API has no way to find the job, and a second
one would be billed too. The cost is the registry's price list.

Options (protocol.HostedOptions): base_url, poll_timeout, poll_first/poll_factor/poll_cap, retry_*,
download_tries, read_timeout, resume_tasks.
"""
from __future__ import annotations

from .. import registry, schema
from ..protocol import ErrorCode, Job, JobError
from . import hosted, http
from .mapping import SEED_MAX, Knob, Mapping, snake, stage_knobs

INFO = registry.get("empiriolabs")
HINTS = {"auth_fix": "check it in the add-on preferences or EMPIRIOLABS_API_KEY", "balance": "insufficient credits",
         "balance_fix": "top up at empiriolabs.ai", "rate": ", 50 requests/min", "rate_fix": "try again in a minute",
         "forbidden": f"this API key may not use {INFO.model}"}

MAPPINGS = {"generate": Mapping("empiriolabs", "EmpirioLabs", (
    Knob("resolution", "resolution", choices=(512, 1024, 1536), as_text=True),
    Knob("seed", "seed", 0, SEED_MAX),
    Knob("preprocess_image", "preprocess_image"),
    Knob("max_num_tokens", "max_num_tokens", 1024, 131072),
    Knob("texture_size", "texture_size", choices=(1024, 2048, 4096), as_text=True),
    Knob("decimation_target", "decimation_target", 10000, 1000000),
    Knob("remesh", "remesh"),
    Knob("remesh_band", "remesh_band", 0, 5),
    Knob("remesh_project", "remesh_project", 0, 1),
) + stage_knobs(snake({"sparse_structure": "ss", "shape_slat": "shape_slat", "tex_slat": "tex_slat"}),
                {"steps": (1, 64), "guidance_strength": (0, 20), "guidance_rescale": (0, 2), "rescale_t": (0, 20)},
                interval=True))}

URL_KEYS = ("url", "glb_url", "model_url", "file_url", "output_url", "download_url")
B64_KEYS = ("b64_json", "glb_base64", "b64", "base64")
LIST_KEYS = ("files", "outputs", "data", "assets", "output")


def generation_body(settings: dict, image: str, seed: int) -> dict:
    body = {"model": INFO.model, "image": image, "response_format": "url"}
    body.update(MAPPINGS["generate"].request(dict(settings, seed=seed)))
    body["pipeline_type"] = schema.PIPELINE_TYPES[settings["resolution"]]
    return body


def _error_fields(body) -> tuple[str, str]:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return http.one_line(err.get("code") or err.get("type"), 60), http.one_line(err.get("message"))
    if isinstance(err, str):
        return "", http.one_line(err)
    if isinstance(body, dict):
        return http.one_line(body.get("code"), 60), http.one_line(body.get("message") or body.get("detail"))
    return "", ""


def status_error(status: int, body) -> JobError:
    code, message = _error_fields(body)
    return http.status_error("EmpirioLabs", status, message, HINTS, note=code if status == 404 else "")


def result_source(result, keys_of) -> tuple[str, str]:
    """("url", url) or ("b64", data) from a completed job's result; JobError naming the keys otherwise."""
    if isinstance(result, str) and result:
        return ("url", result) if result.startswith(("http://", "https://")) else ("b64", result)
    candidates = []
    if isinstance(result, dict):
        for key, kind in [(k, "url") for k in URL_KEYS] + [(k, "b64") for k in B64_KEYS]:
            if isinstance(result.get(key), str) and result[key]:
                return kind, result[key]
        for key in LIST_KEYS:
            items = result.get(key)
            candidates += [items] if isinstance(items, dict) else items if isinstance(items, list) else []
    elif isinstance(result, list):
        candidates = result
    for item in candidates:
        try:
            return result_source(item, keys_of)
        except JobError:
            continue
    raise JobError(ErrorCode.BAD_OUTPUT, f"EmpirioLabs finished without a GLB URL or data in a form this add-on "
                                         f"knows (job keys: {keys_of}; result: {_shape(result)})")


def _shape(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(sorted(map(str, value))) + "}"
    if isinstance(value, list):
        return f"list of {len(value)}"
    return type(value).__name__


def poll_one(client: http.Client, job_id: str) -> hosted.Poll | None:
    status, body = client.once("GET", f"/jobs/{http.path_id('EmpirioLabs', 'job_id', job_id)}")
    if hosted.transient(status, body, status_error):
        return None
    state = body.get("status")
    if not isinstance(state, str):
        raise http.type_error("EmpirioLabs", "job status", state)
    state = state.lower()
    progress = hosted.number(body.get("progress"))
    if progress is not None and progress > 1:
        progress /= 100  # tolerate percent
    if state in ("completed", "succeeded", "success"):
        keys = http.one_line(", ".join(sorted(map(str, body))))
        return hosted.Poll("done", 1.0, result_source(body.get("result"), keys))
    if state in ("failed", "cancelled", "canceled", "error"):
        code, message = _error_fields(body)
        what = f" ({code})" if code else ""
        return hosted.Poll("failed", value=JobError(ErrorCode.REMOTE, f"EmpirioLabs job {state}{what}: "
                                                                      f"{message or 'no message'}"))
    return hosted.Poll("running", progress, queued=state in ("queued", "pending"))


def _not_again() -> bool:
    raise JobError(ErrorCode.REMOTE, "EmpirioLabs may have accepted the job but its answer was lost; not sending it "
                                     "again (it would be billed twice): check your EmpirioLabs dashboard")


def _submit(client: http.Client, body: dict) -> str:
    answer = client.request("POST", "/3d/generations", body, stage="queued", fraction=hosted.REMOTE_START,
                            acted=_not_again)
    job_id = answer.get("job_id") or answer.get("id") or ""
    if not job_id:
        raise JobError(ErrorCode.REMOTE, f"EmpirioLabs accepted the request without a job_id "
                                         f"(keys: {http.one_line(', '.join(sorted(map(str, answer))))})")
    http.path_id("EmpirioLabs", "job_id", job_id)
    return job_id


def _run(job: Job, ctx, api_key: str) -> dict:
    settings = job.settings
    client = http.Client(ctx, "EmpirioLabs", job.options, INFO.default_url, {"Authorization": f"Bearer {api_key}"},
                         status_error)
    # submitted before Blender stopped: poll, never submit (or pay) twice
    job_ids, seeds = hosted.resumed(job, ctx, "EmpirioLabs", "job_id")
    if not job_ids:
        image = hosted.image_uri(job)
        seeds = hosted.seeds(settings)
        bodies = [generation_body(settings, image, seed) for seed in seeds]
        job_ids = hosted.submit_each(ctx, client, job, bodies, lambda body: _submit(client, body))
        ctx.log(f"submitted {', '.join(job_ids)} ({len(image)} image bytes each)")
    done, sources, failed = hosted.finished(ctx, client, job_ids, lambda job_id: poll_one(client, job_id))
    files = [hosted.save_result(ctx, job.options, source, n, len(done), "EmpirioLabs")
             for n, source in enumerate(sources)]
    return {"files": files, "seeds": [seeds[i] for i in done],
            "cost": round(INFO.prices[settings["resolution"]] * len(done), 6),
            "info": {"job_ids": job_ids, "failed_results": failed, "cost_source": "price list",
                     "bytes_sent": client.sent}}


def run(job: Job, ctx) -> dict:
    [api_key] = hosted.credentials(job)
    return hosted.run_scrubbed(lambda j, safe: _run(j, safe, api_key), job, ctx, api_key)
