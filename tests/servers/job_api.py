"""What the job-style API stand-ins (EmpirioLabs, Scenario) share: a threaded HTTP server on 127.0.0.1,
JSON replies, scripted statuses per route, request records, and GLB files served without auth."""
from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from servers.runware_server import tiny_glb


class JobApiServer:
    """Subclasses implement route(method, path, query, body, auth) -> (status, body[, headers]).

    Records: `requests` ({"method", "path", "query", "auth", "body", "bytes"}), `downloads`.
    Scripts: `statuses[route]` a list of statuses answered (in order) before the normal answer of a
    route ("submit", "poll", "upload", "asset", "download"), with `error_body` and `headers` for them."""

    prefix = ""  # URL path prefix of the API

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
        for name, value in copy.deepcopy(scenario or {}).items():
            if not hasattr(self, name):
                raise AttributeError(f"unknown behaviour {name!r}")
            setattr(self, name, value)

    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.root + self.prefix
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

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
            answer = self.route(method, parts.path[len(self.prefix):], parse_qs(parts.query), body, auth)
        status, reply = answer[0], answer[1]
        headers = answer[2] if len(answer) > 2 else {}
        self.reply(handler, status, reply, headers=headers)

    def _file(self, handler, auth: str):
        with self.lock:
            self.downloads += 1
            self.requests.append({"method": "GET", "path": "/files/", "query": {}, "auth": auth, "body": None,
                                  "bytes": 0})
            scripted = self.scripted("download")
        if scripted:
            return self.reply(handler, scripted[0], b"busy", content_type="text/plain")
        data = self.glb[: len(self.glb) // 2] if self.truncate_glb else self.glb
        self.reply(handler, 200, data, content_type="model/gltf-binary")

    @staticmethod
    def reply(handler, status: int, body, content_type="application/json", headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, str(value))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client went away (cancelled)
            pass

    def file_url(self, name: str) -> str:
        return f"{self.root}/files/{name}.glb?sig=signed%2Btoken&expires=123"

    def route(self, method, path, query, body, auth):
        raise NotImplementedError
