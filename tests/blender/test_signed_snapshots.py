"""Snapshots signed by this user (signing.py), as the UI lands them: the builder verifies every snapshot in a
thread before the job goes on to IMPORTING; one that does not verify (unsigned from an earlier version,
crafted, altered) is never opened here: its GLB is imported again in the background Blender, which signs the
new snapshot, and the next time it is appended as it is. The key stays in the extension's user folder."""
import os
import stat

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod
from test_background_import import landed
from test_hostile_snapshots import FifoWatch, write_hostile

SETTINGS = dict(backend="preview", resolution=512, texture_size=1024, decimation_target=100000)


def generate(seed: int):
    """A blocking generation through the builder (as the UI's jobs go); the job."""
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=seed, **SETTINGS) == {"FINISHED"}
    return mod("trellis_addon.queue").manager.jobs[-1]


def imports_done(builder) -> int:
    """Import tasks the background Blender finished so far."""
    with open(builder.worker.log_path, encoding="utf-8", errors="replace") as f:
        return f.read().count("(import) done")


def test_a_snapshot_from_before_signing_is_rebuilt_once_and_lands_signed_next_time(builder, capsys):
    signing = mod("trellis_addon.signing")
    first = generate(41)
    assert first.state == "done" and not first.from_cache
    snap = first.built["snapshots"][0]
    assert first.built["verified"] == {snap: signing.fingerprint(snap)}, "verified before it was placed"
    looks = landed()
    os.remove(signing.signature_path(snap))  # as a version before signing left it
    bpy.ops.wm.read_homefile(use_empty=True)
    imports = imports_done(builder)
    capsys.readouterr()
    again = generate(41)
    said = capsys.readouterr().out
    assert again.state == "done" and again.from_cache, again.error
    assert f"snapshot {os.path.basename(snap)} not opened (not signed); importing its GLB again in the " \
           "background" in said, said
    assert imports_done(builder) == imports + 1 and os.path.isfile(signing.signature_path(snap))
    assert landed() == looks
    bpy.ops.wm.read_homefile(use_empty=True)
    third = generate(41)
    assert third.state == "done" and imports_done(builder) == imports + 1, "verified, appended as it is"
    assert "not opened" not in capsys.readouterr().out and landed() == looks


def test_a_crafted_snapshot_linked_to_a_fifo_never_reaches_the_users_blender(builder, tmp_path, capsys):
    """The attack that hung the user's Blender: a snapshot whose mesh is linked from a FIFO beside it."""
    first = generate(42)
    snap = first.built["snapshots"][0]
    looks = landed()
    bpy.ops.wm.read_homefile(use_empty=True)
    write_hostile(snap, "linked_fifo", tmp_path)
    fifo = FifoWatch(str(tmp_path / "fifo.blend"))
    try:
        again = generate(42)
    finally:
        reached = fifo.stop()
    assert not reached, "the crafted snapshot was opened"
    assert again.state == "done" and again.from_cache and landed() == looks, again.error
    assert f"snapshot {os.path.basename(snap)} not opened (its signature does not match" in capsys.readouterr().out
    assert not bpy.data.libraries


def test_a_history_import_never_opens_a_crafted_snapshot(builder, tmp_path, capsys):
    """History's Import goes the builder's way too: the snapshot verified off the main thread; a crafted one
    (custom properties nested 100 000 deep: Blender's reader crashes on it) is rebuilt in the background."""
    first = generate(45)
    snap = first.built["snapshots"][0]
    looks = landed()
    bpy.ops.wm.read_homefile(use_empty=True)
    write_hostile(snap, "deep_properties", tmp_path)
    imports = imports_done(builder)
    capsys.readouterr()
    entry = os.path.basename(first.output_dir)
    assert bpy.ops.trellis.history_import(entry=entry) == {"FINISHED"}
    assert f"snapshot {os.path.basename(snap)} not opened (its signature does not match" in capsys.readouterr().out
    assert imports_done(builder) == imports + 1 and landed() == looks


def test_the_key_is_owner_only_and_in_no_file_a_job_writes(builder):
    prefs, signing = mod("trellis_addon.prefs"), mod("trellis_addon.signing")
    job = generate(43)
    path = prefs.signing_key_path()
    assert os.path.dirname(path) == bpy.utils.extension_path_user(prefs.base_package), "the extension's own folder"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = prefs.signing_key()
    assert signing.read_key(path) == key and len(key) == signing.KEY_BYTES, "made once, read the same"
    written = [os.path.join(folder, name) for folder, _, names in os.walk(prefs.jobs_root()) for name in names]
    assert job.built["snapshots"][0] in written and builder.worker.log_path in written
    for name in written:
        with open(name, "rb") as f:
            data = f.read()
        assert key.hex().encode() not in data and key not in data, f"the key is in {name}"


def test_a_shared_key_file_signs_and_opens_what_the_team_wrote(builder, tmp_path):
    """A team that shares one results folder on purpose points the preference at one key file: what another
    member's Blender signed with it is appended as it is."""
    prefs, signing = mod("trellis_addon.prefs"), mod("trellis_addon.signing")
    shared = tmp_path / "team.key"
    shared.write_text("ab" * 32)
    p = prefs.get()
    p.shared_key_file = str(shared)
    try:
        job = generate(44)
        snap = job.built["snapshots"][0]
        assert signing.verify(snap, bytes.fromhex("ab" * 32))[0] is not None, "signed with the shared key"
        assert signing.verify(snap, signing.user_key(os.path.join(
            bpy.utils.extension_path_user(prefs.base_package), signing.KEY_FILE)))[0] is None
        shared.unlink()
        bpy.ops.wm.read_homefile(use_empty=True)
        with pytest.raises(RuntimeError, match="signing key cannot be read"):
            bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, seed=44, **SETTINGS)
        failed = mod("trellis_addon.queue").manager.jobs[-1]
        assert failed.state == "failed" and "signing key" in failed.error and str(shared) in failed.error
        assert not bpy.data.objects, "nothing appended without the key"
    finally:
        p.shared_key_file = ""
