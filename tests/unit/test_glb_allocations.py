"""A result GLB's check covers what Blender's glTF importer will allocate: every accessor inside its
bufferView, accessors of zeros small, sparse data inside its views, the meshes' vertices and indices under a
bound from the Face Budget's range; only known extensions; and any malformed file (nested 100 000 deep, 12
bytes, not UTF-8, wrong types) is a ValueError, never another exception."""
import base64
import copy
import json
import struct
import time

import numpy as np
import pytest

from backend import glb, schema
from servers.base import MALFORMED_GLBS, glb_bytes, png_head, raw_glb, tiny_doc, tiny_glb

TRIANGLE = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)  # tiny_doc's 36 bytes: accessor 0 in bufferView 0


def check(tmp_path, data: bytes, name: str = "x.glb") -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    return glb.validate_glb(str(path))


def refused(tmp_path, data: bytes, match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        check(tmp_path, data)
    assert str(info.value).startswith("x.glb"), "the message names the file"
    return str(info.value)


def with_doc(change, binary: bytes = TRIANGLE) -> bytes:
    doc = tiny_doc()
    change(doc)
    return glb_bytes(doc, binary)


def test_good_files_still_pass(tmp_path):
    assert check(tmp_path, tiny_glb())["asset"]["version"] == "2.0"
    sparse = with_doc(lambda doc: doc["accessors"].append(
        {"componentType": 5126, "count": 3, "type": "VEC3",
         "sparse": {"count": 1, "indices": {"bufferView": 0, "componentType": 5125},
                    "values": {"bufferView": 0, "byteOffset": 12}}}))
    check(tmp_path, sparse)  # a sparse accessor of zeros (a morph target's way) that fits its views
    strided = with_doc(lambda doc: (doc["bufferViews"][0].update(byteStride=12),
                                    doc["accessors"].append(dict(doc["accessors"][0], type="VEC2"))))
    check(tmp_path, strided)  # VEC2 elements 12 bytes apart: 12 * 2 + 8 = 32 of the view's 36 bytes


def test_the_bounds_come_from_the_face_budget():
    assert glb.FACE_BUDGET_MAX == schema.BY_NAME["decimation_target"].max == 2_000_000
    assert glb.MAX_VERTICES == glb.MAX_INDICES == 3 * 2 * glb.FACE_BUDGET_MAX


# --- accessors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [10_000_000, 2 ** 31, (1 << 16) + 1])  # the last one over MAX_ZERO_COUNT
def test_an_accessor_of_zeros_is_small(tmp_path, count):
    data = with_doc(lambda doc: doc["accessors"].append({"componentType": 5126, "count": count, "type": "VEC3"}))
    assert len(data) < 600
    refused(tmp_path, data, f"accessor 1 has no bufferView and a count of {count}: the importer would make that "
                            f"many elements of zeros; at most {glb.MAX_ZERO_COUNT} are accepted")
    doc = tiny_doc()
    doc["accessors"].append({"componentType": 5126, "count": glb.MAX_ZERO_COUNT, "type": "MAT4"})
    check(tmp_path, glb_bytes(doc, TRIANGLE))  # at the cap: 4 MiB of zeros


@pytest.mark.parametrize("change,needs", [
    (lambda acc, view: acc.update(count=4), 48),
    (lambda acc, view: acc.update(count=2 ** 31), 12 * 2 ** 31),
    (lambda acc, view: acc.update(byteOffset=4), 40),
    (lambda acc, view: acc.update(type="VEC4"), 48),
    (lambda acc, view: acc.update(type="MAT3", componentType=5123, count=2), 48),  # columns padded: 3 x 8 each
    (lambda acc, view: view.update(byteStride=16), 44),  # 16 x 2 + 12
])
def test_an_accessor_lies_inside_its_buffer_view(tmp_path, change, needs):
    def hostile(doc):
        change(doc["accessors"][0], doc["bufferViews"][0])
    refused(tmp_path, with_doc(hostile), f"accessor 0 needs {needs} bytes of bufferView 0, which holds 36")


@pytest.mark.parametrize("change,match", [
    (lambda doc: doc["bufferViews"][0].update(byteLength=40), "bufferView 0 lies outside its buffer"),
    (lambda doc: doc["bufferViews"][0].update(byteOffset=2 ** 40), "bufferView 0 lies outside its buffer"),
    (lambda doc: (doc["buffers"][0].update(byteLength=2 ** 31), doc["bufferViews"][0].update(byteLength=2 ** 31)),
     "buffer 0 refers to a binary chunk the file does not hold"),
    (lambda doc: doc["bufferViews"][0].update(byteStride=3), "byteStride 3"),
    (lambda doc: doc["bufferViews"][0].update(byteStride=256), "byteStride 256"),
])
def test_a_buffer_view_lies_inside_its_buffer_and_the_binary_chunk(tmp_path, change, match):
    refused(tmp_path, with_doc(change), match)


def sparse_doc(**sparse) -> dict:
    """tiny_doc with a sparse accessor 1 of zeros (count 3) whose indices and values are in bufferView 0."""
    doc = tiny_doc()
    spec = {"count": 1, "indices": {"bufferView": 0, "componentType": 5125}, "values": {"bufferView": 0}}
    for key, value in sparse.items():
        if isinstance(value, dict):
            spec[key] = dict(spec[key], **value)
        else:
            spec[key] = value
    doc["accessors"].append({"componentType": 5126, "count": 3, "type": "VEC3", "sparse": spec})
    return doc


@pytest.mark.parametrize("sparse,match", [
    ({"count": 4}, "accessor 1's sparse count 4 is over its count 3"),
    ({"count": 2 ** 31}, "accessor 1's sparse count 2147483648 is over its count 3"),
    ({"count": 3, "indices": {"byteOffset": 28}}, "accessor 1's sparse indices needs 40 bytes of bufferView 0"),
    ({"count": 2, "values": {"byteOffset": 16}}, "accessor 1's sparse values needs 40 bytes of bufferView 0"),
    ({"indices": {"componentType": 5126}}, "sparse indices has componentType 5126"),
    ({"indices": {"bufferView": None}}, "sparse indices names bufferView None"),
    ({"values": "x"}, "accessor 1's sparse values is not an object"),
    ({"count": -1}, "sparse has count -1"),
])
def test_sparse_accessors_fit_their_views(tmp_path, sparse, match):
    refused(tmp_path, glb_bytes(sparse_doc(**sparse), TRIANGLE), match)


@pytest.mark.parametrize("key,value", [("count", True), ("count", -3), ("count", 3.0), ("count", "3"), ("count", None),
                                       ("byteOffset", False), ("byteOffset", -4), ("byteOffset", 0.5),
                                       ("componentType", 5126.0), ("componentType", 5124), ("componentType", True),
                                       ("type", "VEC5"), ("type", 3)])
def test_accessor_fields_of_the_wrong_type_are_refused(tmp_path, key, value):
    message = refused(tmp_path, with_doc(lambda doc: doc["accessors"][0].update({key: value})), f"accessor 0 has {key}")
    assert repr(value)[:10] in message or str(value) in message


# --- totals across the meshes ---------------------------------------------------------------------------------

def many_uses(vertices: int, primitives: int, indices: bool = False) -> bytes:
    """One accessor of `vertices` positions (a real bufferView of vertices x 12 bytes) named by `primitives`
    primitives: a small file the importer makes primitives x vertices vertices of (indices=True: each primitive
    a triangle's vertices and the same accessor of `vertices` indices)."""
    positions = np.zeros((vertices, 3), np.float32).tobytes()
    doc = tiny_doc()
    doc["bufferViews"] = [{"buffer": 0, "byteLength": len(positions)}]
    doc["buffers"] = [{"byteLength": len(positions)}]
    doc["accessors"] = [{"bufferView": 0, "componentType": 5126, "count": vertices, "type": "VEC3"},
                        {"bufferView": 0, "componentType": 5125, "count": vertices, "type": "SCALAR"},
                        {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}]
    primitive = {"attributes": {"POSITION": 2}, "indices": 1} if indices else {"attributes": {"POSITION": 0}}
    doc["meshes"] = [{"primitives": [primitive] * primitives}]
    return glb_bytes(doc, positions)


def test_vertices_of_all_primitives_together_stay_under_the_bound(tmp_path):
    per = 100_000
    uses = glb.MAX_VERTICES // per
    check(tmp_path, many_uses(per, uses))  # exactly MAX_VERTICES: accepted (a 1.2 MB file)
    message = refused(tmp_path, many_uses(per, uses + 1),
                      f"its meshes have {(uses + 1) * per} vertices together; at most {glb.MAX_VERTICES} are "
                      "accepted")
    assert "the Face Budget goes up to 2000000 faces" in message


def test_indices_of_all_primitives_together_stay_under_the_bound(tmp_path):
    per = 3_000
    uses = glb.MAX_INDICES // per + 1
    refused(tmp_path, many_uses(per, uses, indices=True),
            f"its meshes have {uses * per} indices together; at most {glb.MAX_INDICES} are accepted")


def test_morph_targets_and_extra_attributes_count(tmp_path):
    per = 1_000_000
    data = many_uses(per, 1)
    doc = json.loads(data[20:20 + struct.unpack("<I", data[12:16])[0]])
    doc["meshes"][0]["primitives"][0]["targets"] = [{"POSITION": 0}] * 12  # 13 x 1M vertices
    refused(tmp_path, glb_bytes(doc, bytes(12 * per)), "its meshes have 13000000 vertices together")
    doc["meshes"][0]["primitives"][0] = {"attributes": {f"_X{n}": 0 for n in range(100)}}  # 100 uses of 1M
    refused(tmp_path, glb_bytes(doc, bytes(12 * per)), "its accessors are used for 100000000 elements together; "
                                                      f"at most {glb.MAX_ELEMENTS}")
    doc["meshes"] = []
    doc["animations"] = [{"samplers": [{"input": 0, "output": 0}] * 50, "channels": []}]
    refused(tmp_path, glb_bytes(doc, bytes(12 * per)), "used for 100000000 elements together")


@pytest.mark.parametrize("change,match", [
    (lambda prim: prim.update(attributes={"POSITION": 5}), "attributes names POSITION 5"),
    (lambda prim: prim.update(attributes={"POSITION": True}), "attributes names POSITION True"),
    (lambda prim: prim.update(attributes=[0]), "attributes is not an object"),
    (lambda prim: prim.update(indices=-1), "primitive 0 names indices -1"),
    (lambda prim: prim.update(targets={"POSITION": 0}), "targets is not a list of objects"),
])
def test_primitive_fields_of_the_wrong_type_are_refused(tmp_path, change, match):
    refused(tmp_path, with_doc(lambda doc: change(doc["meshes"][0]["primitives"][0])), match)


# --- extensions -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["extensionsUsed", "extensionsRequired"])
@pytest.mark.parametrize("name", ["KHR_draco_mesh_compression", "EXT_meshopt_compression", "KHR_texture_basisu",
                                  "EXT_mesh_gpu_instancing", "VENDOR_unknown"])
def test_extensions_outside_the_list_are_refused(tmp_path, key, name):
    def hostile(doc):
        doc["extensionsUsed"] = [name]
        if key == "extensionsRequired":
            doc["extensionsUsed"], doc["extensionsRequired"] = [], [name]
    refused(tmp_path, with_doc(hostile), f"{key} names the extension '{name}', which is not accepted")


def test_an_extension_the_file_does_not_declare_is_refused_where_it_is_used(tmp_path):
    # Blender's importer decodes a primitive's Draco stream (and instances a node) whether declared or not
    refused(tmp_path, with_doc(lambda doc: doc["meshes"][0]["primitives"][0].update(
        extensions={"KHR_draco_mesh_compression": {"bufferView": 0, "attributes": {"POSITION": 0}}})),
        "an extensions object names the extension 'KHR_draco_mesh_compression'")
    refused(tmp_path, with_doc(lambda doc: doc["nodes"][0].update(
        extensions={"EXT_mesh_gpu_instancing": {"attributes": {"TRANSLATION": 0}}})),
        "'EXT_mesh_gpu_instancing', which is not accepted")
    refused(tmp_path, with_doc(lambda doc: doc["nodes"][0].update(extensions=[1])), "extensions entry is not an object")
    # extras are the producer's own data: a key named "extensions" there is not an extension
    check(tmp_path, with_doc(lambda doc: doc.update(extras={"extensions": {"anything": 1}})))


def test_what_trellis2_and_the_common_exporters_use_is_accepted(tmp_path):
    def webp(doc):  # TRELLIS.2's export with WebP textures (trimesh's extension_webp)
        doc["extensionsUsed"] = doc["extensionsRequired"] = ["EXT_texture_webp"]
        doc["textures"] = [{"extensions": {"EXT_texture_webp": {"source": 0}}}]
        doc["images"] = [{"uri": "data:image/webp;base64," + base64.b64encode(
            b"RIFF\0\0\0\0WEBPVP8X" + struct.pack("<I", 10) + bytes(4) + (63).to_bytes(3, "little")
            + (31).to_bytes(3, "little")).decode(), "mimeType": "image/webp"}]
        doc["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0, "extensions": {
            "KHR_texture_transform": {"scale": [2, 2]}}}}, "extensions": {
            "KHR_materials_emissive_strength": {"emissiveStrength": 2}, "KHR_materials_ior": {"ior": 1.4}}}]
        doc["extensionsUsed"] += ["KHR_texture_transform", "KHR_materials_emissive_strength", "KHR_materials_ior"]
    check(tmp_path, with_doc(webp))


# --- malformed files: ValueError, nothing else ---------------------------------------------------------------

@pytest.mark.parametrize("kind,match", [
    ("JSON 100 000 deep", "its JSON nests 100000 levels deep; at most 64 are accepted"),
    ("12 bytes", "12 bytes, too short to hold a JSON chunk"),
    ("JSON not UTF-8", "its JSON chunk is not UTF-8"),
    ("10M zeros", "accessor 0 has no bufferView and a count of 10000000"),
])
def test_malformed_files_are_value_errors(tmp_path, kind, match):
    refused(tmp_path, MALFORMED_GLBS[kind](), match)


@pytest.mark.parametrize("js,match", [
    (b"[1, 2, 3]", "the JSON chunk is not an object"),
    (b'"a string"', "the JSON chunk is not an object"),
    (b"null", "the JSON chunk is not an object"),
    (b'{"asset": {"version": "2.0"}, "accessors": NaN}', "NaN is not JSON"),
    (b'{"asset": ', "unreadable JSON chunk"),
    (b"\xef\xbb\xbf{}", "unreadable JSON chunk"),  # a byte-order mark: not glTF's JSON
    (b'{"asset": {"version": "2.0"}, "accessors": 5}', "'accessors' is not a list of objects"),
    (b'{"accessors": [{"count": 1}]}', "accessor 0 has componentType None"),
    (b'{"meshes": [{"primitives": 7}]}', "mesh 0's primitives is not a list of objects"),
    (b'{"extensionsUsed": "KHR_materials_ior"}', "extensionsUsed is not a list"),
    (b'{"extensionsUsed": [5]}', "extensionsUsed names the extension 5, which"),
    (b'{"skins": [{"inverseBindMatrices": 0}]}', "skin 0 names inverseBindMatrices 0"),
    (b'{"animations": [{"samplers": [{"input": 0}]}]}', "animation 0 sampler 0 names input 0"),
])
def test_json_that_is_no_gltf_document_is_a_value_error(tmp_path, js, match):
    refused(tmp_path, raw_glb(js), match)


def test_nesting_is_counted_outside_strings_only(tmp_path):
    deep = json.loads("{}")
    node = deep
    for _ in range(glb.MAX_JSON_DEPTH - 2):  # the document, extras and 62 more: 64 levels
        node["x"] = {}
        node = node["x"]
    doc = dict(tiny_doc(), extras=deep)
    doc["asset"]["generator"] = "[[[[{{{{" * 1000 + '\\"]'  # brackets in a string, an escaped quote
    check(tmp_path, glb_bytes(doc, TRIANGLE))
    node["x"] = {}
    refused(tmp_path, glb_bytes(doc, TRIANGLE), "nests 65 levels deep")


def test_json_size_and_containers_are_capped(tmp_path):
    doc = dict(tiny_doc(), extras=[[] for _ in range(glb.MAX_JSON_CONTAINERS)])
    refused(tmp_path, glb_bytes(doc, TRIANGLE), f"at most {glb.MAX_JSON_CONTAINERS} are accepted")
    doc["extras"] = "x" * glb.MAX_JSON_BYTES
    refused(tmp_path, glb_bytes(doc, TRIANGLE), r"its JSON chunk is \d+ bytes; at most 8 MiB is accepted")


@pytest.mark.parametrize("js", [b'{"a": "' + b'\\"' * (2 << 20), b'"' + b'\\' * (4 << 20) + b'"' * (2 << 20),
                                b'"\\' * (2 << 20)], ids=["escaped quotes", "backslashes then quotes",
                                                           "quote backslash pairs"])
def test_the_nesting_scan_is_linear_on_unclosed_strings(tmp_path, js):
    start = time.perf_counter()
    with pytest.raises(ValueError):
        check(tmp_path, raw_glb(js))
    assert time.perf_counter() - start < 5  # a scan retried from every quote would take hours


def test_a_data_uri_without_base64_is_another_file(tmp_path):
    # Blender's importer reads such a URI as a file name beside the GLB (on Windows its ".." are resolved)
    for uri in ("data:,../../secret.png", "data:image/png,..%2F..%2Fsecret.png"):
        refused(tmp_path, with_doc(lambda doc, uri=uri: doc.update(images=[{"uri": uri}])),
                "image 0 refers to another file")
    refused(tmp_path, with_doc(lambda doc: doc["buffers"].append({"byteLength": 1, "uri": "data:,A"})),
            "buffer 1 refers to another file")


def test_a_data_uri_buffer_holds_its_byte_length(tmp_path):
    data = "data:application/octet-stream;base64," + base64.b64encode(bytes(8)).decode()
    check(tmp_path, with_doc(lambda doc: doc["buffers"].append({"byteLength": 8, "uri": data})))
    refused(tmp_path, with_doc(lambda doc: doc["buffers"].append({"byteLength": 9, "uri": data})),
            "buffer 1's data: URI does not hold its byteLength of 9 bytes")
    refused(tmp_path, with_doc(lambda doc: doc["buffers"].append({"byteLength": 1, "uri": "data:x;base64,A"})),
            "buffer 1's data: URI does not hold")


def test_a_texture_is_read_where_the_importer_reads_it(tmp_path):
    # The importer decodes what follows ";base64,"; before, the header check read what followed the first ","
    small, huge = (base64.b64encode(png_head(side, side)).decode() for side in (16, 60000))
    uri = f"data:image/png;x=,{small};base64,{huge}"
    refused(tmp_path, with_doc(lambda doc: doc.update(images=[{"uri": uri}])), "60000 x 60000 pixels")


def test_every_value_of_another_type_is_a_value_error_or_passes(tmp_path):
    """Every value of a real result's JSON (write_glb's), in turn replaced by each of values of other types, or
    removed: the check returns or raises ValueError, nothing else (no TypeError, KeyError, IndexError)."""
    from backend import png
    pixel = png.encode_png(np.array([[[10, 200, 30, 255]]], np.uint8))
    path = str(tmp_path / "good.glb")
    glb.write_glb(path, np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), np.zeros((3, 2), np.float32),
                  np.array([[0, 1, 2]], np.uint32), pixel, pixel)
    with open(path, "rb") as f:
        data = f.read()
    js_len = struct.unpack("<I", data[12:16])[0]
    good, binary = json.loads(data[20:20 + js_len]), data[28 + js_len:]

    def paths(node, at=()):
        yield at
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            yield from paths(value, at + (key,))
    others = [True, False, -1, 0, 2 ** 31, 1.5, "x", None, [], {}, [0], {"a": 0}, 5126, "VEC3", REMOVE := object()]
    outcomes = {"passed": 0, "refused": 0}
    for at in list(paths(good))[1:]:
        for value in others:
            doc = copy.deepcopy(good)
            node = doc
            for key in at[:-1]:
                node = node[key]
            if value is not REMOVE:
                node[at[-1]] = value
            elif isinstance(node, dict):
                del node[at[-1]]
            try:
                check(tmp_path, glb_bytes(doc, binary))
                outcomes["passed"] += 1
            except ValueError:
                outcomes["refused"] += 1
    assert outcomes["refused"] > 500 and outcomes["passed"] > 100, outcomes
