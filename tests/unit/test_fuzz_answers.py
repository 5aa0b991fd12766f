"""Unexpected JSON types from a provider (issue 13, item 9): each JSON object of each answer replaced by a
string, a list, a number or null ends the job with a message that names the provider and has no raw
Python text in it, and the worker keeps serving. One worker per provider runs every case."""
import pytest

from servers.empiriolabs_server import EmpirioLabsServer
from servers.runware_server import RunwareServer
from servers.scenario_server import ScenarioServer
from workerkit import ENDS, FAST, close, read_until, save_rgba, send, start_worker

SECRETS = {"runware": {"api_key": "rw-key-0123456789"}, "empiriolabs": {"api_key": "el-key-0123456789"},
           "scenario": {"api_key": "sc-key-0123456789", "api_secret": "sc-secret-0123456789"}}
SERVERS = {"runware": lambda: RunwareServer(api_key="rw-key-0123456789"),
           "empiriolabs": lambda: EmpirioLabsServer(api_key="el-key-0123456789"),
           "scenario": lambda: ScenarioServer(key="sc-key-0123456789", secret="sc-secret-0123456789")}
LABELS = {"runware": "Runware", "empiriolabs": "EmpirioLabs", "scenario": "Scenario"}
# (route, path to a JSON object in that route's answers); () is the whole answer.
TARGETS = {
    "runware": [("submit", ()), ("submit", ("data", 0)), ("poll", ()), ("poll", ("data", 0)),
                ("poll", ("data", 0, "outputs")), ("poll", ("data", 0, "outputs", "files", 0))],
    "empiriolabs": [("submit", ()), ("poll", ()), ("poll", ("result",))],
    "scenario": [("upload", ()), ("upload", ("asset",)), ("submit", ()), ("submit", ("job",)), ("poll", ()),
                 ("poll", ("job",)), ("poll", ("job", "metadata")), ("asset", ()), ("asset", ("asset",))],
}
VALUES = ("a string", ["a", 1], 7, None)
RAW = ("Error:", "object has no attribute", "Traceback", "not subscriptable", "not iterable")


def replacer(route: str, path: tuple, value):
    """An answer_hook replacing the object at `path` of `route`'s answers by `value`."""
    def hook(name, body):
        if name != route:
            return body
        if not path:
            return value if isinstance(body, dict) else body
        node = body
        for key in path[:-1]:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                return body
        last = path[-1]
        inside = isinstance(node, dict) and last in node or isinstance(node, list) and last < len(node)
        if inside and isinstance(node[last], dict):
            node[last] = value
        return body
    return hook


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_unexpected_json_types_end_in_a_named_error(tmp_path, backend):
    proc = start_worker()
    rgba = save_rgba(tmp_path)
    outcomes = []
    with SERVERS[backend]() as server:
        def run(n, **options):
            send(proc, "job", id=f"f{n}", backend=backend, input={"rgba": rgba, "name": "x"}, settings={"seed": 1},
                 output_dir=str(tmp_path / f"out{n}"), secrets=SECRETS[backend],
                 options=dict(FAST, base_url=server.url, **dict({"poll_timeout": 0.8}, **options)))
            return read_until(proc, ENDS)[-1]

        cases = [(route, path, value) for route, path in TARGETS[backend] for value in VALUES]
        for n, (route, path, value) in enumerate(cases):
            server.answer_hook = replacer(route, path, value)
            end = run(n)
            outcomes.append((route, path, value, end))
        server.answer_hook = None
        last = run(len(cases), poll_timeout=30.0)
        assert last["type"] == "result", f"the worker keeps serving: {last}"
    close(proc)
    for route, path, value, end in outcomes:
        case = f"{route} {path} -> {value!r}: {end}"
        assert end["type"] in ("result", "error"), case
        if end["type"] == "error":
            assert LABELS[backend] in end["message"] and end["code"] != "internal", case
            assert not any(text in end["message"] for text in RAW), case
    assert sum(end["type"] == "error" for *_, end in outcomes) >= len(outcomes) // 2
