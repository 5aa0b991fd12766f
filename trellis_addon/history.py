"""History: every job folder is an entry, so a paid or GPU-hour result is never lost.

A job folder (under the Results Folder, by default the extension's user folder) holds the prepared
input (input_rgba.npy, the normalized copy), thumb.png, job.json (state, remote task id, written as the
job goes), result.json (written by the worker before it reports: survives a crash of Blender) and
record.json (written before the import: everything sent, seeds, cost, image hash, cache key) and .lock
(entry_lock: which Blender works on it). No keys. Scanning reads JSON only, and only of entries whose
files changed (an index); the panel uses the last scan, refreshed on the file thread.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import png
from . import entry_lock
from .record import Record, RecordError

JOB, RESULT, RECORD, THUMB, INPUT = "job.json", "result.json", "record.json", "thumb.png", "input_rgba.npy"
THUMB_SIDE = 128

# Entry states
DONE = "done"  # imported at least once (record.json)
READY = "ready"  # result on disk, never imported (Blender stopped before the import)
PENDING = "pending"  # a remote task was submitted, no result on disk yet
BROKEN = "broken"  # unreadable JSON or missing files
OTHER = "other"  # running jobs, failed or cancelled ones without a provider task: not results
PROVIDER_FINAL = ("remote_error", "not_found")  # error codes of a task the provider failed or forgot


@dataclass
class Entry:
    folder: str
    state: str
    record: dict = field(default_factory=dict)
    problem: str = ""
    _size: int | None = None

    @property
    def size(self) -> int:
        """Bytes on disk, measured once (only the panel and pruning need it; a cache lookup does not)."""
        if self._size is None:
            self._size = _folder_size(self.folder)
        return self._size

    @property
    def id(self) -> str:
        return os.path.basename(self.folder)

    @property
    def files(self) -> list[str]:
        return [os.path.join(self.folder, f) for f in self.record.get("files", [])]

    @property
    def created(self) -> float:
        return float(self.record.get("created") or 0.0)

    @property
    def title(self) -> str:
        return str(self.record.get("name") or self.id)

    @property
    def cancelled(self) -> bool:
        """A submitted task the user cancelled: kept (it may still be billed), fetched on request only."""
        return self.state == PENDING and self.record.get("state") == "cancelled"


def image_hash(rgba: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(rgba).tobytes())
    digest.update(repr(rgba.shape).encode())
    return digest.hexdigest()


def cache_key(image_sha: str, backend: str, model: str, settings: dict) -> str:
    """Same picture, backend, model and every setting incl. the seed -> same key."""
    sent = {k: v for k, v in settings.items() if k != "random_seed"}
    text = json.dumps({"image": image_sha, "backend": backend, "model": model, "settings": sent}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_thumbnail(rgba: np.ndarray, path: str) -> None:
    step = max(1, int(np.ceil(max(rgba.shape[:2]) / THUMB_SIDE)))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(png.encode_png(np.ascontiguousarray(rgba[::step, ::step])))
    os.replace(tmp, path)


def write_json_atomic(path: str, data: dict) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    history.invalidate(os.path.dirname(path))  # on disk now: the index reads this entry again


def _read(path: str) -> dict:
    """A job folder's JSON file as a type-checked record (RecordError, a ValueError, otherwise)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    Record.from_json(data)  # type check; the fields as written are kept
    return data


def _folder_size(folder: str) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


def _tasks(job: dict) -> list[dict]:
    """The provider tasks a job.json names."""
    tasks = [job.get("remote"), *(job.get("remote_tasks") or [])]
    return [t for t in tasks if isinstance(t, dict) and t.get("task_id")]


def _still_resumable(job: dict) -> bool:
    """A submitted task without a result stays resumable whatever the job ended in (quit, cancel, a
    killed worker, a timeout, a failed download) unless the provider itself said it failed."""
    if job.get("state") == "done":
        return False
    return not (job.get("state") == "failed" and job.get("error_code") in PROVIDER_FINAL)


def _outside(folder: str, names: list[str]) -> list[str]:
    """Names of `names` that resolve (links followed) outside the folder: absolute, `..`, a link out."""
    base = os.path.realpath(folder)
    out = []
    for name in names:
        try:
            inside = not os.path.isabs(name) and os.path.commonpath(
                [base, os.path.realpath(os.path.join(base, name))]) == base
        except ValueError:  # another drive
            inside = False
        if not inside:
            out.append(name)
    return out


def read_entry(folder: str) -> Entry | None:
    """The entry of one job folder; None when it is not a job folder at all."""
    paths = {name: os.path.join(folder, name) for name in (JOB, RESULT, RECORD)}
    if not any(os.path.exists(p) for p in paths.values()):
        return None
    try:
        for name, state in ((RECORD, DONE), (RESULT, READY)):
            if os.path.exists(paths[name]):
                data = _read(paths[name])
                if name == RESULT:  # not imported yet: what we know comes from job.json and result.json
                    job = _read(paths[JOB]) if os.path.exists(paths[JOB]) else {}
                    data = {**job, **data}
                outside = _outside(folder, data.get("files", []))
                if outside:
                    return Entry(folder, BROKEN, {}, f"result file outside its folder: {outside[0][:80]}")
                entry = Entry(folder, state, data)
                missing = [os.path.basename(f) for f in entry.files if not os.path.isfile(f)]
                if not entry.files or missing:
                    return Entry(folder, BROKEN, data, f"missing {', '.join(missing) or 'result files'}")
                return entry
        job = _read(paths[JOB])
    except (OSError, ValueError, RecordError) as exc:
        return Entry(folder, BROKEN, {}, f"unreadable: {exc}")
    if _tasks(job) and _still_resumable(job):
        return Entry(folder, PENDING, job)
    return Entry(folder, OTHER, job)


def _stamp(folder: str):
    """What changes when an entry changes: the folder's and its JSON files' times and sizes (None: not
    a folder)."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    stamp = [st.st_mtime_ns]
    for name in (JOB, RESULT, RECORD):
        try:
            f = os.stat(os.path.join(folder, name))
            stamp.append((f.st_mtime_ns, f.st_size))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


class History:
    """An index of one root folder's entries, updated incrementally: `invalidate(folder)` marks one
    entry to read again, `invalidate()` has every folder's times checked (only changed ones are read
    again). Every FULL_CHECK_SECONDS the times are checked anyway (another process's changes)."""

    FULL_CHECK_SECONDS = 2.0

    def __init__(self):
        self._root = None
        self._index: dict[str, tuple] = {}  # folder -> (stamp, Entry or None for a non-job folder)
        self._dirty: set[str] = set()
        self._full = True
        self._checked = 0.0
        self._lock = threading.RLock()
        self._entries: list[Entry] | None = None
        self._refreshing = False
        self._version = 0
        self._measured = False  # sizes of _entries measured (by _refresh, on the file thread)
        self._shown: list[Entry] = []  # the last measured scan: what the panel draws meanwhile

    def invalidate(self, folder: str | None = None) -> None:
        with self._lock:
            if folder is None:
                self._full = True
            else:
                self._dirty.add(os.path.normpath(folder))
            self._entries = None
            self._version += 1

    def snapshot(self, root: str, submit) -> list[Entry]:
        """For drawing: the last scan at once, never I/O on the caller's thread. When stale, a rescan
        (sizes included) runs through `submit` (the add-on's file thread); the next redraw shows it."""
        entries = self._entries if root == self._root else None
        if (entries is None or not self._measured) and not self._refreshing:
            self._refreshing = True
            submit(self._refresh, root)
        return entries if entries is not None and self._measured else self._shown

    def _refresh(self, root: str) -> None:
        try:
            version = self._version
            found = self._update(root)
            for entry in found:
                entry.size  # noqa: B018 (measured here, off the main thread)
            with self._lock:
                if version == self._version:  # nothing changed meanwhile
                    self._entries, self._measured = found, True
            self._shown = found
        finally:
            self._refreshing = False

    def entries(self, root: str) -> list[Entry]:
        """Every entry, newest first (cached until invalidate or another root)."""
        with self._lock:
            if self._entries is not None and root == self._root:
                return self._entries
            version = self._version
            found = self._update(root)
            if version == self._version:
                self._entries, self._measured = found, False
            return found

    def _update(self, root: str) -> list[Entry]:
        with self._lock:
            now = time.monotonic()
            full = self._full or root != self._root or now - self._checked > self.FULL_CHECK_SECONDS
            if root != self._root:
                self._index = {}
            dirty, self._dirty, self._full, self._root = self._dirty, set(), False, root
            try:
                names = os.listdir(root)
            except OSError:
                names = []
            index = {}
            for name in names:
                folder = os.path.normpath(os.path.join(root, name))
                old = self._index.get(folder)
                if name.startswith(".") or (old is not None and not full and folder not in dirty):
                    if old is not None:
                        index[folder] = old
                    continue
                stamp = _stamp(folder)
                if stamp is not None:
                    index[folder] = old if old is not None and old[0] == stamp else (stamp, read_entry(folder))
            self._index = index
            if full:
                self._checked = now
            found = [entry for _, entry in index.values() if entry is not None]
        found.sort(key=lambda e: (e.created or _mtime(e.folder)), reverse=True)
        return found

    @staticmethod
    def scan(root: str) -> list[Entry]:
        """Every entry read afresh (no index)."""
        fresh = History()
        return fresh.entries(root)

    def find_cached(self, root: str, key: str) -> Entry | None:
        """The newest finished entry of this cache key whose result files are still there; one whose folder or
        files went since the last scan (another Blender, a file manager) is dropped from the index, not used."""
        for entry in self.entries(root):
            if entry.state in (DONE, READY) and entry.record.get("cache_key") == key:
                if all(os.path.isfile(f) for f in entry.files):
                    return entry
                self.invalidate(entry.folder)
        return None

    def delete(self, entry: Entry) -> bool:
        """Delete the entry's folder unless another Blender holds its lock; True if deleted."""
        deleted = entry_lock.remove(entry.folder)
        self.invalidate(entry.folder)
        return deleted

    def prune(self, root: str, max_bytes: int, keep: set[str] = frozenset()) -> list[str]:
        """Delete the oldest entries until the total is at most max_bytes; folders in `keep` (running
        jobs), pending paid tasks and entries another Blender holds stay. Returns the deleted names."""
        entries = sorted(self.entries(root), key=lambda e: e.created or _mtime(e.folder))
        total, deleted = sum(e.size for e in entries), []
        for entry in entries:
            if total <= max_bytes:
                break
            if entry.folder in keep or entry.state == PENDING or entry_lock.holds(entry.folder):
                continue
            if entry_lock.remove(entry.folder):
                total -= entry.size
                deleted.append(entry.id)
        self.invalidate()
        return deleted


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return time.time()


history = History()
