"""A result download and the free space of its disk: a body of no announced size needs only the reserve
to start (not the whole download cap), and stops, its partial file removed, once the disk runs low."""
from __future__ import annotations

import os
import shutil

import pytest

from backend.protocol import ErrorCode, HostedOptions, JobError
from backend.providers import download
from servers.base import MiB, LocalServer, glb_bytes, tiny_doc

GLB = glb_bytes(tiny_doc(), bytes(36) + bytes(2 * MiB))  # a complete GLB of about 2 MB


class _Ctx:
    def __init__(self):
        self.logs: list[str] = []

    def check_cancel(self):
        pass

    def cancelled(self):
        return False

    def progress(self, *args, **kwargs):
        pass

    def log(self, text, level="info"):
        self.logs.append(text)


class _FileServer(LocalServer):
    """GET answers with `body`, or endless zeros when body is None, with no Content-Length (read to close)."""

    def __init__(self, body: bytes | None):
        self.body, self.sent = body, 0

    def handle_get(self, handler):
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "model/gltf-binary")
            handler.send_header("Connection", "close")
            handler.end_headers()
            if self.body is not None:
                handler.wfile.write(self.body)
                self.sent = len(self.body)
            while self.body is None and self.sent < 300 * MiB:
                handler.wfile.write(bytes(64 * 1024))
                self.sent += 64 * 1024
        except OSError:
            pass
        handler.close_connection = True

    def handle_post(self, handler):
        self.reply(handler, 405, {})


def _disk(monkeypatch, free_at):
    """shutil.disk_usage for the download's folder answers free_at(call number) bytes free."""
    calls, real = [], shutil.disk_usage

    def usage(path):
        calls.append(path)
        total, used, _ = real(path)
        return type(real(path))(total, used, free_at(len(calls)))

    monkeypatch.setattr(shutil, "disk_usage", usage)
    return calls


def _options(**kw) -> HostedOptions:
    return HostedOptions(download_tries=1, download_deadline=30.0, **kw)


def test_a_result_of_no_announced_size_needs_only_the_reserve_free(tmp_path, monkeypatch):
    # 100 MiB over the reserve: far less than the 1 GiB cap would need, far more than the 2 MB result
    calls = _disk(monkeypatch, lambda n: download.FREE_RESERVE + 100 * MiB)
    path = str(tmp_path / "r.glb")
    with _FileServer(GLB) as server:
        written = download.download(server.root + "/r.glb", path, _Ctx(), _options())
    assert written == len(GLB) and os.path.getsize(path) == len(GLB)
    assert calls, "the free space was never asked"


def test_a_download_stops_when_the_disk_runs_low_and_leaves_nothing(tmp_path, monkeypatch):
    # plenty free when it starts; then another program fills the disk
    calls = _disk(monkeypatch, lambda n: 10 * 1024 * MiB if n == 1 else download.FREE_RESERVE - 1)
    path, ctx = str(tmp_path / "r.glb"), _Ctx()
    with _FileServer(None) as server:
        with pytest.raises(JobError) as error:
            download.download(server.root + "/r.glb", path, ctx, _options(max_download_bytes=2 ** 40))
    assert error.value.code == ErrorCode.BAD_OUTPUT, error.value
    assert "left free in the output folder" in str(error.value) and "stopped after 17 MB" in str(error.value)
    assert len(calls) == 2  # at the start, then after the first 16 MiB
    assert os.listdir(tmp_path) == []  # no partial file, no result
    assert server.sent < 300 * MiB


def test_an_announced_size_the_disk_cannot_hold_is_refused_before_a_byte_is_written(tmp_path, monkeypatch):
    _disk(monkeypatch, lambda n: download.FREE_RESERVE + 1 * MiB)
    path = str(tmp_path / "r.glb")

    class Announced(_FileServer):
        def handle_get(self, handler):
            self.reply(handler, 200, GLB, content_type="model/gltf-binary")

    with Announced(GLB) as server:
        with pytest.raises(JobError, match="would leave less than 512 MiB free"):
            download.download(server.root + "/r.glb", path, _Ctx(), _options())
    assert os.listdir(tmp_path) == []
