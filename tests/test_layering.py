"""The house's layering, checked from the source: the core imports no other package of the project (registry
strings only), no two top-level packages import each other (directly or in a cycle), and the entry points that
dispatch through the modality registry never branch on a modality themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("erasure", "attacks", "evals", "diffusion", "llm", "canvas_data")


def imported_packages(path: Path, package: str) -> set[str]:
    """Top-level project packages imported anywhere in ``path`` (module level, in functions, under if/try); a
    relative import counts as ``package``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES)
    return found


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> {imported package: [files importing it]} (imports of itself left out)."""
    graph: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for dep in imported_packages(path, pkg) - {pkg}:
                graph[pkg].setdefault(dep, []).append(str(path.relative_to(ROOT)))
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """A cycle of packages as a list (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, stack + [dep])
                if found:
                    return found
        state[node] = 2
        return None

    for start in graph:
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_core_imports_no_other_project_package():
    deps = package_graph()["erasure"]
    assert not deps, f"erasure/ imports {deps} (reach other packages through erasure.registry strings)"


def test_no_import_cycle_between_top_level_packages():
    graph = package_graph()
    cycle = find_cycle(graph)
    if cycle:
        files = {f"{a} -> {b}": graph[a][b] for a, b in zip(cycle, cycle[1:])}
        pytest.fail(f"import cycle {' -> '.join(cycle)}: {files}")


def test_the_checker_sees_in_function_imports_and_cycles(tmp_path):
    """The checks above can fail: an import inside a function counts, and a two-package cycle is found."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from evals.robustness import run_audit\n    import diffusion.adapter\n"
                 "    from . import x\n")
    assert imported_packages(f, "llm") == {"evals", "diffusion", "llm"}
    graph = {p: {} for p in PACKAGES}
    graph["evals"]["diffusion"] = ["evals/x.py"]
    assert find_cycle(graph) is None
    graph["diffusion"]["evals"] = ["diffusion/y.py"]
    assert find_cycle(graph) in (["evals", "diffusion", "evals"], ["diffusion", "evals", "diffusion"])


@pytest.mark.parametrize("path", ["erasure/cli.py", "erasure/api.py", "evals/__init__.py", "evals/robustness.py"])
def test_dispatching_entry_points_have_no_modality_branch(path):
    source = (ROOT / path).read_text()
    assert "is_llm_model" not in source
    assert "modality ==" not in source and "modality !=" not in source
    literals = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)}
    assert not {"llm", "diffusion"} & literals, f"{path} names a modality"
