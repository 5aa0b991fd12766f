"""Snapshots known by their bytes. The background Blender checks the images of each snapshot it writes as this
Blender's snapshot check would (twins.pictures_problem: each picture's size from its header, which copies every
packed image's bytes out: about 120 ms on the main thread for a 1M-face result with 4096² textures) and answers the
file's SHA-256 with it (blend_worker). This Blender hashes the file again in a thread of its own (about 0.17 s
for 200 MB, none of it on the main thread: hashlib lets go of the GIL) and, where the two agree, skips those
copies for as long as the file is the one hashed: its device, inode, size, mtime and ctime unchanged. A snapshot
changed since, one never vouched for, or one whose hash does not agree is checked in full; what a
snapshot holds besides its pictures (snapshot_check.problem) is checked always. The hash only vouches for what
the background Blender wrote from data: a background Blender that runs code of an attacker's runs it as the user
anyway.

What was vouched for is remembered across sessions in the extension's own user folder (STORE: never in a
history folder, which another process may edit): a snapshot appended again later (a cache hit, History) is
hashed again in a thread and, where it agrees with the digest kept there, vouched for the same way."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time

CHUNK = 1 << 20
WAIT_SECONDS = 10.0  # a hash not done by then (a slow disk): the snapshot is checked in full
MOST = 256  # snapshots remembered (the oldest forgotten first), in this session and in the store
HEX = frozenset("0123456789abcdef")
STORE = "vouched.json"  # in the extension's user folder: {"vouched": {real path: {"sha256", "size"}}}
STORE_BYTES = 1 << 20  # a longer store is not read (MOST entries take about 60 kB)

_LOCK = threading.Lock()
_KNOWN: dict[str, tuple | None] = {}  # real path: its fingerprint where its hash agreed, else None
_PENDING: dict[str, float] = {}  # real path: when its hashing began
_STORED: dict[str, dict] | None = None  # the store as read (once, on first use) and kept up to date
_THREADS: set = set()  # the hashing threads still running


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


def store_path() -> str:
    import bpy

    from .prefs import base_package
    return os.path.join(bpy.utils.extension_path_user(base_package, create=True), STORE)


def _stored(store: str) -> dict:
    """The store's entries ({real path: {"sha256", "size"}}), read once: anything of another shape is left out,
    and a store longer than STORE_BYTES is cut off there (no longer JSON: left out whole)."""
    global _STORED
    if _STORED is None:
        try:
            with open(store, encoding="utf-8") as f:
                found = json.loads(f.read(STORE_BYTES + 1) or "{}").get("vouched")
        except (OSError, ValueError, AttributeError):
            found = None
        found = found if isinstance(found, dict) else {}
        _STORED = {k: v for k, v in list(found.items())[-MOST:] if isinstance(k, str) and isinstance(v, dict)
                   and valid(v.get("sha256")) and type(v.get("size")) is int}
    return _STORED


def expect(path: str, want: str, store: str | None = None) -> None:
    """Hash the snapshot in a thread and vouch for it where it is what the background Blender answered
    (want: its hex SHA-256; anything else: nothing is vouched), and keep that in the store."""
    key = os.path.realpath(path)
    store = store_path() if store is None else store
    with _LOCK:
        _KNOWN.pop(key, None)
        if not valid(want):
            return
        _stored(store)
        _PENDING[key] = time.monotonic()
    thread = threading.Thread(target=_verify, args=(key, want, store), name="trellis2-vouch", daemon=True)
    _THREADS.add(thread)
    thread.start()


def recall(path: str, store: str | None = None) -> None:
    """Hash a snapshot that an earlier session vouched for (its digest in the store) and this one knows
    nothing of yet, as expect does: the ticks ahead wait for it (pending) as for a new one."""
    key = os.path.realpath(path)
    if key in _KNOWN or key in _PENDING:
        return
    store = store_path() if store is None else store
    entry = _stored(store).get(key)
    found = fingerprint(key)
    if entry is not None and found is not None and found[2] == entry["size"]:
        expect(key, entry["sha256"], store)


def _verify(key: str, want: str, store: str) -> None:
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
            _keep(store, key, want, known)
            _THREADS.discard(threading.current_thread())


def _keep(store: str, key: str, want: str, known: tuple | None) -> None:
    """The store with key's digest (or without it, where its hash did not agree), written atomically where it
    changed (in the hashing thread, under _LOCK); a failure is only printed."""
    entries = _stored(store)
    entry = {"sha256": want, "size": known[2]} if known is not None else None
    if entries.get(key) == entry:
        return
    entries.pop(key, None)
    if entry is not None:
        entries[key] = entry
    for old in list(entries)[:max(0, len(entries) - MOST)]:
        del entries[old]
    tmp = f"{store}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"vouched": entries}, f)
        os.replace(tmp, store)
    except OSError as exc:
        print(f"TRELLIS: could not keep {STORE}: {exc}")


def pending(path: str) -> bool:
    """Whether the snapshot is being hashed (for at most WAIT_SECONDS): the UI's ticks ahead wait for it."""
    began = _PENDING.get(os.path.realpath(path))
    return began is not None and time.monotonic() - began < WAIT_SECONDS


def vouched(path: str) -> bool:
    """Whether the snapshot is, byte for byte, one the background Blender wrote and checked (its hash agreed and
    the file is unchanged since)."""
    known = _KNOWN.get(os.path.realpath(path))
    return known is not None and known == fingerprint(path)


def forget(store: str = "") -> None:
    """Nothing of this session known (as in a new session), once the hashes under way are done; store: that
    file removed as well."""
    global _STORED
    for thread in list(_THREADS):
        thread.join(WAIT_SECONDS)
    with _LOCK:
        _KNOWN.clear()
        _PENDING.clear()
        _STORED = None
        if store and os.path.exists(store):
            os.remove(store)
