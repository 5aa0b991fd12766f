"""Snapshots known by their bytes. The background Blender checks the images of each snapshot it writes as this
Blender's snapshot check would (twins.pictures_problem: each picture's size from its header, which copies every
packed image's bytes out: 118 ms on the main thread for a 1M-face result with 4096² textures) and answers the
file's SHA-256 with it (blend_worker). This Blender hashes the file again in a thread of its own (about 0.17 s
for 200 MB, none of it on the main thread: hashlib lets go of the GIL) and, where the two agree, skips those
copies for as long as the file is the one hashed: its device, inode, size, mtime and ctime unchanged. A snapshot
changed since, one written in an earlier session, or one whose hash does not agree is checked in full; what a
snapshot holds besides its pictures (snapshot_check.problem) is checked always. The hash only vouches for what
the background Blender wrote from data: a background Blender that runs code of an attacker's runs it as the user
anyway."""
from __future__ import annotations

import hashlib
import os
import threading
import time

CHUNK = 1 << 20
WAIT_SECONDS = 10.0  # a hash not done by then (a slow disk): the snapshot is checked in full
MOST = 256  # snapshots remembered (the oldest forgotten first)
HEX = frozenset("0123456789abcdef")

_LOCK = threading.Lock()
_KNOWN: dict[str, tuple | None] = {}  # real path: its fingerprint where its hash agreed, else None
_PENDING: dict[str, float] = {}  # real path: when its hashing began


def digest(path: str) -> str:
    """The file's SHA-256 (hex)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            sha.update(block)
    return sha.hexdigest()


def fingerprint(path: str) -> tuple | None:
    """What changes when a file is written, replaced or touched (ctime: no process sets it back); None if it
    is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def valid(want) -> bool:
    return isinstance(want, str) and len(want) == 64 and set(want) <= HEX


def expect(path: str, want: str) -> None:
    """Hash the snapshot in a thread and vouch for it where it is what the background Blender answered
    (want: its hex SHA-256; anything else: nothing is vouched)."""
    key = os.path.realpath(path)
    with _LOCK:
        _KNOWN.pop(key, None)
        if not valid(want):
            return
        _PENDING[key] = time.monotonic()
    threading.Thread(target=_verify, args=(key, want), name="trellis2-vouch", daemon=True).start()


def _verify(key: str, want: str) -> None:
    known = None
    try:
        before = fingerprint(key)
        same = digest(key) == want
        known = before if same and before is not None and before == fingerprint(key) else None
    except OSError:
        pass
    finally:
        with _LOCK:
            _PENDING.pop(key, None)
            _KNOWN[key] = known
            for old in list(_KNOWN)[:max(0, len(_KNOWN) - MOST)]:
                del _KNOWN[old]


def pending(path: str) -> bool:
    """Whether the snapshot is being hashed (for at most WAIT_SECONDS): the UI's ticks ahead wait for it."""
    began = _PENDING.get(os.path.realpath(path))
    return began is not None and time.monotonic() - began < WAIT_SECONDS


def vouched(path: str) -> bool:
    """Whether the snapshot is, byte for byte, one the background Blender wrote and checked (its hash agreed and
    the file is unchanged since)."""
    known = _KNOWN.get(os.path.realpath(path))
    return known is not None and known == fingerprint(path)


def forget() -> None:
    with _LOCK:
        _KNOWN.clear()
        _PENDING.clear()
