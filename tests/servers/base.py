"""What every API stand-in shares: a threaded HTTP server on 127.0.0.1 whose `url` is the API root as a user
would type it (`http://127.0.0.1:PORT/v1`), JSON and file replies, dropped connections, a tiny GLB, and
the hostile ways of sending a file or an answer (FILE_FAULTS, trickle, redirect)."""
from __future__ import annotations

import base64
import gzip
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_ROOT = "/v1"  # every provider's API lives under it


def tiny_doc() -> dict:
    return {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                           "min": [0, 0, 0], "max": [1, 1, 0]}],
            "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36}], "buffers": [{"byteLength": 36}]}


def glb_bytes(doc: dict, binary: bytes) -> bytes:
    return raw_glb(json.dumps(doc).encode(), binary)


def raw_glb(js: bytes, binary: bytes | None = None) -> bytes:
    """A GLB of these JSON chunk bytes (whatever they are: not UTF-8, nested 100 000 deep) and a binary chunk
    (None: none), each padded to 4 bytes as GLB asks."""
    js += b" " * (-len(js) % 4)
    chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
    if binary is not None:
        binary += b"\0" * (-len(binary) % 4)
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunks)) + chunks


def tiny_glb() -> bytes:
    """A valid one-triangle GLB."""
    return glb_bytes(tiny_doc(), struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0))


def png_head(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk: all a header reader sees of a picture of that size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + b"\0\0\0\0"


def png_data_uri(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_head(width, height)).decode()


# Complete, well-formed GLBs that make an importer read outside the file (or out of range), or decode more
# pixels than any result holds.
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
    "texture 60000²": lambda doc: doc.update(images=[{"uri": png_data_uri(60000, 60000)}]),
    "textures together": lambda doc: doc.update(images=[{"uri": png_data_uri(8192, 8192)}] * 5),
    "texture of no known format": lambda doc: doc.update(images=[{"uri": "data:image/png;base64,AAAAAAAA"}]),
    "65 images": lambda doc: doc.update(images=[{"uri": png_data_uri(1, 1)}] * 65),  # over glb.MAX_IMAGES
}


# Malformed or oversized GLBs whose checking must end as a refusal (ValueError; a worker's bad_output), never
# as a crash: each a complete file, its header's length right.
MALFORMED_GLBS = {
    "JSON 100 000 deep": lambda: raw_glb(b"[" * 100_000 + b"]" * 100_000),
    "12 bytes": lambda: b"glTF" + struct.pack("<II", 2, 12),
    "JSON not UTF-8": lambda: raw_glb(b'{"asset": {"version": "2.0\xff\xfe"}}'),
    "10M zeros": lambda: glb_bytes(dict(tiny_doc(), accessors=[{"componentType": 5126, "count": 10_000_000,
                                                               "type": "VEC3"}]), bytes(36)),
}


def hostile_glb(kind: str) -> bytes:
    doc = tiny_doc()
    HOSTILE_GLBS[kind](doc)
    return glb_bytes(doc, struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0))


MiB = 1024 * 1024
HOSTILE_SIZE = 300 * MiB  # what the endless streams below send at most
_BOMB: list = []


def gzip_bomb() -> bytes:
    """300 MiB of zeros, gzip-compressed to about 300 kB (made once)."""
    if not _BOMB:
        _BOMB.append(gzip.compress(bytes(HOSTILE_SIZE), compresslevel=9))
    return _BOMB[0]


# How a server may send a result file (LocalServer.serve_file `fault`); "redirect:URL" answers 307 to URL.
FILE_FAULTS = ("huge length", "exabyte length", "no length", "false length", "chunked", "gzip bomb", "trickle")


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

    def serve_file(self, handler, data: bytes, fault: str | None = None, trickle_s: float = 1.0) -> None:
        """Send a result file, the hostile way `fault` names; `self.file_bytes_sent` counts what went out."""
        self.file_bytes_sent = 0
        headers = {"Content-Type": "model/gltf-binary"}
        if not fault:
            return self.reply(handler, 200, data, content_type="model/gltf-binary")
        if fault.startswith("redirect:"):
            return self.reply(handler, 307, b"", headers={"Location": fault[len("redirect:"):]}, length=0)
        body, piece, chunked = None, 64 * 1024, False
        if fault == "huge length":
            headers["Content-Length"] = str(50 * 1000 ** 3)
        elif fault == "exabyte length":  # under a cap of 2**62, over any disk's free space
            headers["Content-Length"] = str(2 ** 60)
        elif fault == "false length":
            headers["Content-Length"] = str(512 * 1024)  # under a 1 MiB cap, then far more
        elif fault == "chunked":
            headers["Transfer-Encoding"], chunked = "chunked", True
        elif fault == "gzip bomb":
            body = gzip_bomb()
            headers.update({"Content-Encoding": "gzip", "Content-Length": str(len(body))})
        elif fault == "trickle":
            body, piece = data, 1
            headers["Content-Length"] = str(len(data))
        elif fault == "no length":
            headers["Connection"] = "close"
        else:
            raise ValueError(f"unknown file fault {fault!r}")
        try:
            handler.send_response(200)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            source = body if body is not None else None
            while self.file_bytes_sent < (len(source) if source is not None else HOSTILE_SIZE):
                start = self.file_bytes_sent
                chunk = source[start:start + piece] if source is not None else bytes(piece)
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                self.file_bytes_sent += len(chunk)
                if fault == "trickle":
                    handler.wfile.flush()
                    time.sleep(trickle_s)
            if chunked:
                handler.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client gave up: what it should do
            pass
        handler.close_connection = True

    def trickle(self, handler, status: int, body, seconds: float = 1.0) -> None:
        """A JSON answer whose body comes one byte every `seconds` (headers at once)."""
        data = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            for i in range(len(data)):
                handler.wfile.write(data[i:i + 1])
                handler.wfile.flush()
                time.sleep(seconds)
        except OSError:
            pass
        handler.close_connection = True

    @staticmethod
    def drop(handler):
        """Close the connection without (the rest of) an answer."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
