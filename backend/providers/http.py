"""The one HTTP client of the hosted providers: API URLs, status classification and one-line status
errors, retries with backoff and jitter, one-shot calls for polling; result files: download.py.

Every API call goes through Client.send (retried by Client.request), every result file through
download.download: the two places for caps, deadlines and redirect rules. API calls never follow a
redirect (a 3xx is an error: the body and the key are never sent elsewhere), read at most
MAX_JSON_BYTES of answer, and end by options.request_deadline seconds whatever the server trickles
(stream.py). Ids a provider sends (or a resumed task carries) go into URL paths only through path_id:
checked against the provider's format, then quoted.

URL rule: a provider's API root ends in /v1 (its registry default_url); a user's override may be written
with or without the trailing /v1 and slash (normalize_url), and provider paths are relative to that root.

Uses `requests` (bundled with Blender). API keys travel in headers only: never in a URL, a log line,
a progress text or an error message; downloads of result files carry no credentials at all.
"""
from __future__ import annotations

import json
import random
import re
import threading
import time
from typing import Callable, Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from ..protocol import ErrorCode, HostedOptions, JobError
from . import stream

# Statuses worth another try: request timeout, rate limit / queue full, server-side failures.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Of those, the ones after which the server may have acted on the request (it failed while or after
# processing it); 408/429/503 mean it was turned away before any work.
AMBIGUOUS_STATUS = frozenset({500, 502, 504})
OK, TRANSIENT = "ok", "transient"
_BY_STATUS = {400: ErrorCode.BAD_REQUEST, 401: ErrorCode.AUTH, 402: ErrorCode.BALANCE, 403: ErrorCode.FORBIDDEN,
              404: ErrorCode.NOT_FOUND}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
API_ROOT = "/v1"
# What a request can fail with on the way (no answer, or an answer cut short): worth another try.
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                  requests.exceptions.ContentDecodingError)
MAX_JSON_BYTES = 8 * 1024 * 1024  # an API answer larger than this is refused
MAX_TEXT = 300  # characters of a provider's message shown to the user
ID_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,128}")  # EmpirioLabs job_id, Scenario jobId / assetId


def classify(status: int):
    """OK, TRANSIENT (retry), or the ErrorCode of a failure that another try will not fix."""
    if 200 <= status < 300:
        return OK
    if status in TRANSIENT_STATUS:
        return TRANSIENT
    return _BY_STATUS.get(status, ErrorCode.REMOTE)


def one_line(text, limit: int = MAX_TEXT) -> str:
    """A provider's text as one line of at most `limit` characters (cut with an ellipsis)."""
    text = " ".join(str(text or "")[: limit * 4].split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def type_error(label: str, field: str, value) -> JobError:
    """The error for an answer whose field has an unexpected JSON type (or is missing)."""
    return JobError(ErrorCode.BAD_OUTPUT, f"{label} answered an unexpected {field} ({type(value).__name__})")


def path_id(label: str, field: str, value, pattern: re.Pattern = ID_FORMAT, code=ErrorCode.BAD_OUTPUT) -> str:
    """An id for a URL path: checked against the provider's format, then quoted; a JobError naming the
    provider and the field (never a request) for anything else (`../../admin?x=1#`, say)."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = one_line(repr(value), 60) if isinstance(value, str) else type(value).__name__
        raise JobError(code, f"{label} {field} {shown} is not a valid {label} id; not requested")
    return quote(value, safe="")


def normalize_url(url: str, default: str, label: str) -> str:
    """The API root for a user's URL ("" : default): https, or plain http only to this machine (credentials
    are in a header); "https://h", "https://h/", "https://h/v1" and "https://h/v1/" all give https://h/v1."""
    url = str(url or "").strip() or default
    parts = urlsplit(url)
    if "@" in parts.netloc:  # never quoted back: the part before @ is a user name and password
        raise JobError(ErrorCode.BAD_SETTINGS, f"{label} URL must not carry a user name or password; the key goes "
                                               f"in the add-on preferences. Check the {label} URL setting")
    local = parts.hostname in LOCAL_HOSTS
    if not (parts.scheme == "https" and parts.hostname or parts.scheme == "http" and local):
        raise JobError(ErrorCode.BAD_SETTINGS, f"{label} URL must be https://... (plain http only to this machine), "
                                               f"got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(API_ROOT):
        path += API_ROOT
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def status_error(label: str, status: int, message: str = "", hints: dict | None = None, note: str = "",
                 trace: str = "") -> JobError:
    """The one-line JobError for a non-transient status. message: what the body says; hints: the
    provider's texts ("key": what was rejected, "auth_fix", "balance", "balance_fix", "rate", "rate_fix",
    "forbidden"), a "*_fix" replacing the body's message; note: a parenthesised detail after the head
    ("parameter x"); trace: appended to request and server errors."""
    hints = hints or {}
    code = classify(status)
    code = ErrorCode.RATE_LIMIT if status == 429 else code if isinstance(code, ErrorCode) else ErrorCode.REMOTE
    heads = {ErrorCode.AUTH: (f"{label} rejected {hints.get('key', 'the API key')} (HTTP 401)", "auth_fix"),
             ErrorCode.BALANCE: (f"{label}: {hints.get('balance', 'insufficient balance')} (HTTP 402)", "balance_fix"),
             ErrorCode.RATE_LIMIT: (f"{label} rate limit reached (HTTP 429{hints.get('rate', '')})", "rate_fix"),
             ErrorCode.FORBIDDEN: (f"{label}: {hints.get('forbidden', 'this API key may not use TRELLIS.2')} "
                                   "(HTTP 403)", ""),
             ErrorCode.BAD_REQUEST: (f"{label} rejected the request", "")}
    head, fix = heads.get(code, (f"{label} answered HTTP {status}", ""))
    text = head + (f" ({note})" if note else "")
    tail = hints.get(fix) if fix else None
    text += f": {tail}" if tail else (f": {one_line(message)}" if one_line(message) else "")
    if trace and code not in heads or trace and code == ErrorCode.BAD_REQUEST:
        text += f" (trace {trace})"
    return JobError(code, text)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number attempt+1: base * 2**attempt, capped, with jitter in [0.5, 1] of it
    (so clients that failed together do not come back together)."""
    return min(cap, base * 2 ** attempt) * (0.5 + random.random() / 2)


def poll_delays(first: float, factor: float, cap: float) -> Iterator[float]:
    """Poll cadence: first, then growing by factor, capped (e.g. 1, 1.5, 2.25, ... 10, 10, ...)."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)


def sleep(seconds: float, ctx) -> None:
    """Sleep in slices of at most 50 ms so a cancel takes effect at once (raises Cancelled)."""
    end = time.monotonic() + seconds
    while True:
        ctx.check_cancel()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.05, left))


def cancellable(fn: Callable, ctx, *, slice_s: float = 0.05, deadline: float | None = None):
    """fn() run in a daemon thread: its result or its exception, but Cancelled as soon as the job is
    cancelled, and stream.DeadlineExceeded once time.monotonic() passes `deadline` (plus a second, so fn's
    own deadline check normally fires first), even while fn is blocked on a stalled or trickling
    connection (the abandoned call ends by its own timeout or deadline; its result is dropped)."""
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
        if deadline is not None and time.monotonic() > deadline + 1.0:
            raise stream.DeadlineExceeded("no answer before the deadline")
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
    except (ValueError, RecursionError):  # RecursionError: a hostile nesting depth
        return None


def network_reason(exc: Exception) -> str:
    """A short, secret-free description of a requests network failure."""
    if isinstance(exc, stream.DeadlineExceeded):
        return "no complete answer in time"
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.Timeout):
        return "read timeout"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection cut"
    text = str(exc).lower()
    return "connection reset" if "reset" in text or "aborted" in text or "disconnected" in text \
        else "connection failed"


def retry_after(response: requests.Response) -> float | None:
    """The Retry-After header in seconds (the delta form), if any."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class Unusable(JobError):
    """An answer that arrived but cannot be read (too large, cut, not a JSON object): the call may have acted."""


class Client:
    """JSON calls to one API root: transient failures retried with backoff, other failures mapped by the
    provider's error(status, body) -> JobError. Credentials live in the session's headers only."""

    def __init__(self, ctx, label: str, options: HostedOptions, default_url: str, headers: dict,
                 error: Callable[[int, object], JobError], wait_hint=None, poll_first: float = 2.0):
        self.ctx, self.label, self.opt = ctx, label, options
        self.poll_first = options.poll_first if options.poll_first is not None else poll_first
        self.url = normalize_url(options.base_url, default_url, label)
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.session.headers["Accept-Encoding"] = "gzip, deflate"  # decoded in stream.py, capped
        self.error = error
        self.wait_hint = wait_hint or retry_after
        self.sent = 0  # request body bytes, all calls

    def deadline(self, cap: float | None = None) -> float:
        """When a call started now must have ended (options.request_deadline), at the latest `cap`."""
        end = time.monotonic() + float(self.opt.request_deadline)
        return end if cap is None else min(end, cap)

    def send(self, method: str, path: str = "", data: bytes | None = None, params: dict | None = None,
             read_timeout: float = 120.0) -> requests.Response:
        """One call (every API request goes through here): no redirects (a 3xx is a JobError naming the
        status), at most MAX_JSON_BYTES of body, read before request_deadline (stream.DeadlineExceeded)."""
        deadline = self.deadline()
        self.sent += len(data or b"")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        response = self.session.request(method, self.url + path, data=data, headers=headers, params=params,
                                        timeout=(10, read_timeout), stream=True, allow_redirects=False)
        try:
            if 300 <= response.status_code < 400:
                raise JobError(ErrorCode.REMOTE, f"{self.label} answered HTTP {response.status_code} (a redirect); "
                                                 f"API calls are never redirected: check the {self.label} URL")
            response._content = stream.read(response, deadline, MAX_JSON_BYTES)
            response._content_consumed = True  # the connection goes back to the pool
        except stream.TooLarge:
            raise Unusable(ErrorCode.BAD_OUTPUT, f"{self.label} sent an answer over {MAX_JSON_BYTES >> 20} MiB; "
                                             "not read") from None
        except stream.BodyError as exc:
            raise Unusable(ErrorCode.BAD_OUTPUT, f"{self.label} sent {exc}") from None
        finally:
            response.close()
        return response

    def once(self, method: str, path: str = "", body=None):
        """One call without retries (polling keeps its own cadence): (status, JSON or None); raises
        NETWORK_ERRORS."""
        data = encode_json(body) if body is not None else None
        response = self.send(method, path, data, read_timeout=float(self.opt.read_timeout))
        return response.status_code, read_json(response)

    def request(self, method: str, path: str = "", body=None, *, stage: str = "", fraction: float = 0.0,
                params: dict | None = None, acted: Callable[[], bool] | None = None) -> dict | None:
        """The JSON object of a 2xx answer, retried through transient failures (each wait announced:
        "{label} busy (HTTP 503), retrying in 4 s"); JobError otherwise.

        acted: asked before re-sending after a failure where the server may have acted on the request
        (a network failure after connecting, HTTP 500/502/504). When it returns True nothing is re-sent
        and None is returned: the caller treats the request as done (e.g. a paid task that was accepted).
        A wait hint (Retry-After, a body field) lengthens the wait, at most to retry_cap."""
        data = encode_json(body) if body is not None else None
        read = float(self.opt.read_timeout) if method == "GET" else 120.0
        tries, base, cap = int(self.opt.retry_tries), float(self.opt.retry_base), float(self.opt.retry_cap)
        last, ambiguous, hint, status = "", False, None, 0
        for attempt in range(tries):
            self.ctx.check_cancel()
            if attempt and ambiguous and acted is not None and acted():
                self.ctx.log(f"{self.label}: the request went through despite the {last}; not sending it again")
                return None
            try:
                response = cancellable(lambda: self.send(method, path, data, params, read), self.ctx,
                                       deadline=self.deadline())
                if response.status_code not in TRANSIENT_STATUS:
                    return self._answer(response)
                status = response.status_code
                last, ambiguous, hint = f"HTTP {status}", status in AMBIGUOUS_STATUS, self.wait_hint(response)
            except Unusable:  # the call arrived and may have acted (a paid task): ask before giving up
                if acted is not None and method != "GET" and acted():
                    self.ctx.log(f"{self.label}: the request went through despite an unusable answer")
                    return None
                raise
            except NETWORK_ERRORS as exc:
                last, ambiguous, status = network_reason(exc), not isinstance(exc, requests.ConnectTimeout), 0
            if attempt + 1 < tries:
                delay = backoff(attempt, base, cap)
                if hint:
                    delay, hint = min(cap, max(delay, hint)), None
                self.ctx.progress(stage, 0, 0, fraction, f"{self.label} busy ({last}), retrying in {delay:.0f} s")
                self.ctx.log(f"{self.label}: {last}, retry {attempt + 1}/{tries - 1} in {delay:.1f} s", "warning")
                sleep(delay, self.ctx)
        code = ErrorCode.RATE_LIMIT if status == 429 else ErrorCode.NETWORK
        raise JobError(code, f"{self.label} is unavailable ({last}) after {tries} tries; try again later")

    def _answer(self, response: requests.Response) -> dict:
        answer = read_json(response)
        if classify(response.status_code) != OK:
            raise self.error(response.status_code, answer)
        if not isinstance(answer, dict):
            raise Unusable(ErrorCode.BAD_OUTPUT, f"{self.label} answered HTTP {response.status_code} without a JSON "
                                             "object")
        return answer
