"""The API URL rule: every provider's root ends in /v1; a user's override may be written with or without
the /v1 and a trailing slash (EmpirioLabs' docs write https://api.empiriolabs.ai/v1, which once ended every
job in HTTP 404). One real job per provider and spelling, through the worker, against servers that answer
only under /v1."""
import base64

import pytest
import requests

from backend import registry
from backend.protocol import ErrorCode, JobError
from backend.providers import http
from servers.empiriolabs_server import EmpirioLabsServer
from servers.runware_server import RunwareServer
from servers.scenario_server import ScenarioServer
from workerkit import FAST, run_job, save_rgba

SPELLINGS = ("{root}", "{root}/", "{root}/v1", "{root}/v1/")
SERVERS = {"runware": lambda: RunwareServer(api_key="rw-key-0123456789"),
           "empiriolabs": lambda: EmpirioLabsServer(api_key="el-key-0123456789"),
           "scenario": lambda: ScenarioServer(key="sc-key-0123456789", secret="sc-secret-0123456789")}
SECRETS = {"runware": {"api_key": "rw-key-0123456789"}, "empiriolabs": {"api_key": "el-key-0123456789"},
           "scenario": {"api_key": "sc-key-0123456789", "api_secret": "sc-secret-0123456789"}}


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("backend", sorted(SERVERS))
def test_every_spelling_of_the_url_reaches_the_api(tmp_path, backend, spelling):
    with SERVERS[backend]() as server:
        assert server.url == server.root + "/v1", "the URL a user would type"
        url = spelling.format(root=server.root)
        messages, _ = run_job(dict(id="u1", backend=backend, input={"rgba": save_rgba(tmp_path), "name": "disc"},
                                   settings={"seed": 1}, output_dir=str(tmp_path / "out"),
                                   options=dict(FAST, base_url=url), secrets=SECRETS[backend]))
    result = messages[-1]
    assert result["type"] == "result", result
    assert len(result["files"]) == 1 and result["cost_unit"] == registry.get(backend).cost_unit
    task = next(m for m in messages if m["type"] == "remote_task")
    assert task["base_url"] == server.url


@pytest.mark.parametrize("url", ["https://h", "https://h/", "https://h/v1", "https://h/v1/", " https://h/v1 "])
def test_normalize_url_accepts_the_root_with_or_without_v1(url):
    assert http.normalize_url(url, "https://default/v1", "X") == "https://h/v1"


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:9", "[::1]:7"])
def test_plain_http_only_to_this_machine(host):
    for suffix in ("", "/", "/v1", "/v1/"):
        assert http.normalize_url(f"http://{host}{suffix}", "", "X") == f"http://{host}/v1"
    with pytest.raises(JobError) as info:
        http.normalize_url("http://example.com/v1", "", "Acme")
    assert info.value.code == ErrorCode.BAD_SETTINGS and str(info.value).startswith("Acme URL must be https://")


def test_defaults_end_in_v1_and_are_used_for_an_empty_url():
    for info in registry.BACKENDS:
        if info.needs_network:
            assert info.default_url.endswith("/v1")
            assert http.normalize_url("", info.default_url, "X") == info.default_url


@pytest.mark.parametrize("backend", sorted(SERVERS))
def test_servers_answer_only_under_v1(backend):
    """A doubled /v1 (the old bug) or a missing one is a 404, as on the real APIs."""
    secrets = SECRETS[backend]
    auth = ("Basic " + base64.b64encode(f"{secrets['api_key']}:{secrets['api_secret']}".encode()).decode()
            if backend == "scenario" else f"Bearer {secrets['api_key']}")
    with SERVERS[backend]() as server:
        for path in ("/v1/v1/jobs/x", "/jobs/x", "/v1/v1"):
            answer = requests.post(server.root + path, json=[], headers={"Authorization": auth}, timeout=5)
            assert answer.status_code == 404, path
