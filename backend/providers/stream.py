"""Reading an HTTP response body as an untrusted server sends it: at most `limit` decoded bytes, before a
wall-clock deadline, with the per-read timeout of the socket on each read.

requests' own timeout is per socket read, so a body trickling in one byte a second never ends; and its
transparent decoding would inflate a small gzip body to any size. Here the raw bytes are read one socket
read at a time (`read1`), the time is checked between reads, and gzip/deflate are decoded here in bounded
steps, counted on the decoded bytes. Failures are requests exceptions, so the callers' retry logic
(http.NETWORK_ERRORS) treats them like any other network failure:

- DeadlineExceeded (a requests.Timeout): the deadline passed;
- requests.ReadTimeout: one read waited longer than the socket timeout;
- requests.exceptions.ChunkedEncodingError: the connection was cut, or fewer bytes came than announced;
- TooLarge / BodyError (not network errors): more than `limit` bytes, an unknown Content-Encoding.
"""
from __future__ import annotations

import http.client
import socket
import time
import zlib
from typing import Iterator

import requests
import urllib3

READ_SIZE = 64 * 1024


class DeadlineExceeded(requests.Timeout):
    """No complete answer before the overall deadline (a server that trickles, or a stalled body)."""


class BodyError(Exception):
    """A body this client does not take (the message says why)."""


class TooLarge(BodyError):
    def __init__(self, limit: int, done: int):
        super().__init__(f"more than {limit} bytes")
        self.limit, self.done = limit, done


def announced(response: requests.Response) -> int | None:
    """The Content-Length in bytes, or None when absent or not a number."""
    try:
        value = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _reader(response: requests.Response):
    """read(n) -> at most n raw bytes, from one socket read (b"" at the end)."""
    raw = response.raw
    if hasattr(raw, "read1"):  # urllib3 >= 2.1
        return lambda n: raw.read1(n, decode_content=False) or b""
    fp = getattr(raw, "_fp", None)  # urllib3 1.26: the http.client response
    if hasattr(fp, "read1"):
        return fp.read1
    return lambda n: raw.read(n, decode_content=False) or b""


def _decoder(response: requests.Response):
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    raise BodyError(f"an unsupported Content-Encoding {encoding[:40]!r}")


def _raw_chunks(response: requests.Response, deadline: float) -> Iterator[bytes]:
    read, length, got = _reader(response), announced(response), 0
    chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    while True:
        if time.monotonic() > deadline:
            raise DeadlineExceeded("no complete answer before the deadline")
        try:
            chunk = read(READ_SIZE)
        except (urllib3.exceptions.ReadTimeoutError, socket.timeout) as exc:
            raise requests.ReadTimeout(str(exc)) from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            raise requests.exceptions.ChunkedEncodingError(f"connection cut ({type(exc).__name__})") from None
        if not chunk:
            if length is not None and got < length and not chunked:
                raise requests.exceptions.ChunkedEncodingError(f"connection cut after {got} of {length} bytes")
            return
        got += len(chunk)
        yield chunk


def chunks(response: requests.Response, deadline: float, limit: int) -> Iterator[bytes]:
    """The decoded body in pieces; raises TooLarge as soon as more than `limit` bytes have come (decoded
    ones: a gzip bomb is stopped at `limit`), DeadlineExceeded once time.monotonic() passes `deadline`."""
    decoder, done = _decoder(response), 0
    for raw in _raw_chunks(response, deadline):
        pending = raw
        while pending:
            if decoder is None:
                out, pending = pending, b""
            else:
                try:
                    out = decoder.decompress(pending, READ_SIZE)
                except zlib.error as exc:
                    raise BodyError(f"a body that does not decode ({exc})") from None
                pending = decoder.unconsumed_tail
                if decoder.eof:
                    pending = b""
            done += len(out)
            if done > limit:
                raise TooLarge(limit, done - len(out))
            if out:
                yield out
    if decoder is not None:
        try:
            tail = decoder.flush()
        except zlib.error:
            tail = b""
        if done + len(tail) > limit:
            raise TooLarge(limit, done)
        if tail:
            yield tail


def read(response: requests.Response, deadline: float, limit: int) -> bytes:
    """The whole decoded body (see chunks); a Content-Length over `limit` is refused before reading."""
    length = announced(response)
    if length is not None and length > limit and not response.headers.get("Content-Encoding"):
        raise TooLarge(limit, 0)
    return b"".join(chunks(response, deadline, limit))
