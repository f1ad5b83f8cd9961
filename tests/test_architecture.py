"""The package's layout keeps its promises (docs/architecture.md): no import cycles, no private
names imported across modules, every module in the folder of the process it runs in, and the
light entry points stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sweep"
FOLDERS = {"spec", "inputs", "search", "driver", "worker", "tracking", "views"}
TOP_LEVEL = {"__init__", "cli", "errors", "protocol", "export"}  # export: the documented old path, kept for users' scripts


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    """Every import statement of a file, at any depth, except those under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for stmt in node.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in typing_only]


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (top-level or inside functions)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sweep"):
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t not in (name, "sweep")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_private_name_is_imported_from_another_module():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {alias.name} from {node.module}"
        for path in _modules().values()
        for node in _imports(path)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sweep")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert offenders == []


def test_every_module_lives_in_the_folder_of_its_process():
    misplaced = [name for name in _modules() if name.count(".") == 1 and name.split(".")[1] not in TOP_LEVEL | FOLDERS]
    assert misplaced == []
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()} == FOLDERS


@pytest.mark.parametrize(
    "module, heavy",
    [
        ("sweep", ("tensorflow", "ray", "mlflow", "pandas")),  # `import sweep` in a notebook
        ("sweep.cli", ("tensorflow", "ray", "mlflow", "pandas")),  # `sweep --help`
        ("sweep.tracking.writer", ("tensorflow", "ray", "pandas")),  # the writer child starts fast
        ("sweep.tracking.export", ("tensorflow", "ray", "pandas")),  # `sweep export`, sweep.load_best
        ("sweep.export", ("tensorflow", "ray", "pandas")),  # the old documented path still imports, and stays light
        ("sweep.protocol", ("tensorflow", "ray", "mlflow", "pandas", "pydantic")),  # shared by every process
    ],
)
def test_light_entry_points_stay_light(module, heavy):
    code = f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing {module} loads {loaded}"
