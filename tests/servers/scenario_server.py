"""A Scenario API stand-in on 127.0.0.1 following the documented flow (tests/data/scenario-trellis2.txt).

Basic auth base64(key:secret) (401 otherwise). `POST /v1/assets {"image": data URI, "name"}` stores an
asset; `POST /v1/generate/custom/{model_trellis-2|model_trellis-2-retexture}` validates the body against
that model's table (400 with reason/message/traceId) and answers `{"job":{"jobId",...},
"creativeUnitsCost"}`, or with `?dryRun=true` only `{"creativeUnitsCost"}`; `GET /v1/jobs/{jobId}`
walks pending, queued, warming-up, in-progress (progress 0..1), finalizing, then success with
metadata.assetIds, or failure with metadata.error (`job_error`); `GET /v1/assets/{id}` gives the
result's signed URL. Scripted statuses via `statuses["upload"|"submit"|"poll"|"asset"|"download"]`;
a scripted 429 carries `remainingSeconds`.
"""
from __future__ import annotations

import base64
import re
import uuid

from servers import tables
from servers.job_api import JobApiServer

MODELS = ("model_trellis-2", "model_trellis-2-retexture")
STATUSES = ("pending", "queued", "warming-up", "in-progress", "finalizing")
_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,[A-Za-z0-9+/=]+$")


def error(status: int, message: str):
    return status, {"reason": message, "message": message, "traceId": f"trace-{uuid.uuid4().hex[:8]}"}


class ScenarioServer(JobApiServer):

    def __init__(self, key: str = "sc-key", secret: str = "sc-secret", scenario: dict | None = None,
                 glb: bytes | None = None):
        self.auth = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
        self.tables = {m: tables.scenario(m) for m in MODELS}
        self.assets: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.job_error: str | None = None
        self.cost = 12  # creative units per job
        self.quotes = 0
        super().__init__(scenario, glb)
        self.polls_to_finish = len(STATUSES)

    def error(self, status: int, message: str):
        return error(status, message)

    def invalid(self, model: str, body) -> tuple | None:
        if not isinstance(body, dict):
            return error(400, "Body must be a JSON object")
        table = self.tables[model]
        for name in (n for n, spec in table.items() if spec["type"] == "file"):
            if name not in body:
                return error(400, f"Missing required parameter {name}")
        for name, value in body.items():
            spec = table.get(name)
            if spec is None:
                return error(400, f"Unknown parameter {name} for {model}")
            kind = spec["type"]
            if kind == "file":
                ok = value in self.assets
            elif kind == "boolean":
                ok = isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok and spec["allowed"]:
                    ok = str(value) in spec["allowed"]
                if ok and spec["min"] is not None:
                    ok = spec["min"] <= value <= spec["max"]
            if not ok:
                return error(400, f"Invalid value for {name}: {value!r}"[:200])
        return None

    def route(self, method, path, query, body, auth):
        if auth != self.auth:
            return error(401, "Unauthorized: invalid API key or secret")
        if method == "POST" and path == "/assets":
            scripted = self.scripted("upload")
            if scripted:
                return scripted
            if not isinstance(body, dict) or not _DATA_URI.match(str(body.get("image", ""))):
                return error(400, "image must be a data URI")
            asset_id = f"asset_{uuid.uuid4().hex[:12]}"
            self.assets[asset_id] = {"id": asset_id, "name": body.get("name"), "data": body["image"]}
            return 200, {"asset": {"id": asset_id, "kind": "image", "status": "success"}}
        match = re.fullmatch(r"/generate/custom/([\w.-]+)", path)
        if method == "POST" and match:
            model = match.group(1)
            if model not in MODELS:
                return error(404, f"Model {model} not found")
            scripted = self.scripted("submit")
            if scripted:
                status, reply, headers = scripted
                if status == 429:
                    reply = dict(reply, remainingSeconds=0.05)
                return status, reply, headers
            problem = self.invalid(model, body)
            if problem:
                return problem
            if query.get("dryRun") == ["true"]:
                self.quotes += 1
                return 200, {"creativeUnitsCost": self.cost}
            job_id = self.submit_id or f"job_{uuid.uuid4().hex[:12]}"
            self.jobs[job_id] = {"model": model, "body": body, "polls": 0}
            return 200, {"job": {"jobId": job_id, "status": "queued", "jobType": "custom",
                                 "metadata": {"input": body}}, "creativeUnitsCost": self.cost}
        polled = self.poll(method, path)
        if polled:
            return polled
        match = re.fullmatch(r"/assets/([\w-]+)", path)
        if method == "GET" and match:
            scripted = self.scripted("asset")
            if scripted:
                return scripted
            asset = self.assets.get(match.group(1))
            if asset is None:
                return error(404, "Asset not found")
            return 200, {"asset": {k: v for k, v in asset.items() if k != "data"}}
        return error(404, f"No route {method} {path}")

    def state(self, job_id: str, job: dict) -> dict:
        polls = job["polls"]
        return {"job": self.job_state(job_id, job, polls)}

    def job_state(self, job_id: str, job: dict, polls: int) -> dict:
        base = {"jobId": job_id, "jobType": "custom", "metadata": {}}
        if self.job_error:
            return dict(base, status="failure", metadata={"error": self.job_error})
        if self.never_finish or polls <= self.polls_to_finish:
            status = STATUSES[min(polls, len(STATUSES)) - 1]
            return dict(base, status=status, progress=round(polls / (self.polls_to_finish + 1), 2))
        asset_id = job.get("result")
        if asset_id is None:
            asset_id = job["result"] = f"asset_{uuid.uuid4().hex[:12]}"
            self.assets[asset_id] = {"id": asset_id, "kind": "3d", "mimeType": "model/gltf-binary",
                                     "url": self.file_url(job_id), "status": "success"}
        return dict(base, status="success", progress=1.0, metadata={"assetIds": [asset_id]})
