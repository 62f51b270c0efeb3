"""The house rules the layout promises, checked on the source: the pure layers import neither Ray
nor FastAPI, only the writer touches job rows, and no module of the core outgrows one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PURE = [ROOT / "scheduler" / "core", ROOT / "scheduler" / "policy"]
#: Store methods that write a job row: only ``core/writer.py`` may call them.
ROW_WRITES = {"transition", "update_job", "insert_jobs", "insert_job"}


def _modules(folders: list[Path]) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_pure_layers_import_neither_ray_nor_fastapi() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & {"ray", "fastapi", "starlette", "uvicorn"})
                 for p in _modules(PURE)}
    assert {p: names for p, names in offenders.items() if names} == {}


def _resolved_imports(path: Path) -> set[str]:
    """Every module ``path`` imports from, as an absolute dotted name."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            names.add(".".join([*base, *([node.module] if node.module else [])]))
    return names


def test_the_pure_layers_import_nothing_above_them() -> None:
    """scheduler.core and scheduler.policy never reach up into the shell (actor, runner, CLI, API)."""
    shell = ("scheduler.actor", "scheduler.runner", "scheduler.cli", "scheduler.client", "scheduler.http",
             "scheduler.channel", "scheduler.raycompat", "scheduler.train", "api")
    bad = [f"{p.relative_to(ROOT)} imports {name}" for p in _modules(PURE) for name in _resolved_imports(p)
           if name.startswith(shell)]
    assert bad == []
    # and the resolution itself works: the writer imports the store through a relative import
    assert "scheduler.store" in _resolved_imports(ROOT / "scheduler" / "core" / "writer.py")


def test_only_the_writer_writes_job_rows() -> None:
    writers = []
    for path in _modules([ROOT / "scheduler"]):
        if path == ROOT / "scheduler" / "core" / "writer.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ROW_WRITES:
                owner = node.func.value
                # ``<something>.store.<write>(...)`` or ``store.<write>(...)``
                named = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if named == "store":
                    writers.append(f"{path.relative_to(ROOT)}:{node.lineno} store.{node.func.attr}")
    assert writers == []


def test_the_check_sees_a_write_outside_the_writer(tmp_path: Path) -> None:
    """The single-writer check is not vacuous: a row write in another module is found."""
    source = "def f(ctx):\n    ctx.store.update_job('j', {})\n"
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in ROW_WRITES and getattr(n.func.value, "attr", "") == "store"]
    assert len(calls) == 1


def test_no_module_of_the_core_outgrows_one_sitting() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules([ROOT / "scheduler" / "core"])
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
