"""Provider-neutral HTTP helpers for hosted backends: retries with backoff, streamed downloads.

Uses `requests` (bundled with Blender). API keys go in headers only; nothing here logs a header.
"""
from __future__ import annotations

import os
import random
import time

import requests

from .worker import Cancelled, JobError

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
AUTH, BALANCE, FORBIDDEN, BAD_REQUEST = "auth", "balance", "forbidden", "bad_request"
NETWORK, TIMEOUT, REMOTE, BAD_OUTPUT = "network", "timeout", "remote_error", "bad_output"


def sleep(seconds: float, ctx) -> None:
    """Sleep in small slices so a cancel takes effect at once."""
    end = time.monotonic() + seconds
    while True:
        ctx.check_cancel()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.05, left))


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter in [0.5, 1] of the step."""
    step = min(cap, base * 2**attempt)
    return step * (0.5 + random.random() / 2)


def request_with_retries(send, ctx, *, provider: str, tries: int, base: float, cap: float, stage: str,
                         fraction: float):
    """Call send() -> requests.Response; retry transient failures with backoff, announcing each wait
    in the progress text. Returns the response (any non-transient status) or raises JobError."""
    last = ""
    for attempt in range(tries):
        ctx.check_cancel()
        try:
            response = send()
            if response.status_code not in TRANSIENT_STATUS:
                return response
            last = f"HTTP {response.status_code}"
        except (requests.ConnectionError, requests.Timeout) as exc:
            last = network_reason(exc)
        if attempt + 1 < tries:
            delay = backoff(attempt, base, cap)
            ctx.progress(stage, 0, 0, fraction, f"{provider} busy ({last}), retrying in {delay:.0f} s")
            ctx.log(f"{provider}: {last}, retry {attempt + 1}/{tries - 1} in {delay:.1f} s", "warning")
            sleep(delay, ctx)
    raise JobError(NETWORK, f"{provider} is unavailable ({last}) after {tries} tries; try again later")


def network_reason(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "read timeout"
    return "connection failed"


def download(session: requests.Session, url: str, path: str, ctx, *, stage: str, fraction_range: tuple,
             text: str, tries: int = 3, base: float = 1.0, cap: float = 10.0) -> int:
    """Stream url to path (temp file, then rename) with byte-level progress; returns bytes written."""
    name = os.path.basename(url.split("?")[0]) or "download"
    lo, hi = fraction_range
    tmp = f"{path}.part"
    for attempt in range(tries):
        try:
            with session.get(url, stream=True, timeout=(10, 60)) as response:
                if response.status_code in TRANSIENT_STATUS and attempt + 1 < tries:
                    sleep(backoff(attempt, base, cap), ctx)
                    continue
                if response.status_code != 200:
                    raise JobError(BAD_OUTPUT, f"download of {name} failed: HTTP {response.status_code}")
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                with open(tmp, "wb") as f:
                    for chunk in response.iter_content(chunk_size=256 * 1024):
                        ctx.check_cancel()
                        f.write(chunk)
                        done += len(chunk)
                        share = done / total if total else 0.0
                        ctx.progress(stage, done, total, lo + (hi - lo) * min(share, 1.0),
                                     f"{text} {done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else text)
            os.replace(tmp, path)
            return done
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            if attempt + 1 >= tries:
                raise JobError(BAD_OUTPUT, f"download of {name} failed ({network_reason(exc)})") from None
            sleep(backoff(attempt, base, cap), ctx)
        except Cancelled:
            _remove(tmp)
            raise
    raise JobError(BAD_OUTPUT, f"download of {name} failed after {tries} tries")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def check_glb(path: str, url: str) -> None:
    from . import glb
    name = os.path.basename(url.split("?")[0]) or os.path.basename(path)
    try:
        glb.validate_glb(path)
    except ValueError as exc:
        raise JobError(BAD_OUTPUT, f"downloaded {name} is not a complete GLB: {exc}") from None

