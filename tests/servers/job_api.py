"""What the job-style API stand-ins (EmpirioLabs, Scenario) share: the API under /v1 (routes get the path
below it; anything outside it is a 404), scripted statuses per route, request records, job polling, and
GLB files served without auth."""
from __future__ import annotations

import copy
import json
import re
import threading
from urllib.parse import parse_qs, urlsplit

from servers.base import API_ROOT, LocalServer, tiny_glb


class JobApiServer(LocalServer):
    """Subclasses implement route(method, path, query, body, auth) -> (status, body[, headers]) for paths
    below /v1, error(status, message) and state(job_id, job) -> the job's answer.

    Records: `requests` ({"method", "path", "query", "auth", "body", "bytes"}), `downloads`.
    Scripts: `statuses[route]` a list of statuses answered (in order) before the normal answer of a
    route ("submit", "poll", "upload", "asset", "download"), with `error_body` and `headers` for them."""

    def __init__(self, scenario: dict | None = None, glb: bytes | None = None):
        self.glb = glb or tiny_glb()
        self.lock = threading.Lock()
        self.statuses: dict[str, list[int]] = {}
        self.error_body: dict | None = None
        self.error_headers: dict = {}
        self.polls_to_finish = 2
        self.never_finish = False
        self.truncate_glb = False
        self.requests: list[dict] = []
        self.downloads = 0
        # hostile behaviour
        self.file_fault: str | None = None  # a base.FILE_FAULTS name, or "redirect:URL", for result files
        self.trickle_polls = 0  # this many poll answers come one byte a second
        self.submit_id: str | None = None  # the job id every submit answers (e.g. "../../admin?x=1#")
        self.answer_hook = None  # (route "submit"|"poll"|"upload"|"asset", body) -> body sent instead (fuzzing)
        for name, value in copy.deepcopy(scenario or {}).items():
            if not hasattr(self, name):
                raise AttributeError(f"unknown behaviour {name!r}")
            setattr(self, name, value)

    def scripted(self, route: str):
        """(status, body, headers) when a scripted status is due for the route, else None."""
        queue = self.statuses.get(route)
        if queue:
            status = queue.pop(0)
            return status, self.error_body or {"message": f"Scripted HTTP {status}"}, self.error_headers
        return None

    def _handle(self, handler, method: str):
        parts = urlsplit(handler.path)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)) if method == "POST" else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "<not json>"
        auth = handler.headers.get("Authorization", "")
        if parts.path.startswith("/files/"):
            return self._file(handler, auth)
        with self.lock:
            self.requests.append({"method": method, "path": parts.path, "query": parse_qs(parts.query),
                                  "auth": auth, "body": body, "bytes": len(raw)})
            if parts.path.startswith(API_ROOT + "/"):
                answer = self.route(method, parts.path[len(API_ROOT):], parse_qs(parts.query), body, auth)
            else:
                answer = self.error(404, f"No route {method} {parts.path}")
        status, reply = answer[0], answer[1]
        headers = answer[2] if len(answer) > 2 else {}
        route = self.route_name(method, parts.path[len(API_ROOT):])
        if self.answer_hook is not None and status == 200:
            reply = self.answer_hook(route, reply)
        if route == "poll" and self.trickle_polls:
            self.trickle_polls -= 1
            return self.trickle(handler, status, reply)
        self.reply(handler, status, reply, headers=headers)

    @staticmethod
    def route_name(method: str, path: str) -> str:
        if path.startswith("/jobs/"):
            return "poll"
        if path.startswith("/assets"):
            return "upload" if method == "POST" else "asset"
        return "submit"

    def _file(self, handler, auth: str):
        with self.lock:
            self.downloads += 1
            self.requests.append({"method": "GET", "path": "/files/", "query": {}, "auth": auth, "body": None,
                                  "bytes": 0})
            scripted = self.scripted("download")
        if scripted:
            return self.reply(handler, scripted[0], b"busy", content_type="text/plain")
        data = self.glb[: len(self.glb) // 2] if self.truncate_glb else self.glb
        self.serve_file(handler, data, self.file_fault)

    def handle_get(self, handler):
        self._handle(handler, "GET")

    def handle_post(self, handler):
        self._handle(handler, "POST")

    def poll(self, method: str, path: str):
        """The answer to a job poll (GET /jobs/{id}), or None when the request is not one."""
        match = re.fullmatch(r"/jobs/([\w-]+)", path)
        if method != "GET" or not match:
            return None
        scripted = self.scripted("poll")
        if scripted:
            return scripted
        job = self.jobs.get(match.group(1))
        if job is None:
            return self.error(404, "Job not found")
        job["polls"] += 1
        return 200, self.state(match.group(1), job)

    def file_url(self, name: str) -> str:
        return f"{self.root}/files/{name}.glb?sig=signed%2Btoken&expires=123"

    def route(self, method, path, query, body, auth):
        raise NotImplementedError
