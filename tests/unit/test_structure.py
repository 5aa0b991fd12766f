"""The code's shape, checked: no import circle between the project's modules (function-level imports
count too: one that dodges a circle is still a circle), and no module outside tests/ and bench/ over
350 lines."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP = ("tests", "bench", "scripts", "examples", "out", "dist", "test-output")
MAX_LINES = 350


def project_modules() -> dict[str, str]:
    """Dotted module name (the extension's root package is "") -> file."""
    found = {}
    for folder, dirs, files in os.walk(ROOT):
        rel = os.path.relpath(folder, ROOT)
        dirs[:] = [d for d in dirs if not d.startswith(".") and (rel != "." or d not in SKIP)]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix("__init__").rstrip(".")] = path
    return found


def imports(modules: dict[str, str]) -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in it, with the packages they run on the way."""
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = ".".join(p for p in (base, node.module) if p)
                targets.update(f"{target}.{a.name}".strip(".") if f"{target}.{a.name}".strip(".") in modules
                               else target for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "backend":
                targets.add(node.module)  # the worker's absolute imports
        graph[name] = set()
        for target in targets:
            parts = target.split(".") if target else [""]
            for k in range(len(parts)):
                step = ".".join(parts[: k + 1])
                for candidate in ({step, ""} if k == 0 else {step}):
                    if candidate in modules and candidate != name and not name.startswith(candidate + ".") \
                            and not (candidate == "" and name):
                        graph[name].add(candidate)
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert cycles(imports(project_modules())) == []


def test_the_check_sees_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_root_package_counts_as_a_module():
    """`from .. import x` in a subpackage runs the extension's __init__, which imports everything."""
    graph = imports(project_modules())
    assert "" in graph and graph[""], "the root __init__ imports the add-on"


def test_no_module_over_350_lines():
    long = {name: n for name, path in project_modules().items()
            if (n := sum(1 for _ in open(path, encoding="utf-8"))) > MAX_LINES}
    assert long == {}
