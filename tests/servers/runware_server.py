"""A Runware API stand-in on 127.0.0.1 that follows the documented protocol (tests/data/*openapi.json).

POST {url} (the API root http://127.0.0.1:PORT/v1, as a user types it; any other path: 404) takes a JSON
array of tasks; auth is `Authorization: Bearer KEY` or a leading
`authentication` task (401 `invalidApiKey` otherwise). 3dInference tasks are validated against the
spec's RequestBody item, formats included (400 `invalidParameter` with `parameter`, like the real API);
async submits are acknowledged with `{"data":[{"taskType","taskUUID"}]}`; `getResponse` answers
cumulatively, one item per result: `processing` with `progress` for `polls_to_finish` polls, then
`success` with `outputs.files[].{uuid,url}` (served by this server), `seed` and `cost`, or `error`.
`imageUpload` stores the image and answers `imageUUID`/`imageURL`. A "sync" submit gets its results
at once. Unknown tasks in getResponse: 400 `taskFailedOrNotFound`.

Behaviour switches (attributes, or `RunwareServer(scenario=...)` with a name from SCENARIOS or a dict
of attributes) script failures for the tests; counters and logs record what the client did:
`submits`, `polls`, `uploads`, `downloads`, `requests` (POSTs: path, bytes, auth, types),
`gets` (GETs: path, auth, encoding), `tasks` (taskUUID -> {"task", "polls"}), `uploaded`.

    with RunwareServer(api_key="k", scenario="429 then success") as server:
        ... job options {"base_url": server.url} ...
"""
from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
import uuid
from urllib.parse import urlsplit

import jsonschema

from servers.base import API_ROOT, LocalServer, tiny_glb

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                    "runware-trellis2-openapi.json")

# Named scripted behaviours: attribute values applied on top of the defaults.
SCENARIOS = {
    "success": {},
    "429 then success": {"submit_statuses": [429]},
    "503 forever": {"submit_statuses": [503] * 1000},
    "504 then success": {"submit_statuses": [504]},
    "400": {"submit_statuses": [400], "error_body": {"errors": [{
        "code": "invalidParameter", "message": "Invalid value for parameter.", "parameter": "settings.resolution",
        "taskType": "3dInference"}]}},
    "401": {"submit_statuses": [401]},
    "402": {"submit_statuses": [402]},
    "403": {"submit_statuses": [403]},
    "500 forever": {"submit_statuses": [500] * 1000},
    "task error": {"task_error": {"code": "inferenceError", "message": "The model could not process the image."}},
    "truncated glb": {"truncate_glb": True},
    "cut glb": {"cut_glb": True},
    "never finish": {"never_finish": True},
    "poll failures": {"poll_statuses": [500, 503, 502]},
    "dropped submit": {"drop_submits": 1},
    "dropped polls": {"drop_polls": 2},
}

_DATA_URI = re.compile(r"^data:image/[a-zA-Z]+;base64,")


def format_checker() -> jsonschema.FormatChecker:
    """jsonschema's checker with `uuid` (built in) and a dependency-free `uri` (scheme and host),
    so the spec's `format` keywords are enforced, not skipped."""
    checker = jsonschema.FormatChecker()

    @checker.checks("uri")
    def is_uri(value) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme and parts.netloc) and not any(c.isspace() for c in value)

    return checker


def request_item_schema() -> dict:
    """The spec's schema for one task of the request array (3dInference)."""
    with open(SPEC) as f:
        return json.load(f)["components"]["schemas"]["RequestBody"]["items"]


def validator() -> jsonschema.protocols.Validator:
    schema = request_item_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=format_checker())


class _Drop(Exception):
    """Close the connection without an answer (after the request was taken in)."""


class RunwareServer(LocalServer):
    def __init__(self, api_key: str = "rw-test-key", glb: bytes | None = None, scenario: str | dict | None = None):
        self.api_key = api_key
        self.glb = glb or tiny_glb()
        self.schema = request_item_schema()
        self.validator = validator()
        self.lock = threading.Lock()
        # behaviour
        self.polls_to_finish = 2  # getResponse answers with `processing` before the results
        self.submit_statuses: list[int] = []  # statuses returned (in order) before a normal submit
        self.poll_statuses: list[int] = []  # likewise for getResponse
        self.upload_statuses: list[int] = []  # likewise for imageUpload
        self.download_statuses: list[int] = []  # likewise for GETs of result files
        self.error_body: dict | None = None  # body for scripted error statuses
        self.task_error: dict | None = None  # {"code", "message"}: the task fails at its first poll
        self.failed_results: set[int] = set()  # result indices that end in an error item
        self.never_finish = False
        self.task_seconds = 0.0  # simulated processing time: a task stays `processing` this long after submit
        self.truncate_glb = False  # serve the first half of the GLB (as a complete response)
        self.cut_glb = False  # announce the whole GLB, send half, close the connection
        self.slow_glb = 0.0  # seconds between 4 KiB pieces of a download
        self.drop_submits = 0  # accept this many 3dInference submits, then close without answering
        self.drop_polls = 0  # close this many getResponse requests without answering
        self.slow_polls: list[float] = []  # seconds to wait before answering the next polls
        self.empty_ack = False  # acknowledge a submit with an empty data array
        self.omit_status = False  # success items without `status` (as sync answers look)
        self.poll_errors: list[dict] | None = None  # a top-level `errors` array in a 200 poll answer
        self.echo_key = False  # error messages quote the key the client sent (a careless server)
        # hostile behaviour
        self.file_fault: str | None = None  # a base.FILE_FAULTS name, or "redirect:URL", for result files
        self.api_redirect: str | None = None  # every POST is answered 307 to this URL
        self.trickle_polls = 0  # this many getResponse answers come one byte a second
        self.huge_answer = 0  # bytes of padding in every 200 answer (an 8 MiB+ JSON answer)
        self.answer_hook = None  # (route "submit"|"poll"|"upload", body) -> body sent instead (fuzzing)
        self.cost = 0.0125
        if isinstance(scenario, str):
            scenario = SCENARIOS[scenario]
        for name, value in copy.deepcopy(scenario or {}).items():
            if not hasattr(self, name):
                raise AttributeError(f"unknown RunwareServer behaviour {name!r}")
            setattr(self, name, value)
        # records
        self.tasks: dict[str, dict] = {}
        self.submits = self.polls = self.uploads = self.downloads = 0
        self.requests: list[dict] = []  # POSTs: {"path", "bytes", "auth", "types", "body"}
        self.gets: list[dict] = []  # GETs: {"path", "auth"}
        self.uploaded: dict[str, str] = {}
        self.success_served_at: float | None = None  # wall time of the first success item

    def api_path(self, handler) -> bool:
        """Whether the request is for the API root itself (Runware takes every task at POST /v1)."""
        return urlsplit(handler.path).path == API_ROOT

    def errors(self, status: int, code: str, message: str, **extra) -> tuple[int, dict]:
        return status, {"errors": [dict(code=code, message=message, **extra)]}

    def handle_post(self, handler):
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            tasks = json.loads(raw)
        except ValueError:
            return self.reply(handler, *self.errors(400, "invalidJson", "Body is not JSON"))
        auth = handler.headers.get("Authorization", "")
        delay = 0.0
        if not self.api_path(handler):
            return self.reply(handler, *self.errors(404, "notFound", f"No route POST {handler.path}"))
        with self.lock:
            self.requests.append({"path": handler.path, "bytes": len(raw), "auth": auth, "body": tasks,
                                  "types": [t.get("taskType") for t in tasks if isinstance(t, dict)]
                                  if isinstance(tasks, list) else []})
            types = self.requests[-1]["types"]
            if self.api_redirect:
                return self.reply(handler, 307, b"", headers={"Location": self.api_redirect}, length=0)
            if isinstance(tasks, list) and any(isinstance(t, dict) and t.get("taskType") == "getResponse"
                                               for t in tasks) and self.slow_polls:
                delay = self.slow_polls.pop(0)
            try:
                status, body = self.dispatch(tasks, auth)
            except _Drop:
                return self.drop(handler)
        if delay:
            time.sleep(delay)
        route = "poll" if "getResponse" in types else "upload" if "imageUpload" in types else "submit"
        if status == 200 and self.huge_answer:
            body = dict(body, padding="x" * self.huge_answer)
        if self.answer_hook is not None:
            body = self.answer_hook(route, body)
        if route == "poll" and self.trickle_polls:
            self.trickle_polls -= 1
            return self.trickle(handler, status, body)
        self.reply(handler, status, body)

    def dispatch(self, tasks, auth: str) -> tuple[int, dict]:
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
            return self.errors(400, "invalidRequest", "You must always POST an array of task objects")
        if tasks[0].get("taskType") == "authentication":
            key, tasks = tasks[0].get("apiKey"), tasks[1:]
        else:
            key = auth[7:] if auth.startswith("Bearer ") else None
        if key != self.api_key:
            echo = f" {key}" if self.echo_key and key else ""
            return self.errors(401, "invalidApiKey", f"Invalid API key{echo}")
        data = []
        for task in tasks:
            kind = task.get("taskType")
            task_uuid = task.get("taskUUID")
            if not isinstance(task_uuid, str) or not self._is_uuid(task_uuid):
                return self.errors(400, "invalidTaskUUID", "taskUUID must be a UUID v4", parameter="taskUUID",
                                   taskType=kind)
            if kind == "imageUpload":
                if self.upload_statuses:
                    status = self.upload_statuses.pop(0)
                    return self.errors(status, "scripted", f"Scripted HTTP {status}")
                image = task.get("image")
                if not isinstance(image, str) or not image:
                    return self.errors(400, "invalidImage", "Missing image", parameter="image", taskType=kind)
                self.uploads += 1
                image_uuid = str(uuid.uuid4())
                self.uploaded[image_uuid] = image
                data.append({"taskType": "imageUpload", "taskUUID": task_uuid, "imageUUID": image_uuid,
                             "imageURL": f"{self.url}/images/{image_uuid}.png"})
            elif kind == "3dInference":
                if self.submit_statuses:
                    status = self.submit_statuses.pop(0)
                    body = self.error_body or self.errors(status, "scripted", f"Scripted HTTP {status}")[1]
                    if self.echo_key:
                        body = json.loads(json.dumps(body))
                        body["errors"][0]["message"] += f" (key {key})"
                    return status, body
                problem = self.invalid(task)
                if problem:
                    return problem
                if task_uuid in self.tasks:
                    return self.errors(400, "duplicatedTaskUUID", "taskUUID already used", parameter="taskUUID",
                                       taskType=kind, taskUUID=task_uuid)
                self.submits += 1
                self.tasks[task_uuid] = {"task": task, "polls": 0, "submitted": time.monotonic()}
                if self.drop_submits:
                    self.drop_submits -= 1
                    raise _Drop()
                if task.get("deliveryMethod") == "sync":
                    self.tasks[task_uuid]["polls"] = self.polls_to_finish
                    data.extend(self.items(self.tasks[task_uuid]))
                elif not self.empty_ack:
                    data.append({"taskType": "3dInference", "taskUUID": task_uuid})
            elif kind == "getResponse":
                if self.poll_statuses:
                    status = self.poll_statuses.pop(0)
                    return self.errors(status, "scripted", f"Scripted HTTP {status}")
                if self.drop_polls:
                    self.drop_polls -= 1
                    raise _Drop()
                self.polls += 1
                entry = self.tasks.get(task_uuid)
                if entry is None:
                    return self.errors(400, "taskFailedOrNotFound", "Task not found or failed", taskUUID=task_uuid)
                data.extend(self.items(entry))
                if self.poll_errors is not None:
                    return 200, {"data": data, "errors": self.poll_errors}
            else:
                return self.errors(400, "unsupportedTaskType", f"Unsupported taskType {kind}")
        return 200, {"data": data}

    @staticmethod
    def _is_uuid(value: str) -> bool:
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True

    def invalid(self, task: dict) -> tuple[int, dict] | None:
        """Spec validation of a 3dInference task, like the real API's 400 with `parameter`."""
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(task))
        if error is not None:
            param = ".".join(str(p) for p in error.absolute_path)
            if not param and "'" in error.message:
                param = error.message.split("'")[1]
            return self.errors(400, "invalidParameter", error.message, parameter=param,
                               taskType="3dInference", taskUUID=task.get("taskUUID"))
        image = task["inputs"]["image"]
        if not (_DATA_URI.match(image) or image.startswith(("http://", "https://")) or image in self.uploaded):
            return self.errors(400, "invalidImage", "Image not found: upload it first or send a URL or data URI",
                               parameter="inputs.image", taskType="3dInference", taskUUID=task.get("taskUUID"))
        return None

    def items(self, entry) -> list[dict]:
        entry["polls"] += 1
        task = entry["task"]
        base = {"taskType": "3dInference", "taskUUID": task["taskUUID"]}
        if self.task_error:
            return [dict(base, status="error", error=self.task_error)]
        count = task.get("numberResults", 1)
        busy = time.monotonic() - entry.get("submitted", 0.0) < self.task_seconds
        if self.never_finish or entry["polls"] <= self.polls_to_finish or busy:
            progress = min(99, int(100 * entry["polls"] / (self.polls_to_finish + 1)))
            return [dict(base, status="processing", progress=progress) for _ in range(count)]
        seed = task.get("seed", 1234)
        self.success_served_at = self.success_served_at or time.time()
        out = []
        for i in range(count):
            if i in self.failed_results:
                out.append(dict(base, status="error", error={"code": "inferenceError",
                                                             "message": f"Result {i} failed."}))
                continue
            item = dict(base, status="success", seed=seed + i, cost=self.cost,
                        outputs={"files": [{"uuid": f"{task['taskUUID']}-{i}",
                                            "url": f"{self.url}/files/{task['taskUUID']}_{i}.glb"}]})
            if self.omit_status:
                del item["status"]
            out.append(item)
        return out

    def handle_get(self, handler):
        with self.lock:
            self.gets.append({"path": handler.path, "auth": handler.headers.get("Authorization", ""),
                              "encoding": handler.headers.get("Accept-Encoding", "")})
        if "/files/" not in handler.path:
            return self.reply(handler, 404, {"errors": [{"code": "notFound", "message": "Not found"}]})
        with self.lock:
            self.downloads += 1
            status = self.download_statuses.pop(0) if self.download_statuses else 200
        if status != 200:
            return self.reply(handler, status, b"busy", content_type="text/plain")
        data = self.glb[: len(self.glb) // 2] if self.truncate_glb else self.glb
        if self.file_fault:
            return self.serve_file(handler, data, self.file_fault)
        try:
            if self.cut_glb:
                handler.send_response(200)
                handler.send_header("Content-Type", "model/gltf-binary")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data[: len(data) // 2])
                handler.wfile.flush()
                return self.drop(handler)
            if self.slow_glb:
                handler.send_response(200)
                handler.send_header("Content-Type", "model/gltf-binary")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                for start in range(0, len(data), 4096):
                    handler.wfile.write(data[start:start + 4096])
                    handler.wfile.flush()
                    time.sleep(self.slow_glb)
                return None
            self.reply(handler, 200, data, content_type="model/gltf-binary")
        except OSError:  # the client went away (cancelled)
            pass
