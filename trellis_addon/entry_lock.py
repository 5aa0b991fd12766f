"""One lock per history entry, so two Blender instances sharing a Results Folder never work on, resume
or delete the same entry: a `.lock` file in the entry folder holding the owner's process id, locked
with the OS (fcntl.flock on POSIX, msvcrt.locking on Windows; released by the OS when the owner dies).

An entry is busy when another process holds the OS lock (or, on a file system without OS locks, when
the file names another live process of this machine); the lock of a dead process is taken over.
This process's locks are kept in `_held` (one per folder, re-entrant): a job holds its folder's lock
from prepare until it finishes, a pending hosted task until this process stops.
Standard library only (tests load this file into a plain Python process).
"""
from __future__ import annotations

import os
import shutil
import socket
import threading

LOCK = ".lock"
_WIN_OFFSET = 1 << 20  # Windows locks a byte range: one far past the pid text, so others can read it
_HOST = socket.gethostname()

NO_OS_LOCKS = "no OS locks"  # _os_lock's answer where the file system has none: the pid decides

if os.name == "nt":
    import ctypes
    import msvcrt

    def _os_lock(fd: int):
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _os_unlock(fd: int) -> None:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
else:
    import errno
    import fcntl

    def _os_lock(fd: int):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            return NO_OS_LOCKS if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS) else False

    def _os_unlock(fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        try:
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def owner(folder: str) -> tuple[int, str]:
    """(process id, host name) written in the entry's lock file; (0, "") when there is none."""
    try:
        with open(os.path.join(folder, LOCK), encoding="utf-8") as f:
            pid, _, host = f.read(200).strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return 0, ""


class EntryLock:
    """The lock of one entry folder, taken with acquire() (never blocks)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK)
        self.fd: int | None = None

    def acquire(self) -> bool:
        """True when this object now holds the lock (a stale one of a dead process is taken over)."""
        if self.fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        locked = _os_lock(fd)
        if locked == NO_OS_LOCKS:
            pid, host = owner(self.folder)
            locked = not (pid and pid != os.getpid() and host == _HOST and pid_alive(pid))
        if not locked:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {_HOST}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        """Unlock; the file stays, empty (removing it would race with another process opening it)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        _os_unlock(fd)
        os.close(fd)


_held: dict[str, EntryLock] = {}
_guard = threading.Lock()


def _key(folder: str) -> str:
    return os.path.realpath(folder)


def hold(folder: str) -> bool:
    """Take the entry's lock for this process (kept until release); True if held (also when already)."""
    key = _key(folder)
    with _guard:
        if key in _held:
            return True
        lock = EntryLock(folder)
        if not lock.acquire():
            return False
        _held[key] = lock
        return True


def holds(folder: str) -> bool:
    return _key(folder) in _held


def release(folder: str) -> None:
    with _guard:
        lock = _held.pop(_key(folder), None)
    if lock is not None:
        lock.release()


def release_all() -> None:
    for key in list(_held):
        release(key)


def busy(folder: str) -> bool:
    """Locked by another live process (checked by taking the lock for a moment)."""
    if holds(folder) or not os.path.isdir(folder):
        return False
    probe = EntryLock(folder)
    if not probe.acquire():
        return True
    probe.release()
    return False


def remove(folder: str) -> bool:
    """Delete the entry folder unless another process holds its lock; True if deleted."""
    with _guard:
        lock = _held.pop(_key(folder), None)  # this process's own: deleted under that lock
    if lock is None:
        lock = EntryLock(folder)
        if os.path.isdir(folder) and not lock.acquire():
            return False
    try:
        if os.name == "nt":
            lock.release()  # Windows cannot delete an open file
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.release()
    return not os.path.exists(folder)
