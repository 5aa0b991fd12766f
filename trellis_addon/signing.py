"""Snapshots this user's add-on wrote, known by their signature. A history folder is not the user's alone (a
shared drive, a copied project, a synced folder): a .blend found there can hang or crash the Blender that opens
it, before any check of what it holds could run. So the user's Blender opens only a snapshot that carries an
HMAC-SHA256 made with a secret key of this user's (kept in the extension's own user folder, owner-only, never
in a history folder, a .blend or a log), over the file's name and bytes, in a file beside it (SUFFIX). Anything
else (unsigned, altered, signed with another key, from a version before signing) is never opened: its GLB is
imported again in a background Blender, which signs the new snapshot.

Signing copies the file from a private folder into place, hashing the very bytes it writes, so nothing another
process changes in the history folder meanwhile is signed. Verifying hashes the file and notes its fingerprint
(device, inode, size, mtime, ctime); the file is appended only while that fingerprint holds. No bpy here."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat

KEY_FILE = "snapshot-signing.key"  # in the extension's user folder (prefs.signing_key_path)
SUFFIX = ".sig"
CONTEXT = b"trellis2 snapshot signature 1\0"  # a new scheme changes this: older signatures no longer verify
CHUNK = 1 << 20
KEY_BYTES = 32
KEY_MOST = 4096  # a key file longer than this is not one
SIGNATURE_MOST = 256


class SigningError(ValueError):
    """The key cannot be had (missing shared key file, a key file of another shape)."""


def _read_small(path: str, most: int) -> bytes:
    """A regular file's bytes (never through a symlink), at most `most` of them; OSError or SigningError."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SigningError(f"{path} is not a regular file")
        data = os.read(fd, most + 1)
    finally:
        os.close(fd)
    if len(data) > most:
        raise SigningError(f"{path} is too long")
    return data


def read_key(path: str) -> bytes:
    """The key in a key file: hex text of at least KEY_BYTES bytes. OSError where it cannot be read,
    SigningError where it is not a key."""
    text = _read_small(path, KEY_MOST).strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise SigningError(f"{path} holds no key (hex text)") from None
    if len(key) < KEY_BYTES:
        raise SigningError(f"{path} holds a key shorter than {KEY_BYTES} bytes")
    return key


def user_key(path: str) -> bytes:
    """This user's key, made once (owner-only) where the file does not exist yet."""
    try:
        return read_key(path)
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:  # another Blender made it meanwhile
        return read_key(path)
    try:
        os.write(fd, secrets.token_hex(KEY_BYTES).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return read_key(path)


def signature_path(path: str) -> str:
    return path + SUFFIX


def fingerprint(path: str) -> tuple | None:
    """What changes when a file is written, replaced or touched (ctime: no process sets it back); None where it
    is gone or not a regular file (a symlink is not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _mac(key: bytes, path: str):
    """The HMAC over the file's name (a signed snapshot moved to another name does not verify) and its bytes."""
    return hmac.new(key, CONTEXT + os.path.basename(path).encode("utf-8", "surrogateescape") + b"\0", hashlib.sha256)


def _write_atomic(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def place_signed(private: str, path: str, key: bytes) -> None:
    """Copy a file written in a private folder to path (atomically) and sign what was copied."""
    mac = _mac(key, path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(private, "rb") as src, open(tmp, "wb") as dst:
            while block := src.read(CHUNK):
                mac.update(block)
                dst.write(block)
        if os.path.exists(signature_path(path)):
            os.remove(signature_path(path))  # the old signature never vouches for the new bytes
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _write_atomic(signature_path(path), mac.hexdigest().encode("ascii") + b"\n")


def verify(path: str, key: bytes) -> tuple[tuple | None, str]:
    """(the file's fingerprint where its signature verifies, else None; why not). Reads the whole file: call it
    off the main thread where a window is open."""
    try:
        said = _read_small(signature_path(path), SIGNATURE_MOST).strip().decode("ascii")
    except FileNotFoundError:
        return None, "not signed"
    except (OSError, SigningError, UnicodeDecodeError) as exc:
        return None, f"its signature cannot be read ({exc})"
    before = fingerprint(path)
    if before is None:
        return None, "not a regular file"
    mac = _mac(key, path)
    try:
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                mac.update(block)
    except OSError as exc:
        return None, f"cannot be read ({exc})"
    if fingerprint(path) != before:
        return None, "changed while it was checked"
    if not hmac.compare_digest(mac.hexdigest(), said):
        return None, "its signature does not match (altered, or signed with another key)"
    return before, ""


def still(path: str, known) -> bool:
    """Whether the file is the one verified (known: verify's fingerprint, or a list of its parts from a JSON)."""
    return known is not None and tuple(known) == fingerprint(path)
