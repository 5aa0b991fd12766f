"""The background Blender's messages (backend/blender_protocol.py) without Blender: each one goes through its
protocol line and parses back equal; a field that is missing or not of its shape is refused, named."""
import json

import pytest

from backend.blender_protocol import (FinishSpec, ImportAnswer, ImportTask, MessageError, PrepareAnswer,
                                      PrepareTask, is_sha)

SHA = "0123456789abcdef" * 4
SPEC = FinishSpec(name="apple", settings={"lod_levels": 2, "origin": "KEEP"}, target_size=1.5, texture_size=2048,
                  record={"seeds": [3]}, preview_image="/jobs/apple/thumb.png", library="/assets",
                  saved="/jobs/apple/library.json", key="0a1b2c3d4e5f")
GLBS = ["/jobs/apple/result_0.glb", "/jobs/apple/result_1.glb"]
IMPORT = ImportTask("apple-import", GLBS, "/keys/snapshot.key", finish=[SPEC, SPEC])
RETEXTURE = ImportTask("pear-import", ["/jobs/pear/result_0.glb"], "/keys/snapshot.key",
                       retexture="/jobs/pear/input_mesh.blend")
PREPARE = PrepareTask("apple-prepare", image="/pictures/apple.png", rgba="/jobs/apple/input.npy",
                      thumb="/jobs/apple/thumb.png", colorspace="sRGB", alpha_mode="STRAIGHT", max_megapixels=16.0)
PREPARE_MESH = PrepareTask("pear-prepare", mesh_blend="/jobs/pear/input_mesh.blend",
                           mesh_glb="/jobs/pear/input_mesh.glb")
PREPARE_BOTH = PrepareTask("pear-prepare", image="/pictures/pear.png", rgba="/jobs/pear/input.npy",
                           max_megapixels=4, mesh_blend="/jobs/pear/input_mesh.blend",
                           mesh_glb="/jobs/pear/input_mesh.glb")
ANSWER = ImportAnswer("apple-import", ["/jobs/apple/result_0.blender-5.0-0a1b2c3d4e5f.blend"],
                      [{"triangles": 12}, {"failed": "Decimating failed"}], ["/assets/apple.blend"])
MESSAGES = [IMPORT, ImportTask("plain-import", GLBS, "/keys/snapshot.key"), RETEXTURE, PREPARE, PREPARE_MESH,
            PREPARE_BOTH, ANSWER, ImportAnswer("empty-import"), PrepareAnswer("apple-prepare", SHA),
            PrepareAnswer("pear-prepare", SHA, "/jobs/pear/input_mesh.glb"), PrepareAnswer("mesh-only", None, "/m.glb")]


def line_of(message) -> dict:
    return json.loads(message.to_line())


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}-{m.id}")
def test_each_message_parses_back_from_its_line(message):
    msg = line_of(message)
    assert msg["type"] == ("job" if isinstance(message, (ImportTask, PrepareTask)) else "result")
    assert msg == message.to_message() | {"type": msg["type"]}
    assert type(message).parse(msg) == message


def test_a_finish_spec_is_the_plain_json_finishing_takes():
    assert line_of(IMPORT)["finish"][0] == {
        "name": "apple", "settings": {"lod_levels": 2, "origin": "KEEP"}, "target_size": 1.5, "texture_size": 2048,
        "record": {"seeds": [3]}, "preview_image": "/jobs/apple/thumb.png", "library": "/assets",
        "saved": "/jobs/apple/library.json", "key": "0a1b2c3d4e5f"}
    assert FinishSpec.parse(SPEC.to_message()) == SPEC
    whole = FinishSpec.parse(dict(SPEC.to_message(), target_size=2))
    assert whole.target_size == 2 and type(whole.target_size) is int, "kept as sent: its key hashes it"


def test_absent_groups_are_not_sent():
    assert set(line_of(PREPARE_MESH)) == {"type", "id", "kind", "mesh_blend", "mesh_glb"}
    assert set(line_of(PREPARE)) == {"type", "id", "kind", "image", "rgba", "thumb", "colorspace", "alpha_mode",
                                     "max_megapixels"}
    assert "finish" not in line_of(RETEXTURE) and "retexture" not in line_of(IMPORT)
    assert set(line_of(PrepareAnswer("x", SHA))) == {"type", "id", "image_sha"}
    defaults = PrepareTask.parse({"type": "job", "id": "a", "kind": "prepare", "image": "/p.png",
                                  "rgba": "/j/input.npy", "max_megapixels": 1, "finish": None})
    assert (defaults.thumb, defaults.colorspace, defaults.alpha_mode, defaults.mesh_blend) == ("", "", "", None)


def spec_with(**change) -> dict:
    spec = SPEC.to_message()
    for name, value in change.items():
        if value is KeyError:
            del spec[name]
        else:
            spec[name] = value
    return spec


def refused(cls, msg) -> str:
    with pytest.raises(MessageError) as caught:
        cls.parse(msg)
    assert isinstance(caught.value, ValueError)
    return caught.value.field


IMPORT_MSG = line_of(IMPORT)


@pytest.mark.parametrize("change, field", [
    ({"files": "/jobs/apple/result_0.glb"}, "files"),
    ({"files": None}, "files"),
    ({"files": ["/jobs/apple/result_0.glb", 7]}, "files[1]"),
    ({"files": GLBS[:1]}, "finish"),  # one spec per file
    ({"key_file": KeyError}, "key_file"),
    ({"key_file": "keys/snapshot.key"}, "key_file"),
    ({"key_file": 3}, "key_file"),
    ({"id": 12}, "id"),
    ({"id": KeyError}, "id"),
    ({"kind": "prepare"}, "kind"),
    ({"finish": {"apple": SPEC.to_message()}}, "finish"),
    ({"finish": [SPEC.to_message(), "spec"]}, "finish[1]"),
    ({"finish": [SPEC.to_message(), spec_with(texture_size=0)]}, "finish[1].texture_size"),
    ({"finish": [spec_with(texture_size=20000), SPEC.to_message()]}, "finish[0].texture_size"),
    ({"finish": [spec_with(texture_size=True), SPEC.to_message()]}, "finish[0].texture_size"),
    ({"finish": [spec_with(texture_size=1024.0), SPEC.to_message()]}, "finish[0].texture_size"),
    ({"finish": [spec_with(target_size=-1), SPEC.to_message()]}, "finish[0].target_size"),
    ({"finish": [spec_with(target_size=1e6), SPEC.to_message()]}, "finish[0].target_size"),
    ({"finish": [spec_with(target_size="1"), SPEC.to_message()]}, "finish[0].target_size"),
    ({"finish": [spec_with(target_size=False), SPEC.to_message()]}, "finish[0].target_size"),
    ({"finish": [spec_with(name=""), SPEC.to_message()]}, "finish[0].name"),
    ({"finish": [spec_with(settings=[]), SPEC.to_message()]}, "finish[0].settings"),
    ({"finish": [spec_with(record=None), SPEC.to_message()]}, "finish[0].record"),
    ({"finish": [spec_with(preview_image=KeyError), SPEC.to_message()]}, "finish[0].preview_image"),
    ({"finish": [spec_with(library="assets"), SPEC.to_message()]}, "finish[0].library"),
    ({"finish": [spec_with(saved="library.json"), SPEC.to_message()]}, "finish[0].saved"),
    ({"finish": [spec_with(key=12), SPEC.to_message()]}, "finish[0].key"),
    ({"retexture": "/jobs/apple/input_mesh.blend"}, "finish"),  # never both
])
def test_an_import_task_field_out_of_shape_is_refused_by_name(change, field):
    msg = dict(IMPORT_MSG)
    for name, value in change.items():
        if value is KeyError:
            del msg[name]
        else:
            msg[name] = value
    assert refused(ImportTask, msg) == field


@pytest.mark.parametrize("retexture", ["/jobs/pear/input_mesh.obj", "/elsewhere/input_mesh.blend", 5])
def test_a_retexture_blend_must_sit_beside_the_glb(retexture):
    assert refused(ImportTask, dict(line_of(RETEXTURE), retexture=retexture)) == "retexture"
    assert refused(ImportTask, dict(line_of(RETEXTURE), files=[])) == "retexture"


@pytest.mark.parametrize("base, change, field", [
    (PREPARE, {"image": None}, "image or mesh_blend"),
    (PREPARE, {"image": ""}, "image"),
    (PREPARE, {"image": 5}, "image"),
    (PREPARE, {"rgba": "/jobs/apple/input.png"}, "rgba"),
    (PREPARE, {"rgba": None}, "rgba"),
    (PREPARE, {"thumb": "/elsewhere/thumb.png"}, "thumb"),
    (PREPARE, {"thumb": None}, "thumb"),
    (PREPARE, {"colorspace": 1}, "colorspace"),
    (PREPARE, {"alpha_mode": "SOMETIMES"}, "alpha_mode"),
    (PREPARE, {"max_megapixels": True}, "max_megapixels"),
    (PREPARE, {"max_megapixels": 0}, "max_megapixels"),
    (PREPARE, {"max_megapixels": "16"}, "max_megapixels"),
    (PREPARE, {"max_megapixels": float("nan")}, "max_megapixels"),
    (PREPARE, {"max_megapixels": None}, "max_megapixels"),
    (PREPARE, {"id": None}, "id"),
    (PREPARE_MESH, {"mesh_blend": "/jobs/pear/input_mesh.glb"}, "mesh_blend"),
    (PREPARE_MESH, {"mesh_blend": ["/jobs/pear/input_mesh.blend"]}, "mesh_blend"),
    (PREPARE_MESH, {"mesh_glb": "/elsewhere/input_mesh.glb"}, "mesh_glb"),
    (PREPARE_MESH, {"mesh_glb": None}, "mesh_glb"),
    (PREPARE_BOTH, {"rgba": 3}, "rgba"),
])
def test_a_prepare_task_field_out_of_shape_is_refused_by_name(base, change, field):
    assert refused(PrepareTask, dict(line_of(base), **change)) == field


@pytest.mark.parametrize("change, field", [
    ({"snapshots": "/jobs/apple/result_0.blend"}, "snapshots"),
    ({"snapshots": ["/a.blend", 7]}, "snapshots[1]"),
    ({"qa": [{"triangles": 1}, "good"]}, "qa[1]"),
    ({"qa": None}, "qa"),
    ({"libraries": 3}, "libraries"),
    ({"libraries": [None]}, "libraries[0]"),
    ({"id": 4}, "id"),
])
def test_an_import_answer_out_of_shape_is_refused_by_name(change, field):
    assert refused(ImportAnswer, dict(line_of(ANSWER), **change)) == field


def test_an_import_answer_keeps_what_parses_when_asked():
    kept = ImportAnswer.parse({"snapshots": ["/a.blend", 7, None], "qa": [{"triangles": 1}, "good", None],
                               "libraries": "x"}, drop=True)
    assert kept == ImportAnswer("", ["/a.blend"], [{"triangles": 1}, None, None], [])
    assert ImportAnswer.parse("not an object", drop=True) == ImportAnswer("")
    assert ImportAnswer.parse(line_of(ANSWER), drop=True) == ANSWER


@pytest.mark.parametrize("change, field", [
    ({"image_sha": SHA.upper()}, "image_sha"),
    ({"image_sha": SHA[:-1]}, "image_sha"),
    ({"image_sha": 12}, "image_sha"),
    ({"mesh": ["/m.glb"]}, "mesh"),
    ({"id": None}, "id"),
])
def test_a_prepare_answer_out_of_shape_is_refused_by_name(change, field):
    assert refused(PrepareAnswer, dict(line_of(PrepareAnswer("apple-prepare", SHA, "/m.glb")), **change)) == field


def test_a_message_that_is_no_object_is_refused():
    for cls in (ImportTask, PrepareTask, ImportAnswer, PrepareAnswer):
        assert refused(cls, ["job"]) == "message"
    assert refused(FinishSpec, "spec") == "spec"


def test_a_hash_is_64_lowercase_hex_digits():
    assert is_sha(SHA) and not is_sha(SHA.upper()) and not is_sha(SHA + "0") and not is_sha(None)
