"""A snapshot the background Blender answered is vouched for by its SHA-256 (vouch.py): that Blender checked its
pictures' sizes as the UI's would, and the UI's Blender hashes the file again in a thread; while the file is the
one hashed, the ticks ahead and the append skip the pictures' checks (which copy every packed image's bytes on
the main thread; test_background_import shows such a result landing the same). A file changed since (even to
the same size and mtime), a digest that does not agree, or one the answer lacks is checked in full; a crafted
snapshot put in its place is refused as before."""
import hashlib
import io
import json
import os
import time

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod
from test_background_import import until
from test_hostile_snapshots import _packed, png, write_hostile
from test_snapshot_twins import written_as_the_background_blender_does


def vouched_job(monkeypatch, seed):
    """A job whose result the background Blender imported (IMPORTING), its snapshot's hash done; the pictures()
    calls of this Blender counted from then on."""
    queue, request = mod("trellis_addon.queue"), mod("trellis_addon.request")
    monkeypatch.setattr(mod("trellis_addon.twins"), "PRELOAD_BYTES", 0)  # this small result counts as big
    settings = request.resolve_settings(bpy.context.scene.trellis2.to_settings(),
                                        {"seed": seed, "resolution": 512, "texture_size": 1024,
                                         "decimation_target": 100000})
    job = queue.manager.enqueue(request.prepare_job(image=EXAMPLE_IMAGE, backend="preview", settings=settings,
                                                    force_new=True))
    until(job, "importing")
    assert job.state == "importing", f"{job.state}: {job.error}"
    end = time.monotonic() + 30
    snap = job.built["snapshots"][0]
    assert job.built["digests"] == [hashlib.sha256(open(snap, "rb").read()).hexdigest()]
    vouch = mod("trellis_addon.vouch")
    while vouch.pending(snap) and time.monotonic() < end:
        assert mod("trellis_addon.results").preload(job) is True, "a tick that waits for the hash"
        time.sleep(0.005)
    twins, calls = mod("trellis_addon.twins"), []
    pictures = twins.pictures
    monkeypatch.setattr(twins, "pictures", lambda image: calls.append(image.name) or pictures(image))
    return job, snap, calls


@pytest.mark.parametrize("change", ["touched", "same size and mtime", "another digest"])
def test_a_snapshot_changed_after_the_answer_is_checked_in_full(builder, monkeypatch, change):
    results, vouch = mod("trellis_addon.results"), mod("trellis_addon.vouch")
    job, snap, calls = vouched_job(monkeypatch, 22)
    if change == "touched":
        os.utime(snap)
    elif change == "same size and mtime":  # its last byte written again in place, its times set back
        st = os.stat(snap)
        with open(snap, "r+b") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
            f.seek(-1, os.SEEK_END)
            f.write(last)
        os.utime(snap, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(snap).st_size == st.st_size and os.stat(snap).st_mtime_ns == st.st_mtime_ns
    else:
        vouch.expect(snap, "0" * 64)
        end = time.monotonic() + 30
        while vouch.pending(snap) and time.monotonic() < end:
            time.sleep(0.005)
    assert not vouch.vouched(snap)
    assert [results.preload(job) for _ in range(4)] == [True, True, True, False], "appended, each one's size read"
    results.import_job(bpy.context, job)
    assert job.state == "done" and len(calls) == 2


def test_a_crafted_snapshot_put_in_place_of_a_vouched_one_is_refused(builder, monkeypatch, tmp_path, capsys):
    results = mod("trellis_addon.results")
    job, snap, calls = vouched_job(monkeypatch, 23)
    write_hostile(snap, "twin_pixel_bomb", tmp_path)
    assert not mod("trellis_addon.vouch").vouched(snap)
    while results.preload(job):
        pass
    results.import_job(bpy.context, job)
    said = capsys.readouterr().out
    assert "8193 x 1 pixels" in said and job.state == "done", said
    assert not [i.name for i in bpy.data.images if i.name.startswith("trellis2_packed")]
    assert [o.name for o in bpy.data.objects] == job.objects and calls, "the GLB imported, after the checks"


def test_a_tick_ahead_waits_for_the_hash_at_most_its_deadline(result, monkeypatch):
    importer, vouch = mod("trellis_addon.importer"), mod("trellis_addon.vouch")
    written_as_the_background_blender_does(result)
    snap = importer.snapshot_path(result)
    vouch._PENDING[os.path.realpath(snap)] = time.monotonic()  # a hash still running
    assert importer.preload(result, owner="job") is True and not bpy.data.images, "nothing done: it waits"
    vouch._PENDING[os.path.realpath(snap)] = time.monotonic() - vouch.WAIT_SECONDS
    monkeypatch.setattr(mod("trellis_addon.twins"), "viewports", lambda: {"all"})
    assert importer.preload(result, owner="job") is True and bpy.data.images, "past it: checked in full"
    assert not vouch.vouched(snap)
    mod("trellis_addon.ahead").drop("job")


def test_the_background_blender_vouches_only_for_pictures_the_check_passes(result, tmp_path):
    """blend_worker._vouched: the snapshot's SHA-256 where every image it holds passes twins.pictures_problem,
    "" where one does not (a pixel bomb: the UI's Blender then checks the snapshot in full and refuses it)."""
    worker = mod("trellis_addon.blend_worker")
    importer = mod("trellis_addon.importer")
    importer.import_glb(bpy.context, result, snapshot=True, twins=True)
    snap = importer.snapshot_path(result)
    assert worker._vouched(snap) == hashlib.sha256(open(snap, "rb").read()).hexdigest()
    _packed(tmp_path, png(8193, 1), "evil")
    assert worker._vouched(snap) == ""


def test_digests_in_the_answer_are_checked_and_kept_with_their_snapshots(scene, tmp_path):
    queue = mod("trellis_addon.queue")
    checked_answer = mod("trellis_addon.queue.builder").checked_answer
    glbs = [tmp_path / f"result_{i}.glb" for i in range(3)]
    snaps = [tmp_path / f"result_{i}.blender-5.0.blend" for i in range(3)]
    for path in glbs + snaps:
        path.write_bytes(b"x")
    job = queue.Job(name="a", backend="preview", settings={}, output_dir=str(tmp_path), rgba_path="",
                    result={"files": [str(g) for g in glbs], "seeds": [1, 2, 3]})
    good = "ab" * 32
    answer = checked_answer(job, {"snapshots": [str(tmp_path / "gone.blend"), str(snaps[0]), str(snaps[1]),
                                                str(snaps[2])],
                                  "digests": ["cd" * 32, good, "AB" * 32, good[:-1]]})
    assert answer["snapshots"] == [str(s) for s in snaps] and answer["digests"] == [good, "", ""]
    assert checked_answer(job, {"snapshots": [str(snaps[0])]})["digests"] == [""]
    assert checked_answer(job, {"snapshots": [str(snaps[0])], "digests": [7]})["digests"] == [""]


def test_a_later_session_vouches_for_it_again_from_the_store(builder, monkeypatch):
    """The store (in the extension's user folder) keeps what was vouched for: in a new session (vouch.forget) the
    ticks ahead of a cache hit wait for the file's hash again, and then skip the sizes' checks as before."""
    results, vouch = mod("trellis_addon.results"), mod("trellis_addon.vouch")
    job, snap, calls = vouched_job(monkeypatch, 24)
    with open(vouch.store_path(), encoding="utf-8") as f:
        kept = json.load(f)["vouched"]
    assert kept[os.path.realpath(snap)] == {"sha256": job.built["digests"][0], "size": os.path.getsize(snap)}
    vouch.forget()  # a new session: nothing known but the store
    assert not vouch.vouched(snap)
    waited = 0
    while results.preload(job) and not bpy.data.images:
        waited += 1
        assert waited < 2000
        time.sleep(0.005)
    assert vouch.vouched(snap) and len(bpy.data.images) == 2, "hashed again, then its images appended"
    assert results.preload(job) is False
    results.import_job(bpy.context, job)
    assert job.state == "done" and calls == []


def _store(entries: dict) -> str:
    vouch = mod("trellis_addon.vouch")
    vouch.forget()
    with open(vouch.store_path(), "w", encoding="utf-8") as f:
        f.write(entries if isinstance(entries, str) else json.dumps({"vouched": entries}))
    return vouch.store_path()


@pytest.mark.parametrize("kept", ["not json", "wrong digest", "wrong size", "wrong shape", "too long"])
def test_what_the_store_says_is_checked_too(result, monkeypatch, kept):
    """A store that is not JSON, not of its shape or over vouch.STORE_BYTES is left out; an entry of another size
    is not hashed, one whose digest does not agree is dropped: the snapshot is checked in full either way."""
    importer, twins, vouch = mod("trellis_addon.importer"), mod("trellis_addon.twins"), mod("trellis_addon.vouch")
    written_as_the_background_blender_does(result)
    snap = importer.snapshot_path(result)
    key, size = os.path.realpath(snap), os.path.getsize(snap)
    store = _store({"not json": "{", "wrong digest": {key: {"sha256": "0" * 64, "size": size}},
                    "wrong size": {key: {"sha256": vouch.digest(snap), "size": size + 1}},
                    "wrong shape": {key: {"sha256": vouch.digest(snap), "size": str(size)}},
                    "too long": json.dumps({"vouched": {key: {"sha256": vouch.digest(snap), "size": size}},
                                            "padding": "x" * vouch.STORE_BYTES})}[kept])
    monkeypatch.setattr(twins, "PRELOAD_BYTES", 0)
    steps = 0
    while importer.preload(result, owner="job"):
        steps += 1
        assert steps < 2000
        time.sleep(0.001)
    assert not vouch.vouched(snap)
    assert len(bpy.data.images) == 2 and all(n in twins._AHEAD[snap].sizes for n in bpy.data.images.keys()), \
        "each one's size read"
    if kept == "wrong digest":
        with open(store, encoding="utf-8") as f:
            assert json.load(f) == {"vouched": {}}, "the entry that did not agree is dropped"
    mod("trellis_addon.ahead").drop("job")


def test_the_store_vouches_only_for_the_bytes_it_names(result, monkeypatch):
    importer, twins, vouch = mod("trellis_addon.importer"), mod("trellis_addon.twins"), mod("trellis_addon.vouch")
    written_as_the_background_blender_does(result)
    snap = importer.snapshot_path(result)
    _store({os.path.realpath(snap): {"sha256": vouch.digest(snap), "size": os.path.getsize(snap)}})
    monkeypatch.setattr(twins, "PRELOAD_BYTES", 0)
    while importer.preload(result, owner="job") and not bpy.data.images:
        time.sleep(0.001)
    assert vouch.vouched(snap) and not twins._AHEAD[snap].steps, "appended, no size to read"
    mod("trellis_addon.ahead").drop("job")


def test_a_result_whose_finishing_failed_is_not_vouched_for(result, monkeypatch):
    """blend_worker.import_task answers "" for the raw snapshot of a result whose finishing failed (the finishing
    may have changed its images since they were saved) and the finished snapshot's SHA-256 where it succeeded."""
    from backend.worker import Channel
    worker, finishing = mod("trellis_addon.blend_worker"), mod("trellis_addon.finishing")
    queue, importer = mod("trellis_addon.queue"), mod("trellis_addon.importer")
    job = queue.Job(name="mushroom", backend="preview", settings={"texture_size": 1024},
                    output_dir=os.path.dirname(result), rgba_path="", result={"files": [result], "seeds": [1]},
                    finish=bpy.context.scene.trellis2.to_finish())
    task = {"id": "t", "files": [result], "finish": finishing.specs(job)}

    def broken(*args, **kwargs):
        raise mod("trellis_addon.finish").FinishError("cleanup", "weld exploded")
    monkeypatch.setattr(finishing, "run", broken)
    answer = worker.import_task(Channel(io.StringIO()), task)
    assert answer["qa"] == [{"failed": "cleanup: weld exploded"}] and answer["digests"] == [""]
    assert answer["snapshots"] == [importer.snapshot_path(result)]
    monkeypatch.undo()
    answer = worker.import_task(Channel(io.StringIO()), task)
    finished = importer.snapshot_path(result, task["finish"][0]["key"])
    assert answer["snapshots"] == [finished] and answer["digests"] == [mod("trellis_addon.vouch").digest(finished)]
