"""signing.py without Blender: keys, signatures and what makes a snapshot fail to verify."""
import os
import stat

import pytest

from trellis_addon import signing

KEY = bytes(range(32))


def signed(tmp_path, data: bytes = b"BLENDER-v405 snapshot bytes", name: str = "result_0.blender-5.0.blend"):
    private = tmp_path / "private"
    private.mkdir(exist_ok=True)
    (private / name).write_bytes(data)
    path = str(tmp_path / name)
    signing.place_signed(str(private / name), path, KEY)
    return path


def test_a_signed_file_verifies_with_its_fingerprint(tmp_path):
    path = signed(tmp_path)
    known, why = signing.verify(path, KEY)
    assert why == "" and known == signing.fingerprint(path) and signing.still(path, known)
    assert signing.still(path, list(known)), "as a JSON list"
    assert open(path, "rb").read() == b"BLENDER-v405 snapshot bytes"


@pytest.mark.parametrize("change", ["byte", "key", "renamed", "no signature", "signature of another",
                                    "symlinked signature", "symlinked file", "long signature"])
def test_what_does_not_verify(tmp_path, change):
    path = signed(tmp_path)
    key = KEY
    if change == "byte":
        with open(path, "r+b") as f:
            f.write(b"X")
    elif change == "key":
        key = bytes(32)
    elif change == "renamed":
        other = str(tmp_path / "result_1.blender-5.0.blend")
        os.replace(path, other)
        os.replace(signing.signature_path(path), signing.signature_path(other))
        path = other
    elif change == "no signature":
        os.remove(signing.signature_path(path))
    elif change == "signature of another":
        other = signed(tmp_path, b"other bytes", "other.blend")
        os.replace(signing.signature_path(other), signing.signature_path(path))
    elif change == "symlinked signature":
        real = tmp_path / "elsewhere.sig"
        os.replace(signing.signature_path(path), real)
        os.symlink(real, signing.signature_path(path))
    elif change == "symlinked file":
        real = tmp_path / "elsewhere.blend"
        os.replace(path, real)
        os.symlink(real, path)
    elif change == "long signature":
        with open(signing.signature_path(path), "ab") as f:
            f.write(b" " * 1000)
    known, why = signing.verify(path, key)
    assert known is None and why


def test_a_file_changed_since_it_was_verified_is_not_still_it(tmp_path):
    path = signed(tmp_path)
    known, _ = signing.verify(path, KEY)
    os.utime(path, ns=(1, 1))
    assert not signing.still(path, known)
    assert not signing.still(path, None)


def test_signing_again_replaces_the_file_and_its_signature(tmp_path):
    path = signed(tmp_path)
    first = signing.fingerprint(path)
    signed(tmp_path, b"new bytes")
    known, why = signing.verify(path, KEY)
    assert why == "" and known != first and open(path, "rb").read() == b"new bytes"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")], "no temporary file left"


def test_the_users_key_is_made_once_owner_only(tmp_path):
    path = str(tmp_path / "user" / signing.KEY_FILE)
    key = signing.user_key(path)
    assert len(key) == signing.KEY_BYTES and signing.user_key(path) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


@pytest.mark.parametrize("content", [b"", b"zz" * 32, b"ab" * 8, b"ab" * 5000])
def test_a_key_file_of_another_shape_is_refused(tmp_path, content):
    path = tmp_path / "team.key"
    path.write_bytes(content)
    with pytest.raises(signing.SigningError):
        signing.read_key(str(path))


def test_a_symlinked_key_file_is_not_followed(tmp_path):
    real = tmp_path / "real.key"
    real.write_text("ab" * 32)
    link = tmp_path / "link.key"
    os.symlink(real, link)
    with pytest.raises(OSError):
        signing.read_key(str(link))
