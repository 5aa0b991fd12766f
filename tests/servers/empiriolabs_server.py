"""An EmpirioLabs API stand-in on 127.0.0.1 following the documented flow (tests/data/empiriolabs-trellis2.txt).

Served under {url} = http://127.0.0.1:PORT/v1, as EmpirioLabs' docs write the base URL.
`POST /v1/3d/generations` (Bearer key or x-api-key) validates the body against the parameter table
(400 with an OpenAI-style error naming the parameter) and answers `{"job_id","status","poll_url",
"created_at"}`; `GET /v1/jobs/{job_id}` answers queued, then processing with progress 0..1 for
`polls_to_finish` polls, then completed with a `result` in the form `result_form` picks ("url",
"files", "data", "b64", "odd"), or failed with `job_error`. Errors: 401 invalid_api_key, scripted
402/429/5xx via `statuses["submit"|"poll"|"download"]`.
"""
from __future__ import annotations

import base64
import re
import time
import uuid

from servers import tables
from servers.job_api import JobApiServer

_DATA_URI = re.compile(r"^data:image/[a-zA-Z]+;base64,[A-Za-z0-9+/=]+$")


def error(status: int, code: str, message: str, param: str | None = None):
    err = {"message": message, "type": "invalid_request_error" if status == 400 else "api_error", "code": code}
    if param:
        err["param"] = param
    return status, {"error": err}


class EmpirioLabsServer(JobApiServer):
    def __init__(self, api_key: str = "el-test-key", scenario: dict | None = None, glb: bytes | None = None):
        self.api_key = api_key
        self.table = tables.empiriolabs()
        self.result_form = "url"
        self.job_error: dict | None = None  # {"message", "code"}: every job fails at its first poll
        self.jobs: dict[str, dict] = {}
        super().__init__(scenario, glb)

    def error(self, status: int, message: str):
        return error(status, "not_found", message)

    def invalid(self, body) -> tuple | None:
        if not isinstance(body, dict):
            return error(400, "invalid_request", "Body must be a JSON object")
        if body.get("model") != "trellis-2-4b":
            return error(404, "model_not_found", f"Model {body.get('model')!r} not found", "model")
        for name, value in body.items():
            if name in ("model", "image_url"):
                continue
            spec = self.table.get(name)
            if spec is None:
                return error(400, "invalid_parameter", f"Unknown parameter {name}", name)
            kind = spec["type"]
            ok = {"image": isinstance(value, str) and (_DATA_URI.match(value) or value.startswith("https://")),
                  "enum": isinstance(value, str) and value in (spec["allowed"] or []),
                  "integer": isinstance(value, int) and not isinstance(value, bool),
                  "number": isinstance(value, (int, float)) and not isinstance(value, bool),
                  "boolean": isinstance(value, bool)}[kind]
            if ok and kind in ("integer", "number"):
                ok = spec["min"] <= value <= spec["max"]
            if not ok:
                return error(400, "invalid_parameter", f"Invalid value for {name}: {value!r}"[:200], name)
        if "image" not in body and "image_url" not in body:
            return error(400, "invalid_parameter", "image is required", "image")
        return None

    def route(self, method, path, query, body, auth):
        key = auth[7:] if auth.startswith("Bearer ") else None
        if key != self.api_key:
            return error(401, "invalid_api_key", "Invalid API key")
        if method == "POST" and path == "/3d/generations":
            scripted = self.scripted("submit")
            if scripted:
                return scripted
            problem = self.invalid(body)
            if problem:
                return problem
            job_id = self.submit_id or f"job_{uuid.uuid4().hex[:16]}"
            self.jobs[job_id] = {"body": body, "polls": 0}
            return 200, {"job_id": job_id, "status": "queued", "poll_url": f"/v1/jobs/{job_id}",
                         "created_at": int(time.time())}
        return self.poll(method, path) or error(404, "not_found", f"No route {method} {path}")

    def state(self, job_id: str, job: dict) -> dict:
        base = {"job_id": job_id, "created_at": 0, "completed_at": None, "result": None, "error": None}
        if self.job_error:
            return dict(base, status="failed", progress=job["polls"] / 10, error=self.job_error)
        if job["polls"] == 1 and not self.never_finish:
            return dict(base, status="queued", progress=0)
        if self.never_finish or job["polls"] <= self.polls_to_finish:
            return dict(base, status="processing", progress=round(job["polls"] / (self.polls_to_finish + 2), 2))
        url = self.file_url(job_id)
        result = {"url": {"url": url, "format": "glb"},
                  "files": {"files": [{"type": "glb", "url": url}]},
                  "data": {"data": [{"url": url}]},
                  "b64": {"data": [{"b64_json": base64.b64encode(self.glb).decode()}]},
                  "odd": {"mesh": {"href": url}, "meta": 1}}[self.result_form]
        return dict(base, status="completed", progress=1.0, completed_at=int(time.time()), result=result)
