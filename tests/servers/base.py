"""What every API stand-in shares: a threaded HTTP server on 127.0.0.1 whose `url` is the API root as a user
would type it (`http://127.0.0.1:PORT/v1`), JSON and file replies, dropped connections, and a tiny GLB."""
from __future__ import annotations

import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_ROOT = "/v1"  # every provider's API lives under it


def tiny_doc() -> dict:
    return {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                           "min": [0, 0, 0], "max": [1, 1, 0]}],
            "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36}], "buffers": [{"byteLength": 36}]}


def glb_bytes(doc: dict, binary: bytes) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return (b"glTF" + struct.pack("<II", 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(binary), 0x004E4942) + binary)


def tiny_glb() -> bytes:
    """A valid one-triangle GLB."""
    return glb_bytes(tiny_doc(), struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0))


# Complete, well-formed GLBs that make an importer read outside the file (or out of range).
HOSTILE_GLBS = {
    "buffer ../": lambda doc: doc["buffers"][0].update(uri="../../secret.bin"),
    "buffer absolute": lambda doc: doc["buffers"][0].update(uri="/etc/passwd"),
    "buffer file URL": lambda doc: doc["buffers"][0].update(uri="file:///etc/passwd"),
    "second buffer file": lambda doc: doc["buffers"].append({"byteLength": 4, "uri": "neighbour.bin"}),
    "image ../": lambda doc: doc.update(images=[{"uri": "../outside.png"}]),
    "image absolute": lambda doc: doc.update(images=[{"uri": "/tmp/outside.png", "mimeType": "image/png"}]),
    "bufferView index": lambda doc: doc["bufferViews"][0].update(buffer=3),
    "accessor index": lambda doc: doc["accessors"][0].update(bufferView=9),
    "view past the chunk": lambda doc: doc["bufferViews"][0].update(byteLength=4096),
}


def hostile_glb(kind: str) -> bytes:
    doc = tiny_doc()
    HOSTILE_GLBS[kind](doc)
    return glb_bytes(doc, struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0))


class LocalServer:
    """Subclasses implement handle_get(handler) and handle_post(handler); `root` is the server's origin,
    `url` its API root."""

    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle_get(self)

            def do_POST(self):
                server.handle_post(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.root + API_ROOT
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def reply(handler, status: int, body, content_type="application/json", headers=None, length: int | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data) if length is None else length))
            for name, value in (headers or {}).items():
                handler.send_header(name, str(value))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client went away (cancelled, or gave up waiting)
            pass

    @staticmethod
    def drop(handler):
        """Close the connection without (the rest of) an answer."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
