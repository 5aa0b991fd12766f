"""The offline preview mesh, PNG encoder and GLB writer (pure numpy)."""
import json
import struct
import zlib

import numpy as np
import pytest

from backend import glb, png, preview_mesh


def disc(size=128, alpha=True, background=(255, 255, 255)):
    yy, xx = np.mgrid[:size, :size]
    inside = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = background
    rgba[inside, 0], rgba[inside, 1], rgba[inside, 2] = 200, (xx[inside] * 2) % 256, 40
    rgba[..., 3] = inside * 255 if alpha else 255
    return rgba


def decode_png(data):
    """Test-side decoder for what encode_png writes (8-bit, filter Up)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,), tag = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(tag + body)
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + length
    w, h, depth, ctype = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {0: 1, 2: 3, 6: 4}[ctype]
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, w * channels + 1)
    assert (raw[:, 0] == 2).all()
    return np.cumsum(raw[:, 1:], axis=0, dtype=np.uint8).reshape(h, w, channels)


def read_glb(path):
    doc = glb.validate_glb(path)
    data = open(path, "rb").read()
    json_len = struct.unpack("<I", data[12:16])[0]
    binary = data[20 + json_len + 8:]

    def accessor(i):
        acc = doc["accessors"][i]
        view = doc["bufferViews"][acc["bufferView"]]
        dtype = np.float32 if acc["componentType"] == glb.FLOAT else np.uint32
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[acc["type"]]
        arr = np.frombuffer(binary, dtype, acc["count"] * width, view["byteOffset"])
        return arr.reshape(acc["count"], width) if width > 1 else arr
    prim = doc["meshes"][0]["primitives"][0]
    pos = accessor(prim["attributes"]["POSITION"])
    return doc, pos, accessor(prim["indices"]).reshape(-1, 3), accessor(prim["attributes"]["TEXCOORD_0"])


def edge_use_counts(tris):
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def gen(tmp_path, rgba=None, name="m.glb", **kw):
    args = dict(resolution=512, texture_size=1024, decimation_target=100000, remesh=True, seed=1)
    args.update(kw)
    path = str(tmp_path / name)
    info = preview_mesh.generate(disc() if rgba is None else rgba, out_path=path, **args)
    return info, path


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (6, 4, 4)])
def test_png_round_trip(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = decode_png(png.encode_png(pixels))
    assert np.array_equal(decoded.reshape(pixels.shape), pixels)


@pytest.mark.parametrize("alpha", [True, False])
def test_mesh_is_closed_and_glb_is_complete(tmp_path, alpha):
    info, path = gen(tmp_path, disc(alpha=alpha, background=(30, 90, 200)))
    doc, pos, tris, uvs = read_glb(path)
    assert (edge_use_counts(tris) == 2).all(), "every edge joins exactly two faces"
    assert len(tris) == info["faces"] and len(pos) == info["vertices"]
    extent = pos.max(axis=0) - pos.min(axis=0)
    assert extent.max() == pytest.approx(1.0, abs=1e-5) and np.allclose(pos.max(0) + pos.min(0), 0, atol=1e-5)
    assert 0 <= uvs.min() and uvs.max() <= 1
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert np.allclose(acc["min"], pos.min(axis=0)) and np.allclose(acc["max"], pos.max(axis=0))
    material = doc["materials"][0]["pbrMetallicRoughness"]
    assert material["baseColorTexture"]["index"] == 0 and material["metallicRoughnessTexture"]["index"] == 1
    assert [img["mimeType"] for img in doc["images"]] == ["image/png", "image/png"]
    assert doc["extras"]["seed"] == 1


def test_face_budget_is_respected(tmp_path):
    info, _ = gen(tmp_path, disc(512), resolution=1536, decimation_target=100000)
    assert 50000 < info["faces"] <= 100000


def test_resolution_adds_detail(tmp_path):
    low, _ = gen(tmp_path, disc(512), name="a.glb", resolution=512)
    high, _ = gen(tmp_path, disc(512), name="b.glb", resolution=1024, decimation_target=1000000)
    assert high["faces"] > 3 * low["faces"]


def test_seed_is_deterministic_and_matters(tmp_path):
    _, a = gen(tmp_path, name="a.glb", seed=5)
    _, b = gen(tmp_path, name="b.glb", seed=5)
    _, c = gen(tmp_path, name="c.glb", seed=6)
    assert open(a, "rb").read() == open(b, "rb").read()
    assert not np.array_equal(read_glb(a)[1], read_glb(c)[1])


def test_texture_size_and_alpha_kept(tmp_path):
    _, path = gen(tmp_path, texture_size=2048)
    doc = glb.validate_glb(path)
    data = open(path, "rb").read()
    binary = data[20 + struct.unpack("<I", data[12:16])[0] + 8:]
    view = doc["bufferViews"][doc["images"][0]["bufferView"]]
    base = decode_png(binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]])
    assert base.shape == (2048, 2048, 4)
    assert base[..., 3].min() == 0 and base[1024, 1024, 3] == 255, "alpha follows the foreground"
    assert abs(int(base[1024, 1024, 0]) - 200) < 8, "colour comes from the image"


def test_blank_image_has_no_foreground(tmp_path):
    blank = np.full((64, 64, 4), 255, np.uint8)
    assert preview_mesh.foreground_fraction(preview_mesh.foreground_mask(blank)) == 0
    with pytest.raises(ValueError, match="no foreground"):
        gen(tmp_path, blank)


def test_photo_without_plain_background_uses_the_frame(tmp_path):
    yy, xx = np.mgrid[:96, :128]
    photo = np.full((96, 128, 4), 255, np.uint8)
    photo[..., 0], photo[..., 1], photo[..., 2] = xx * 2, yy * 2, (xx * yy) % 256
    assert preview_mesh.has_content(photo)
    info, path = gen(tmp_path, photo)
    assert (edge_use_counts(read_glb(path)[2]) == 2).all() and info["faces"] > 1000


def test_background_colour_is_estimated_from_the_border():
    mask = preview_mesh.foreground_mask(disc(alpha=False, background=(240, 240, 235)))
    assert preview_mesh.foreground_fraction(mask) == pytest.approx(np.pi / 9, abs=0.02)


def test_progress_stages_in_order_and_cancel(tmp_path):
    seen = []
    gen(tmp_path, progress=lambda stage, step, total: seen.append(stage))
    assert list(dict.fromkeys(seen)) == ["mask", "shape", "texture", "export"]
    with pytest.raises(preview_mesh.Cancelled):
        gen(tmp_path, name="x.glb", cancelled=lambda: True)
    assert not (tmp_path / "x.glb").exists()


def test_validate_glb_names_truncated_files(tmp_path):
    _, path = gen(tmp_path)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.glb"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.glb is truncated"):
        glb.validate_glb(str(cut))
    html = tmp_path / "page.glb"
    html.write_bytes(b"<html>error</html>")
    with pytest.raises(ValueError, match="page.glb is not a GLB"):
        glb.validate_glb(str(html))
    assert json.loads(json.dumps(glb.validate_glb(path)))["asset"]["version"] == "2.0"
