"""History: every job folder is an entry, so a paid or GPU-hour result is never lost.

A job folder (under the Results Folder, by default the extension's user folder) holds the prepared
input (input_rgba.npy, the normalized copy), thumb.png, job.json (state, remote task id, written as the
job goes), result.json (written by the worker before it reports: survives a crash of Blender) and
record.json (written before the import: everything sent, seeds, cost, image hash, cache key). No keys.
Scanning reads JSON only; the panel uses a cached scan refreshed when something changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import png
from .record import Record, RecordError

JOB, RESULT, RECORD, THUMB, INPUT = "job.json", "result.json", "record.json", "thumb.png", "input_rgba.npy"
THUMB_SIDE = 128

# Entry states
DONE = "done"  # imported at least once (record.json)
READY = "ready"  # result on disk, never imported (Blender stopped before the import)
PENDING = "pending"  # a remote task was submitted, no result on disk yet
BROKEN = "broken"  # unreadable JSON or missing files
OTHER = "other"  # running, failed or cancelled jobs: not results


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
                entry = Entry(folder, state, data)
                missing = [os.path.basename(f) for f in entry.files if not os.path.isfile(f)]
                if not entry.files or missing:
                    return Entry(folder, BROKEN, data, f"missing {', '.join(missing) or 'result files'}")
                return entry
        job = _read(paths[JOB])
    except (OSError, ValueError, RecordError) as exc:
        return Entry(folder, BROKEN, {}, f"unreadable: {exc}")
    if job.get("remote") and job.get("state") not in ("failed", "cancelled", "done"):
        return Entry(folder, PENDING, job)
    return Entry(folder, OTHER, job)


class History:
    """A cached scan of one root folder; `invalidate()` after anything changes it."""

    def __init__(self):
        self._root = None
        self._entries: list[Entry] | None = None
        self._refreshing = False
        self._version = 0
        self._measured = False  # sizes of _entries measured (by _refresh, on the file thread)
        self._shown: list[Entry] = []  # the last measured scan: what the panel draws meanwhile

    def invalidate(self) -> None:
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
        version = self._version
        try:
            found = self._scan(root)
            for entry in found:
                entry.size  # noqa: B018 (measured here, off the main thread)
            if version == self._version:  # nothing changed meanwhile
                self._root, self._entries, self._measured = root, found, True
            self._shown = found
        finally:
            self._refreshing = False

    def entries(self, root: str) -> list[Entry]:
        """Every entry, newest first (cached until invalidate or another root)."""
        if self._entries is None or root != self._root:
            self._root, self._entries, self._measured = root, self._scan(root), False
        return self._entries

    @staticmethod
    def _scan(root: str) -> list[Entry]:
        found = []
        try:
            names = os.listdir(root)
        except OSError:
            names = []
        for name in names:
            folder = os.path.join(root, name)
            if name.startswith(".") or not os.path.isdir(folder):
                continue
            entry = read_entry(folder)
            if entry is not None:
                found.append(entry)
        found.sort(key=lambda e: (e.created or _mtime(e.folder)), reverse=True)
        return found

    def find_cached(self, root: str, key: str) -> Entry | None:
        for entry in self.entries(root):
            if entry.state in (DONE, READY) and entry.record.get("cache_key") == key:
                return entry
        return None

    def delete(self, entry: Entry) -> None:
        shutil.rmtree(entry.folder, ignore_errors=True)
        self.invalidate()

    def prune(self, root: str, max_bytes: int, keep: set[str] = frozenset()) -> list[str]:
        """Delete the oldest entries until the total is at most max_bytes; folders in `keep` (running
        jobs) stay. Returns the deleted folder names."""
        entries = sorted(self.entries(root), key=lambda e: e.created or _mtime(e.folder))
        total, deleted = sum(e.size for e in entries), []
        for entry in entries:
            if total <= max_bytes:
                break
            if entry.folder in keep or entry.state == PENDING:  # a paid task not yet downloaded stays
                continue
            shutil.rmtree(entry.folder, ignore_errors=True)
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
