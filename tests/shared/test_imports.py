"""Dependencies inside `shared/` point one way: no module imports one that imports it."""

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Map every module of `package` under `root` to its file (`pkg/__init__.py` is `pkg`)."""
    modules = {}
    for file in sorted((root / package).rglob("*.py")):
        parts = file.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = file
    return modules


def imported_modules(name: str, file: Path, known: set[str]) -> Iterator[str]:
    """Yield every known module `name` imports, at the top, in a function or for typing only."""
    is_package = file.name == "__init__.py"
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module `pkg.mod`; `from mod import name`, `mod`.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # `import a.b.c` of a name that is not a module depends on its longest module prefix.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_cycles(root: Path, package: str) -> list[list[str]]:
    """Return each group of modules that import one another, directly or around a loop.

    The implicit import of a module's parent package (which `import pkg.mod` runs first)
    is not counted: a package re-exporting its modules is not a cycle of anyone's writing.
    """
    modules = module_names(root, package)
    graph = {
        name: sorted(set(imported_modules(name, file, set(modules))))
        for name, file in modules.items()
    }
    # Tarjan's strongly connected components; any with two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_no_module_in_shared_imports_one_that_imports_it():
    assert import_cycles(ROOT, "shared") == []


def test_a_cycle_through_a_lazy_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "stores").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stores" / "__init__.py").write_text("")
    (package / "factory.py").write_text(
        "def build():\n    from pkg.stores.vault import Store\n\n    return Store()\n"
    )
    (package / "stores" / "vault.py").write_text("from ..factory import build\n")
    assert import_cycles(tmp_path, "pkg") == [["pkg.factory", "pkg.stores.vault"]]


def test_the_env_provider_never_loads_the_vault_or_aws_clients():
    code = (
        "import sys\n"
        "from shared.secrets import SecretsManager, SecretsSettings\n"
        "SecretsManager(settings=SecretsSettings(secrets_provider='env'), environ={})\n"
        "print(sorted({'hvac', 'aioboto3', 'botocore'} & set(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
