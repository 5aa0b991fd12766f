"""A Runware API stand-in on 127.0.0.1 that follows the documented protocol (tests/data/*openapi.json).

POST / takes a JSON array of tasks; auth is `Authorization: Bearer KEY` or a leading
`authentication` task. 3dInference bodies are validated against the spec (400 with `parameter` on a
violation, like the real API); async submits are acknowledged; getResponse answers cumulatively, one
item per result, `processing` with `progress` for `polls_to_finish` polls, then `success` with file URLs
served by this server. Behaviour switches below script failures for the tests.
"""
from __future__ import annotations

import json
import os
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                    "runware-trellis2-openapi.json")


def request_item_schema() -> dict:
    with open(SPEC) as f:
        return json.load(f)["components"]["schemas"]["RequestBody"]["items"]


def tiny_glb() -> bytes:
    """A valid one-triangle GLB."""
    positions = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36}], "buffers": [{"byteLength": 36}]}
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(positions)
    return (b"glTF" + struct.pack("<II", 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(positions), 0x004E4942) + positions)


class RunwareServer:
    def __init__(self, api_key: str = "rw-test-key", glb: bytes | None = None):
        self.api_key = api_key
        self.glb = glb or tiny_glb()
        self.schema = request_item_schema()
        self.lock = threading.Lock()
        # behaviour
        self.polls_to_finish = 2
        self.submit_statuses: list[int] = []  # statuses returned (in order) before a normal submit
        self.poll_statuses: list[int] = []  # likewise for getResponse
        self.error_body: dict | None = None  # body for scripted error statuses
        self.task_error: dict | None = None  # {"code", "message"}: the task fails at its first poll
        self.never_finish = False
        self.truncate_glb = False
        self.cost = 0.0125
        # records
        self.tasks: dict[str, dict] = {}
        self.submits = self.polls = self.uploads = self.downloads = 0
        self.requests: list[dict] = []  # {"path", "bytes", "auth", "types"}
        self.uploaded: dict[str, str] = {}
        self.success_served_at: float | None = None  # wall time of the first success item

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                server.handle_post(self)

            def do_GET(self):
                server.handle_get(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- HTTP ---------------------------------------------------------------------------------------
    @staticmethod
    def reply(handler, status: int, body, content_type="application/json", length: int | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data) if length is None else length))
        handler.end_headers()
        handler.wfile.write(data)

    def errors(self, status: int, code: str, message: str, **extra) -> tuple[int, dict]:
        return status, {"errors": [dict(code=code, message=message, **extra)]}

    def handle_post(self, handler):
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            tasks = json.loads(raw)
        except ValueError:
            return self.reply(handler, *self.errors(400, "invalidJson", "Body is not JSON"))
        auth = handler.headers.get("Authorization", "")
        with self.lock:
            self.requests.append({"path": handler.path, "bytes": len(raw), "auth": auth,
                                  "types": [t.get("taskType") for t in tasks if isinstance(t, dict)]})
            status, body = self.dispatch(tasks, auth)
        self.reply(handler, status, body)

    def dispatch(self, tasks, auth: str) -> tuple[int, dict]:
        if not isinstance(tasks, list) or not tasks:
            return self.errors(400, "invalidRequest", "You must always POST an array of task objects")
        if tasks[0].get("taskType") == "authentication":
            key, tasks = tasks[0].get("apiKey"), tasks[1:]
        else:
            key = auth[7:] if auth.startswith("Bearer ") else None
        if key != self.api_key:
            return self.errors(401, "invalidApiKey", "Invalid API key")
        data = []
        for task in tasks:
            kind = task.get("taskType")
            if kind == "imageUpload":
                self.uploads += 1
                image_uuid = str(uuid.uuid4())
                self.uploaded[image_uuid] = task.get("image", "")
                data.append({"taskType": "imageUpload", "taskUUID": task.get("taskUUID"), "imageUUID": image_uuid,
                             "imageURL": f"{self.url}/images/{image_uuid}.png"})
            elif kind == "3dInference":
                if self.submit_statuses:
                    status = self.submit_statuses.pop(0)
                    return status, self.error_body or self.errors(status, "scripted", f"Scripted HTTP {status}")[1]
                try:
                    jsonschema.validate(task, self.schema)
                except jsonschema.ValidationError as exc:
                    param = ".".join(str(p) for p in exc.absolute_path) or (exc.message.split("'")[1]
                                                                            if "'" in exc.message else "")
                    return self.errors(400, "invalidParameter", exc.message, parameter=param,
                                       taskType=kind, taskUUID=task.get("taskUUID"))
                self.submits += 1
                self.tasks[task["taskUUID"]] = {"task": task, "polls": 0}
                data.append({"taskType": "3dInference", "taskUUID": task["taskUUID"]})
            elif kind == "getResponse":
                if self.poll_statuses:
                    status = self.poll_statuses.pop(0)
                    return self.errors(status, "scripted", f"Scripted HTTP {status}")
                self.polls += 1
                entry = self.tasks.get(task.get("taskUUID"))
                if entry is None:
                    return self.errors(400, "taskFailedOrNotFound", "Task not found",
                                       taskUUID=task.get("taskUUID"))
                data.extend(self.items(entry))
            else:
                return self.errors(400, "unsupportedTaskType", f"Unsupported taskType {kind}")
        return 200, {"data": data}

    def items(self, entry) -> list[dict]:
        entry["polls"] += 1
        task = entry["task"]
        base = {"taskType": "3dInference", "taskUUID": task["taskUUID"]}
        if self.task_error:
            return [dict(base, status="error", error=self.task_error)]
        count = task.get("numberResults", 1)
        if self.never_finish or entry["polls"] <= self.polls_to_finish:
            progress = min(99, int(100 * entry["polls"] / (self.polls_to_finish + 1)))
            return [dict(base, status="processing", progress=progress) for _ in range(count)]
        seed = task.get("seed", 1234)
        self.success_served_at = self.success_served_at or time.time()
        return [dict(base, status="success", seed=seed + i, cost=self.cost,
                     outputs={"files": [{"uuid": f"{task['taskUUID']}-{i}",
                                         "url": f"{self.url}/files/{task['taskUUID']}_{i}.glb"}]})
                for i in range(count)]

    def handle_get(self, handler):
        if "/files/" not in handler.path:
            return self.reply(handler, 404, {"errors": [{"code": "notFound", "message": "Not found"}]})
        with self.lock:
            self.downloads += 1
        data = self.glb[: len(self.glb) // 2] if self.truncate_glb else self.glb
        self.reply(handler, 200, data, content_type="model/gltf-binary")
