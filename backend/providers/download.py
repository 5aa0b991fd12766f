"""Result files: streamed from the provider's (signed) URL to the job folder, as an untrusted server sends
them, then checked as self-contained GLBs (glb.validate_glb).

Rules: no credentials are ever sent (a session of its own); `Accept-Encoding: identity` is asked for, and
a server that compresses anyway is decoded here, counted on the decoded bytes; a Content-Length over
options.max_download_bytes is refused before a byte is written, and a body that passes the cap is cut
there (the partial file removed); the output folder must keep FREE_RESERVE free after the announced size
before a byte is written, and keep it free while the body arrives (checked every FREE_CHECK_BYTES, so a
body of no announced size, or a disk another program fills meanwhile, stops there); redirects are
followed by hand, only to https (or to this machine when the URL itself was on this machine, as in
tests); the whole download ends within max(options.download_deadline, size / options.download_rate)
seconds (a trickling server is a TIMEOUT, not retried). Transient statuses and cut connections are
retried from the start.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from urllib.parse import urljoin, urlsplit

import requests

from .. import glb
from ..protocol import Cancelled, ErrorCode, HostedOptions, JobError
from . import http, stream

FREE_RESERVE = 512 * 1024 * 1024  # bytes a download must leave free on the output folder's disk
FREE_CHECK_BYTES = 16 * 1024 * 1024  # the free space is checked again after this many bytes written
MAX_REDIRECTS = 5


def file_name(url: str) -> str:
    """The last path segment of a URL, without query (signed URLs carry tokens there)."""
    return os.path.basename(url.split("?", 1)[0].split("#", 1)[0].rstrip("/")) or "download"


class _Attempt:
    """One try's shared state: the cancel flag for the helper thread and the bytes it wrote."""

    def __init__(self):
        self.stop = threading.Event()
        self.written = 0


class _Status(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def download(url: str, path: str, ctx, options: HostedOptions, *, fraction_range: tuple = (0.0, 1.0),
             text: str = "Downloading", stage: str = "download", label: str = "") -> int:
    """Stream url to path through a temp file renamed into place, with byte-level progress on `stage`, then
    check it is a complete, self-contained GLB; returns the bytes written. Raises JobError (BAD_OUTPUT, or
    TIMEOUT for a download slower than its deadline) naming the provider and the URL's file; never leaves
    a partial file at path. Every attempt logs the bytes it wrote before failing."""
    name, (lo, hi), tmp = file_name(url), fraction_range, f"{path}.part"
    what = f"{label} result {name}" if label else name
    tries, last = int(options.download_tries), ""
    with requests.Session() as session:
        session.headers["Accept-Encoding"] = "identity"
        try:
            for attempt in range(tries):
                ctx.check_cancel()
                state = _Attempt()
                job = (session, url, tmp, ctx, options, (stage, lo, hi, text), state)
                try:
                    done = http.cancellable(lambda job=job: _stream(*job), ctx,
                                            deadline=time.monotonic() + _deadline(options, None))
                    os.replace(tmp, path)
                    check_glb(path, url, label)
                    return done
                except Cancelled:
                    state.stop.set()
                    raise
                except JobError:
                    state.stop.set()
                    ctx.log(f"download of {what}: {state.written} bytes written, removed", "warning")
                    raise
                except stream.DeadlineExceeded:
                    state.stop.set()
                    ctx.log(f"download of {what}: {state.written} bytes written, removed", "warning")
                    raise JobError(ErrorCode.TIMEOUT, f"download of {what} did not finish in time (the server sends "
                                                      "too slowly); try again later") from None
                except _Status as exc:
                    if http.classify(exc.status) != http.TRANSIENT:
                        raise JobError(ErrorCode.BAD_OUTPUT, f"download of {what} failed: HTTP {exc.status}") from None
                    last = f"HTTP {exc.status}"
                except http.NETWORK_ERRORS as exc:
                    last = http.network_reason(exc)
                ctx.log(f"download of {what}: {state.written} bytes written before: {last}", "warning")
                _remove(tmp)
                if attempt + 1 < tries:
                    delay = http.backoff(attempt, float(options.retry_base), float(options.retry_cap))
                    ctx.progress(stage, 0, 0, lo, f"Download of {name} failed ({last}), retrying in {delay:.0f} s")
                    ctx.log(f"download of {name}: {last}, retry {attempt + 1}/{tries - 1} in {delay:.1f} s",
                            "warning")
                    http.sleep(delay, ctx)
            raise JobError(ErrorCode.BAD_OUTPUT, f"download of {what} failed ({last}) after {tries} tries")
        finally:
            _remove(tmp)


def _deadline(options: HostedOptions, size: int | None) -> float:
    """Seconds a download of `size` bytes (None: unknown, the cap) may take."""
    size = int(options.max_download_bytes) if size is None else size
    return max(float(options.download_deadline), size / max(float(options.download_rate), 1.0))


def _allowed(url: str, first: str) -> bool:
    """The first URL: http(s); a redirect: https, or this machine when the first URL was on it."""
    parts, origin = urlsplit(url), urlsplit(first)
    if url == first:
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    local = parts.hostname in http.LOCAL_HOSTS and origin.hostname in http.LOCAL_HOSTS
    return parts.scheme == "https" and bool(parts.hostname) or parts.scheme == "http" and local


def _get(session, url: str, deadline: float) -> requests.Response:
    """The answer to GET url after at most MAX_REDIRECTS redirects, each checked by _allowed."""
    first = url
    for _ in range(MAX_REDIRECTS + 1):
        if not _allowed(url, first):
            parts = urlsplit(url)
            raise JobError(ErrorCode.BAD_OUTPUT, f"download of {file_name(first)} refused: it leads to "
                                                 f"{parts.scheme}://{parts.hostname} (only https is followed)")
        if time.monotonic() > deadline:
            raise stream.DeadlineExceeded("redirects took too long")
        response = session.get(url, stream=True, timeout=(10, 60), allow_redirects=False)
        location = response.headers.get("Location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            return response
        response.close()
        url = urljoin(url, location)
    raise JobError(ErrorCode.BAD_OUTPUT, f"download of {file_name(first)} refused: more than {MAX_REDIRECTS} "
                                         "redirects")


def _stream(session, url, tmp, ctx, options, show, state: _Attempt) -> int:
    """One download attempt in a helper thread (see http.cancellable); the byte count. `state.stop` set
    means the job was cancelled (or the attempt abandoned)."""
    stage, lo, hi, text = show
    started, cap, name = time.monotonic(), int(options.max_download_bytes), file_name(url)
    response = _get(session, url, started + _deadline(options, None))
    with response:
        if response.status_code != 200:
            raise _Status(response.status_code)
        length = stream.announced(response)
        if length is not None and length > cap:
            raise JobError(ErrorCode.BAD_OUTPUT, f"download of {name} refused: {length / 1e6:.0f} MB announced, over "
                                                 f"the {cap / 1e6:.0f} MB download limit")
        need, free = length or 0, _free(tmp)
        if free - need < FREE_RESERVE:
            raise JobError(ErrorCode.BAD_OUTPUT, f"download of {name} refused: {need / 1e6:.0f} MB would leave less "
                                                 f"than {FREE_RESERVE >> 20} MiB free in the output folder "
                                                 f"({free / 1e6:.0f} MB free)")
        # Content-Length counts encoded bytes; decoded ones are counted against the cap.
        total = 0 if response.headers.get("Content-Encoding", "identity") != "identity" else length or 0
        deadline, shown = started + _deadline(options, length), -1.0
        try:
            with open(tmp, "wb") as f:
                for chunk in stream.chunks(response, deadline, cap):
                    if state.stop.is_set():
                        break
                    f.write(chunk)
                    state.written += len(chunk)
                    done = state.written
                    if done // FREE_CHECK_BYTES != (done - len(chunk)) // FREE_CHECK_BYTES:
                        _keep_free(tmp, name, done)
                    share = min(done / total, 1.0) if total else 0.0
                    if (share - shown >= 0.01 or done == total or not total) and not state.stop.is_set():
                        shown = share
                        ctx.progress(stage, done, total, lo + (hi - lo) * share,
                                     f"{text} {done / 1e6:.1f}/{total / 1e6:.1f} MB" if total
                                     else f"{text} {done / 1e6:.1f} MB")
        except stream.TooLarge:
            raise JobError(ErrorCode.BAD_OUTPUT, f"download of {name} stopped: more than the {cap / 1e6:.0f} MB "
                                                 "download limit") from None
        except stream.BodyError as exc:
            raise JobError(ErrorCode.BAD_OUTPUT, f"download of {name} refused: the server sent {exc}") from None
    if state.stop.is_set():
        _remove(tmp)
        raise Cancelled()
    return state.written


def _free(path: str) -> int:
    """Bytes free on the disk of path's folder."""
    return shutil.disk_usage(os.path.dirname(path) or ".").free


def _keep_free(tmp: str, name: str, done: int) -> None:
    """JobError(BAD_OUTPUT) once the disk under a download has less than FREE_RESERVE free."""
    free = _free(tmp)
    if free < FREE_RESERVE:
        raise JobError(ErrorCode.BAD_OUTPUT, f"download of {name} stopped after {done / 1e6:.0f} MB: less than "
                                             f"{FREE_RESERVE >> 20} MiB left free in the output folder "
                                             f"({free / 1e6:.0f} MB free); free some space, then Fetch Result "
                                             "in History")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def check_glb(path: str, url: str, label: str = "") -> None:
    """glb.validate_glb on a result file; JobError(BAD_OUTPUT) naming the provider and the URL's file when
    it is not a complete, self-contained GLB (the file is removed, so nothing bad gets imported)."""
    try:
        glb.validate_glb(path)
    except ValueError as exc:
        _remove(path)
        what = f"{label} result {file_name(url)}" if label else f"downloaded {file_name(url)}"
        raise JobError(ErrorCode.BAD_OUTPUT, f"{what} is not a complete GLB: {exc}") from None
