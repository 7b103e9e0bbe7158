"""The house rules of ``docs/architecture.md``, kept by a test over the import graph.

1. Layers: a module imports only modules of its own layer or a lower one (imports under
   ``if TYPE_CHECKING:`` are annotations, not dependencies, and are not counted).
2. Nothing in ``t2v_automl/`` imports or executes ``benchmarks/``.
3. Benchmark scripts import the package's public names and the shared benchmark helpers
   (``benchmarks/_*.py``) only, never each other.
4. A leading-underscore name (module or attribute) is private to the package that holds it:
   only modules inside that package may import it.

Each rule is checked on the real tree and shown to fail on a tree with a wrong import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layer of each top-level module or subpackage of ``t2v_automl`` (lower = more basic).
LAYERS: dict[str, int] = {
    "exceptions": 0, "_files": 0, "_logging": 0, "_parallel": 0, "_validation": 0, "_weights": 0,
    "embedding": 0,
    "tasks": 1, "images": 1, "distances": 1, "metrics": 1, "probes": 1,
    "transfer_scores": 1, "models": 1,
    "datasets": 2, "datasets_debian": 2, "fisher": 2, "extractors": 2,
    "suites": 3, "transferability": 3, "knowledge": 3, "evaluation": 3, "experts": 3,
    "estimators": 4,
    "building": 5, "plotting": 5, "folders": 5,
    "integration": 6,
    "cli": 7, "__main__": 7,
}


@dataclass(frozen=True)
class Import:
    """One import statement: ``importer`` imports ``module`` (and ``names`` from it)."""

    importer: str
    module: str
    names: tuple[str, ...]
    line: int


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every runtime import of a file (module level and inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_lines(tree)
    me = module_name(path, root)
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [Import(me, a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(Import(me, node.module, tuple(a.name for a in node.names), node.lineno))
    return out


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def private_violations(imp: Import, importer_package: str) -> list[str]:
    """Leading-underscore segments of ``imp`` whose owning package is not the importer's own
    (or an ancestor of it)."""
    parts = imp.module.split(".")
    bad = []
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(parts[:i])
            if not (importer_package == owner or importer_package.startswith(owner + ".")):
                bad.append(f"{imp.module}")
    owner = imp.module
    for name in imp.names:
        if name.startswith("_") and not name.startswith("__"):
            if not (importer_package == owner or importer_package.startswith(owner + ".")):
                bad.append(f"{imp.module}.{name}")
    return bad


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "t2v_automl":
        return None
    if len(parts) == 1:
        return -1  # the package's own __init__ (lazy re-exports only)
    return LAYERS.get(parts[1])


def check_package(pkg_root: Path, src_root: Path) -> list[str]:
    """Rule 1, 2 and 4 over the package at ``pkg_root`` (``src_root`` holds it)."""
    problems = []
    for path in sorted(pkg_root.rglob("*.py")):
        me = module_name(path, src_root)
        mine = layer_of(me)
        if mine is None:
            problems.append(f"{me}: module not in LAYERS (add it to the architecture)")
            continue
        package = _package_of(me, path.name == "__init__.py")
        source = path.read_text()
        for needle in ("spec_from_file_location", "runpy"):
            if needle in source:
                problems.append(f"{me}: executes files ({needle}); the package never runs "
                                f"benchmarks/ or other scripts")
        for imp in imports_of(path, src_root):
            top = imp.module.split(".")[0]
            if top == "benchmarks" or imp.module in {"_common", "selection", "warm_start"}:
                problems.append(f"{me}:{imp.line} imports benchmarks ({imp.module})")
            theirs = layer_of(imp.module)
            if theirs is not None and mine >= 0 and theirs > mine:
                problems.append(f"{me}:{imp.line} (layer {mine}) imports {imp.module} "
                                f"(layer {theirs}): a lower layer never imports a higher one")
            for bad in private_violations(imp, package):
                problems.append(f"{me}:{imp.line} imports private {bad}")
    return problems


def check_benchmarks(bench_root: Path) -> list[str]:
    """Rule 3 and 4 over the benchmark scripts of ``bench_root``."""
    scripts = {p.stem for p in bench_root.glob("*.py") if not p.stem.startswith("_")}
    problems = []
    for path in sorted(bench_root.glob("*.py")):
        for imp in imports_of(path, bench_root):
            first = imp.module.split(".")[0]
            if first in scripts or first == "benchmarks":
                problems.append(f"benchmarks/{path.name}:{imp.line} imports another script "
                                f"({imp.module}); share code through benchmarks/_*.py")
            if first == "t2v_automl":
                for bad in private_violations(imp, "benchmarks"):
                    problems.append(f"benchmarks/{path.name}:{imp.line} imports private {bad}")
    return problems


def test_the_package_keeps_its_layers_and_privacy():
    assert check_package(ROOT / "t2v_automl", ROOT) == []


def test_every_package_module_has_a_layer():
    tops = {p.relative_to(ROOT / "t2v_automl").parts[0].removesuffix(".py")
            for p in (ROOT / "t2v_automl").glob("*") if p.suffix == ".py" or p.is_dir()}
    tops -= {"__init__", "__pycache__", "data", "py"}
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))


def test_benchmarks_import_public_names_and_shared_helpers_only():
    assert check_benchmarks(ROOT / "benchmarks") == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


@pytest.mark.parametrize("files,expected", [
    ({"t2v_automl/__init__.py": "", "t2v_automl/knowledge/__init__.py": "",
      "t2v_automl/knowledge/_table.py": "def f():\n    from t2v_automl.estimators import X\n"},
     "a lower layer never imports a higher one"),
    ({"t2v_automl/__init__.py": "", "t2v_automl/cli/__init__.py": "",
      "t2v_automl/cli/select.py": "from t2v_automl.estimators._hybrid import explain\n"},
     "imports private t2v_automl.estimators._hybrid"),
    ({"t2v_automl/__init__.py": "", "t2v_automl/cli/__init__.py": "",
      "t2v_automl/cli/select.py": "from t2v_automl.knowledge import _source_of\n"},
     "imports private t2v_automl.knowledge._source_of"),
    ({"t2v_automl/__init__.py": "",
      "t2v_automl/evaluation.py": "import importlib.util\n"
                                  "importlib.util.spec_from_file_location('b', 'b.py')\n"},
     "executes files"),
    ({"t2v_automl/__init__.py": "", "t2v_automl/plotting.py": "import benchmarks.selection\n"},
     "imports benchmarks"),
])
def test_a_wrong_import_is_caught(tmp_path, files, expected):
    root = _tree(tmp_path, files)
    problems = check_package(root / "t2v_automl", root)
    assert any(expected in p for p in problems), problems


def test_a_typing_only_import_is_not_a_dependency(tmp_path):
    root = _tree(tmp_path, {
        "t2v_automl/__init__.py": "",
        "t2v_automl/knowledge.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from t2v_automl.estimators import X\n"})
    assert check_package(root / "t2v_automl", root) == []


def test_a_benchmark_importing_another_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "b/_common.py": "",
        "b/selection.py": "from _common import x\nfrom t2v_automl.estimators import Y\n",
        "b/head_fit.py": "from selection import BenchData\n",
        "b/latency.py": "from t2v_automl.estimators._selector import _neighbour_average\n"})
    problems = check_benchmarks(root / "b")
    assert any("head_fit.py:1 imports another script (selection)" in p for p in problems)
    assert any("latency.py:1 imports private" in p for p in problems)
    assert not any("selection.py" in p for p in problems)
