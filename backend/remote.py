"""Provider-neutral HTTP helpers for hosted backends: status classification, retries with backoff and
jitter, compact JSON posts, poll cadence, streamed downloads with byte progress, the GLB check, and
scrubbing secrets out of any text a user or log may see.

Uses `requests` (bundled with Blender). API keys travel in headers only: never in a URL, a log line,
a progress text or an error message; downloads of result files carry no credentials at all.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from typing import Callable, Iterator

import requests

from .worker import Cancelled, JobError

# Statuses worth another try: request timeout, rate limit / queue full, server-side failures.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Of those, the ones after which the server may have acted on the request (it failed while or after
# processing it); 408/429/503 mean it was turned away before any work.
AMBIGUOUS_STATUS = frozenset({500, 502, 504})

# JobError codes shared by hosted backends.
AUTH, BALANCE, FORBIDDEN, BAD_REQUEST = "auth", "balance", "forbidden", "bad_request"
NOT_FOUND, NETWORK, TIMEOUT, REMOTE, BAD_OUTPUT = "not_found", "network", "timeout", "remote_error", "bad_output"
OK, TRANSIENT = "ok", "transient"

_BY_STATUS = {400: BAD_REQUEST, 401: AUTH, 402: BALANCE, 403: FORBIDDEN, 404: NOT_FOUND}


def classify(status: int) -> str:
    """OK, TRANSIENT (retry), or the JobError code for a failure that another try will not fix."""
    if 200 <= status < 300:
        return OK
    if status in TRANSIENT_STATUS:
        return TRANSIENT
    return _BY_STATUS.get(status, REMOTE)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number attempt+1: base * 2**attempt, capped, with jitter in [0.5, 1] of it
    (so clients that failed together do not come back together)."""
    step = min(cap, base * 2 ** attempt)
    return step * (0.5 + random.random() / 2)


def backoff_schedule(tries: int, base: float, cap: float) -> list[float]:
    """The un-jittered upper bounds of the waits between `tries` attempts."""
    return [min(cap, base * 2 ** attempt) for attempt in range(max(0, tries - 1))]


def poll_delays(first: float, factor: float, cap: float) -> Iterator[float]:
    """Poll cadence: first, then growing by factor, capped (e.g. 1, 1.5, 2.25, ... 10, 10, ...)."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)


def sleep(seconds: float, ctx) -> None:
    """Sleep in slices of at most 50 ms so a cancel takes effect at once (raises worker.Cancelled)."""
    end = time.monotonic() + seconds
    while True:
        ctx.check_cancel()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.05, left))


def cancellable(fn: Callable, ctx, *, slice_s: float = 0.05):
    """fn() run in a daemon thread: its result or its exception, but worker.Cancelled as soon as the
    job is cancelled, even while fn is blocked on a slow or stalled connection (the abandoned call
    ends by its own timeout; its result is dropped)."""
    box: dict = {}
    done = threading.Event()

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="http", daemon=True).start()
    while not done.wait(slice_s):
        ctx.check_cancel()
    if "error" in box:
        raise box["error"]
    return box["value"]


def encode_json(body) -> bytes:
    """Compact JSON (no spaces after separators): the fewest bytes on the wire."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_json(response: requests.Response):
    """The response's JSON, or None when the body is not JSON (a proxy's HTML page, say)."""
    try:
        return response.json()
    except ValueError:
        return None


# What a request can fail with on the way (no answer, or an answer cut short): worth another try.
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                  requests.exceptions.ContentDecodingError)


def network_reason(exc: Exception) -> str:
    """A short, secret-free description of a requests network failure."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.Timeout):
        return "read timeout"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection cut"
    text = str(exc).lower()
    if "reset" in text or "aborted" in text or "disconnected" in text:
        return "connection reset"
    return "connection failed"


def request_with_retries(send: Callable[[], requests.Response], ctx, *, provider: str, tries: int = 4,
                         base: float = 1.0, cap: float = 30.0, stage: str = "", fraction: float = 0.0,
                         acted: Callable[[], bool] | None = None,
                         wait_hint: Callable[[requests.Response], float | None] | None = None
                         ) -> requests.Response | None:
    """Call send() until it returns a non-transient response; network failures and TRANSIENT_STATUS
    are retried `tries` times in all with backoff, each wait announced in the progress text
    ("{provider} busy (HTTP 503), retrying in 4 s").

    acted: asked before re-sending after a failure where the server may have acted on the request
    (a network failure after connecting, HTTP 500/502/504). When it returns True nothing is re-sent
    and None is returned: the caller treats the request as done (e.g. a paid task that was accepted).
    wait_hint: seconds a transient answer asks to wait (Retry-After, a body field); the wait is at least
    the backoff and at most cap.
    Raises JobError(NETWORK) when every try failed."""
    last, ambiguous, hint = "", False, None
    for attempt in range(tries):
        ctx.check_cancel()
        if attempt and ambiguous and acted is not None and acted():
            ctx.log(f"{provider}: the request went through despite the {last}; not sending it again")
            return None
        try:
            response = cancellable(send, ctx)
            if response.status_code not in TRANSIENT_STATUS:
                return response
            last = f"HTTP {response.status_code}"
            ambiguous = response.status_code in AMBIGUOUS_STATUS
            hint = wait_hint(response) if wait_hint else None
        except NETWORK_ERRORS as exc:
            last = network_reason(exc)
            ambiguous = not isinstance(exc, requests.ConnectTimeout)
        if attempt + 1 < tries:
            delay = backoff(attempt, base, cap)
            if hint:
                delay = min(cap, max(delay, hint))
                hint = None
            ctx.progress(stage, 0, 0, fraction, f"{provider} busy ({last}), retrying in {delay:.0f} s")
            ctx.log(f"{provider}: {last}, retry {attempt + 1}/{tries - 1} in {delay:.1f} s", "warning")
            sleep(delay, ctx)
    raise JobError(NETWORK, f"{provider} is unavailable ({last}) after {tries} tries; try again later")


def post_json_with_retries(session: requests.Session, url: str, body, headers: dict | None, ctx, *,
                           provider: str, tries: int = 4, base: float = 1.0, cap: float = 30.0,
                           stage: str = "", fraction: float = 0.0, timeout=(10, 120),
                           acted: Callable[[], bool] | None = None) -> requests.Response | None:
    """POST body as compact JSON with request_with_retries; the encoded body is built once and
    re-sent as is. headers are merged over the session's (keep credentials there or here, never in
    url). Returns the first non-transient response (the caller maps its status), or None (see acted)."""
    data = encode_json(body)
    merged = {"Content-Type": "application/json", **(headers or {})}
    return request_with_retries(lambda: session.post(url, data=data, headers=merged, timeout=timeout), ctx,
                                provider=provider, tries=tries, base=base, cap=cap, stage=stage,
                                fraction=fraction, acted=acted)


def retry_after(response: requests.Response) -> float | None:
    """The Retry-After header in seconds (the delta form), if any."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def file_name(url: str) -> str:
    """The last path segment of a URL, without query (signed URLs carry tokens there)."""
    return os.path.basename(url.split("?", 1)[0].split("#", 1)[0].rstrip("/")) or "download"


def download(url: str, path: str, ctx, *, stage: str = "download", fraction_range: tuple = (0.0, 1.0),
             text: str = "Downloading", session: requests.Session | None = None, tries: int = 3,
             base: float = 1.0, cap: float = 10.0, timeout=(10, 60)) -> int:
    """Stream url to path through a temp file renamed into place, with byte-level progress on `stage`;
    returns the bytes written. Transient statuses and cut connections are retried from the start.
    No credentials are sent: pass a session only for headers the file host itself needs.
    Raises JobError(BAD_OUTPUT) naming the URL's file, never leaves a partial file at path."""
    name = file_name(url)
    lo, hi = fraction_range
    tmp = f"{path}.part"
    own = session is None
    session = session or requests.Session()
    last = ""
    try:
        for attempt in range(tries):
            ctx.check_cancel()
            try:
                stop = threading.Event()
                try:
                    done = cancellable(
                        lambda stop=stop: _stream(session, url, tmp, ctx, stage, lo, hi, text, timeout, stop), ctx)
                except Cancelled:
                    stop.set()
                    raise
                if done is not None:
                    os.replace(tmp, path)
                    return done
                last = "incomplete"
            except _Status as exc:
                if classify(exc.status) != TRANSIENT:
                    raise JobError(BAD_OUTPUT, f"download of {name} failed: HTTP {exc.status}") from None
                last = f"HTTP {exc.status}"
            except NETWORK_ERRORS as exc:
                last = network_reason(exc)
            _remove(tmp)
            if attempt + 1 < tries:
                delay = backoff(attempt, base, cap)
                ctx.progress(stage, 0, 0, lo, f"Download of {name} failed ({last}), retrying in {delay:.0f} s")
                ctx.log(f"download of {name}: {last}, retry {attempt + 1}/{tries - 1} in {delay:.1f} s", "warning")
                sleep(delay, ctx)
        raise JobError(BAD_OUTPUT, f"download of {name} failed ({last}) after {tries} tries")
    finally:
        _remove(tmp)
        if own:
            session.close()


class _Status(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _stream(session, url, tmp, ctx, stage, lo, hi, text, timeout, stop) -> int | None:
    """One download attempt; the byte count, or None when fewer bytes came than announced.
    Runs in a helper thread (see cancellable); `stop` set means the job was cancelled."""
    with session.get(url, stream=True, timeout=timeout) as response:
        if response.status_code != 200:
            raise _Status(response.status_code)
        # Content-Length counts encoded bytes; with a Content-Encoding, iter_content yields decoded ones.
        total = 0 if response.headers.get("Content-Encoding") else int(response.headers.get("Content-Length") or 0)
        done, shown = 0, -1.0
        with open(tmp, "wb") as f:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                if stop.is_set():
                    break
                f.write(chunk)
                done += len(chunk)
                share = min(done / total, 1.0) if total else 0.0
                if (share - shown >= 0.01 or done == total or not total) and not stop.is_set():
                    shown = share
                    ctx.progress(stage, done, total, lo + (hi - lo) * share,
                                 f"{text} {done / 1e6:.1f}/{total / 1e6:.1f} MB" if total
                                 else f"{text} {done / 1e6:.1f} MB")
    if stop.is_set():
        _remove(tmp)
        raise Cancelled()
    if total and done < total:
        return None
    return done


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def check_glb(path: str, url: str) -> None:
    """glb.validate_glb on a downloaded file; JobError(BAD_OUTPUT) naming the URL's file when it
    is not a complete GLB (the file is removed, so nothing half-written gets imported)."""
    from . import glb
    try:
        glb.validate_glb(path)
    except ValueError as exc:
        _remove(path)
        raise JobError(BAD_OUTPUT, f"downloaded {file_name(url)} is not a complete GLB: {exc}") from None


def scrub(text: str, *secrets: str) -> str:
    """text with every secret (of 4+ characters) replaced by '***'."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class ScrubbedContext:
    """A job context whose progress, log and remote_task texts pass through scrub(): whatever a
    provider echoes back (an error message quoting the key, say) never reaches the user or a log."""

    def __init__(self, ctx, *secrets: str):
        self._ctx = ctx
        self._secrets = secrets
        self.output_dir = ctx.output_dir

    def scrub(self, text: str) -> str:
        return scrub(text, *self._secrets)

    def progress(self, stage: str, step: int, total: int, fraction: float, text: str = "") -> None:
        self._ctx.progress(stage, step, total, fraction, self.scrub(text))

    def log(self, text: str, level: str = "info") -> None:
        self._ctx.log(self.scrub(text), level)

    def remote_task(self, provider: str, task_id: str, **fields) -> None:
        self._ctx.remote_task(provider, task_id, **fields)

    def cancelled(self) -> bool:
        return self._ctx.cancelled()

    def check_cancel(self) -> None:
        self._ctx.check_cancel()

