"""The command line's shape (issue 23), checked on the source with ast: no module of station/cli or station/bench
imports a private (``_name``) from another project module, no import cycle among station/cli's modules (nor a
benchmark that imports the command line), and every file of both packages under 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("station", "vision", "models", "hardware", "ui", "calibration")
CHECKED = ("station/cli", "station/bench")  # where private imports are refused (see private_imports)
MAX_LINES = 600


def module_name(repo: Path, path: Path) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(repo: Path) -> dict[str, Path]:
    return {module_name(repo, p): p for pkg in PACKAGES if (repo / pkg).is_dir() for p in (repo / pkg).rglob("*.py")}


def imported(tree: ast.AST, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(module, name) for every absolute import anywhere in the file, function-level ones included; ``from P
    import M`` where P.M is a module of the project counts as importing the module P.M (name None)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((sub, None) if sub in modules else (node.module, a.name))
    return found


def private_imports(repo: Path, where: tuple[str, ...] = PACKAGES) -> list[str]:
    """``from X import _y`` with X a project module, in the files under ``where``."""
    modules = project_modules(repo)
    found = []
    for name, path in sorted(modules.items()):
        rel = path.relative_to(repo).as_posix()
        if not rel.startswith(tuple(f"{w}/" for w in where)):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for mod, attr in imported(tree, modules):
            if attr is not None and attr.startswith("_") and mod in modules and mod != name:
                found.append(f"{rel} imports {attr} from {mod}")
    return found


def cli_import_cycles(repo: Path) -> list[list[str]]:
    """Cycles in the graph of station.cli's modules (the package and its submodules), every import counted."""
    modules = project_modules(repo)
    cli = {m for m in modules if m == "station.cli" or m.startswith("station.cli.")}
    graph = {m: set() for m in cli}
    for m in cli:
        tree = ast.parse(modules[m].read_text(encoding="utf-8"), filename=str(modules[m]))
        graph[m] = {mod for mod, _ in imported(tree, modules) if mod in cli and mod != m}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def bench_imports_cli(repo: Path) -> list[str]:
    modules = project_modules(repo)
    found = []
    for name, path in sorted(modules.items()):
        if name == "station.bench" or name.startswith("station.bench."):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            found += [f"{name} imports {mod}" for mod, _ in imported(tree, modules)
                      if mod == "station.cli" or mod.startswith("station.cli.")]
    return found


def long_files(repo: Path) -> list[str]:
    return [f"{p.relative_to(repo).as_posix()}: {n} lines" for d in CHECKED for p in sorted((repo / d).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]


def test_no_private_names_imported_in_the_cli_and_the_benchmarks():
    assert private_imports(REPO, CHECKED) == []


def test_no_import_cycle_in_the_cli():
    assert cli_import_cycles(REPO) == []
    assert bench_imports_cli(REPO) == []  # the benchmarks' work stands below the command line


def test_cli_and_bench_modules_are_under_600_lines():
    assert long_files(REPO) == []


def test_the_checks_catch_what_they_refuse(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    cli = tmp_path / "station" / "cli"
    bench = tmp_path / "station" / "bench"
    cli.mkdir()
    bench.mkdir()
    (tmp_path / "station" / "__init__.py").write_text("")
    (tmp_path / "station" / "records.py").write_text("def _open():\n    pass\n")
    (cli / "__init__.py").write_text("from station.cli import a\n")
    (cli / "a.py").write_text("from station.records import _open\n\ndef f():\n    from station.cli.b import g\n")
    (cli / "b.py").write_text("from station.cli import a\n\ndef g():\n    pass\n" + "#\n" * MAX_LINES)
    (bench / "__init__.py").write_text("")
    (bench / "x.py").write_text("from station.cli.common import fail\n")
    assert private_imports(tmp_path, CHECKED) == ["station/cli/a.py imports _open from station.records"]
    assert cli_import_cycles(tmp_path) == [["station.cli.a", "station.cli.b", "station.cli.a"]]
    assert bench_imports_cli(tmp_path) == ["station.bench.x imports station.cli.common"]
    assert long_files(tmp_path) == [f"station/cli/b.py: {MAX_LINES + 4} lines"]
