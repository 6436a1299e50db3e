"""The shape of functions/, computed from the source: dependencies point one way, and only adapters touch AWS."""

import ast
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
# Where AWS is touched: the clients, the storage adapters and the execution starter.
ADAPTERS = {"aws", "storage.errors", "storage.s3", "storage.dynamo", "data.dynamo", "features.dynamo",
            "registry.dynamo", "registry.eventbridge", "pipeline.executions", "rollout.alarms", "monitoring.aws",
            "feedback.dynamo"}


def modules() -> dict[str, ast.Module]:
    return {".".join(path.relative_to(FUNCTIONS).with_suffix("").parts): ast.parse(path.read_text())
            for path in FUNCTIONS.rglob("*.py")}


def imported(tree: ast.Module) -> set[str]:
    """Every module an import statement names (TYPE_CHECKING imports included: a cycle is a cycle)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def package(module: str) -> str:
    """functions.<package>.x -> <package>; a top-level module is its own node."""
    return module.removesuffix(".__init__").split(".")[0]


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in modules().items():
        source = package(name)
        graph.setdefault(source, set())
        for target in imported(tree):
            if target.startswith("functions.") and package(target.removeprefix("functions.")) != source:
                graph[source].add(package(target.removeprefix("functions.")))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles through each node (depth first), each as the path that closes it."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_package_of_functions_imports_one_that_imports_it_back():
    graph = package_graph()
    assert {"data", "features", "training", "registry", "serving", "monitoring", "shared", "pipeline"} <= set(graph)
    assert cycles(graph) == []


def test_only_adapters_touch_aws():
    touching = {name for name, tree in modules().items()
                if any(m.split(".")[0] in {"boto3", "botocore", "mypy_boto3_s3"} for m in imported(tree))}
    assert {"storage.s3", "registry.dynamo"} <= touching, "the check sees the adapters' imports"
    assert touching - ADAPTERS == set(), "domain modules and handlers use ports, never boto3"
