"""Adding a provider is one module + one registry row + its test server: this test writes a tiny hosted
provider ("Echo Mesh") from here alone, registers it, and runs a paid job through the add-on's whole path
(request, spending, shared worker, the one HTTP client, polling, download, record, import)."""
import json
import re
import textwrap
import uuid

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, mod
from servers.job_api import JobApiServer

KEY = "echo-key-5f4e3d2c"

PROVIDER = '''
"""Echo Mesh: a made-up hosted image-to-3D API (POST /meshes, GET /meshes/{id}), written by a test."""
from .. import registry
from ..protocol import ErrorCode, JobError
from . import hosted, http
from .mapping import Knob, Mapping

INFO = registry.get("echomesh")
MAPPINGS = {"generate": Mapping("echomesh", "Echo Mesh", (
    Knob("seed", "seed", 0, 2**31 - 1),
    Knob("decimation_target", "faces", 100000, 400000),
))}


def error(status, body):
    message = body.get("message", "") if isinstance(body, dict) else ""
    return http.status_error(INFO.short_label, status, http.one_line(message))


def poll_one(client, mesh_id):
    status, body = client.once("GET", f"/meshes/{mesh_id}")
    if hosted.transient(status, body, error):
        return None
    if body.get("status") == "done":
        return hosted.Poll("done", 1.0, ("url", body["url"]))
    return hosted.Poll("running", body.get("progress"))


def run(job, ctx):
    key = job.secrets["api_key"]

    def go(job, ctx):
        client = http.Client(ctx, INFO.short_label, job.options, INFO.default_url,
                             {"Authorization": f"Bearer {key}"}, error)
        body = dict(MAPPINGS["generate"].request(job.settings), image=hosted.image_uri(job))
        answer = client.request("POST", "/meshes", body, stage="queued")
        mesh_id = str(answer["id"])
        ctx.remote_task(job.backend, mesh_id, base_url=client.url, seed=job.settings["seed"])
        states = hosted.poll_all(client, [mesh_id], lambda i: poll_one(client, i))
        path = hosted.save_result(ctx, job.options, states[mesh_id].value, 0, 1, INFO.short_label)
        return {"files": [path], "seeds": [job.settings["seed"]], "cost": float(answer["price"])}

    return hosted.run_scrubbed(go, job, ctx, key)
'''


class EchoServer(JobApiServer):
    """The made-up API: a mesh is done after polls_to_finish polls; every answer needs the key."""

    def __init__(self):
        self.jobs = {}
        super().__init__()

    def error(self, status, message):
        return status, {"message": message}

    def state(self, mesh_id, job):
        if job["polls"] < self.polls_to_finish:
            return {"status": "working", "progress": job["polls"] / self.polls_to_finish}
        return {"status": "done", "url": self.file_url(mesh_id)}

    def route(self, method, path, query, body, auth):
        if auth != f"Bearer {KEY}":
            return self.error(401, "bad key")
        if method == "POST" and path == "/meshes":
            if not isinstance(body, dict) or not re.match(r"data:image/png;base64,", body.get("image", "")):
                return self.error(400, "image must be a PNG data URI")
            mesh_id = uuid.uuid4().hex[:12]
            self.jobs[mesh_id] = {"body": body, "polls": 0}
            return 200, {"id": mesh_id, "price": 0.07}
        match = re.fullmatch(r"/meshes/(\w+)", path)
        if method == "GET" and match and match.group(1) in self.jobs:
            job = self.jobs[match.group(1)]
            job["polls"] += 1
            return 200, self.state(match.group(1), job)
        return self.error(404, f"no route {method} {path}")


@pytest.fixture()
def echo(scene, tmp_path, monkeypatch):
    registry = mod("backend.registry")
    module = tmp_path / "echo_provider.py"
    module.write_text(textwrap.dedent(PROVIDER))
    credential = registry.Credential("api_key", "API Key", "ECHOMESH_API_KEY", "Key of the Echo Mesh test API")
    registry.register(registry.BackendInfo(
        "echomesh", "Echo Mesh (test)", "A hosted provider registered by a test", str(module),
        worker=registry.SHARED, prices={512: 0.07, 1024: 0.07, 1536: 0.07}, model="echo-1",
        credentials=(credential,), default_url="https://echo.invalid/v1", url_env="TRELLIS_ECHOMESH_URL"))
    bpy.context.preferences.system.use_online_access = True
    with EchoServer() as server:
        server.polls_to_finish = 2
        monkeypatch.setenv("ECHOMESH_API_KEY", KEY)
        monkeypatch.setenv("TRELLIS_ECHOMESH_URL", server.root)  # the API root without its /v1
        yield server
    registry.unregister("echomesh")
    bpy.context.preferences.system.use_online_access = False


def test_a_provider_registered_from_outside_runs_a_paid_job(echo):
    spending = mod("trellis_addon.spending").session
    before = spending.total("USD")
    assert "echomesh" in [item[0] for item in mod("trellis_addon.props").backend_items()]
    assert bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="echomesh", seed=21, decimation_target=200000,
                                    force_new=True) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    record = json.loads(obj["trellis2"])
    assert obj.name == "mushroom" and obj.type == "MESH"
    assert record["backend"] == "echomesh" and record["seed"] == 21 and record["cost"] == 0.07
    assert spending.total("USD") == pytest.approx(before + 0.07)
    [submit] = [r for r in echo.requests if r["method"] == "POST"]
    assert submit["body"]["seed"] == 21 and submit["body"]["faces"] == 200000, "its mapping named the knobs"
    assert sum(r["method"] == "GET" and r["path"].startswith("/v1/meshes/") for r in echo.requests) >= 2
    assert echo.downloads == 1


def test_its_mapping_limits_and_greys_like_a_built_in_one(echo):
    registry = mod("backend.registry")
    ignored = registry.ignored("echomesh")
    assert "texture_size" in ignored and "decimation_target" not in ignored
    with pytest.raises(RuntimeError, match=r"Echo Mesh accepts Face Budget \(faces\) 100 000 to 400 000"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="echomesh", seed=1, decimation_target=900000)
    assert echo.requests == [], "refused before anything was sent"
