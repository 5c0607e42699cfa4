"""Dependencies point one way in the gateway: no module imports one that imports it back,
directly or through others. Every import statement counts, also those under
`TYPE_CHECKING` or inside a function: a cycle there is still two modules that each need
the other."""

import ast
from pathlib import Path

import services.api_gateway

PACKAGE = "services.api_gateway"
ROOT = Path(services.api_gateway.__file__).parent


def gateway_modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


def imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The gateway modules `module`'s import statements name (its parent packages aside)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # `from package import module` imports the module.
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module and name != PACKAGE:
            found.add(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return one cycle through each group of modules that import each other (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(_loop(graph, set(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _loop(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    # A shortest way from the group's first module back to itself, for the message.
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError("a strongly connected group always loops")


def import_graph() -> dict[str, set[str]]:
    modules = gateway_modules()
    return {module: imported(module, path, modules) for module, path in modules.items()}


def test_no_gateway_module_imports_one_that_imports_it():
    found = cycles(import_graph())
    assert not found, "import cycles in the gateway:\n" + "\n".join(
        " -> ".join(cycle) for cycle in found
    )


def test_the_cycle_check_sees_a_type_checking_import_and_a_long_loop():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    modules = gateway_modules()
    auth = f"{PACKAGE}.auth"
    assert f"{PACKAGE}.stamps" in imported(auth, modules[auth], modules)
    middleware = f"{PACKAGE}.middleware"
    # Imported under TYPE_CHECKING only, and still an edge.
    assert f"{PACKAGE}.runtime" in imported(middleware, modules[middleware], modules)
