"""The package layout as executable rules: which part may import which, read from the source with ``ast``.

Imports point down (architecture.md): cli -> experiments -> (analysis, training, representations)
-> (measures, models, data) -> (errors, _io, _options, settings). A "part" is the first name
below ``layer_sim`` (a subpackage or a top-level module). Imports inside functions and under
``TYPE_CHECKING`` count: a dependency is a dependency wherever the import statement sits.
"""

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "layer_sim"

# ------------------------------------------------------------------------------------ the rules
#: part -> the only other parts it may import.
ONLY = {
    "errors": set(),
    "measures": {"errors", "_options"},  # pure maths: no I/O, no models, no data
}
#: part -> parts it must never import.
NEVER = {
    "training": {"measures", "representations", "analysis", "dynamics"},  # CKA as a loss reaches fit through a task/callback
    "representations": {"measures", "analysis"},  # hooks -> tensors; knows no measure
    "analysis": {"report", "training"},
    "experiments": {"report"},  # experiments return results; views are the CLI's business
    "dynamics": {"training", "analysis", "experiments"},  # recorders are callbacks: fit knows them by their methods
}
#: part -> the only other parts that may import it.
IMPORTED_ONLY_BY = {
    "cli": {"__main__"},  # nothing imports the CLI
    "report": {"cli"},  # views are imported by the CLI alone; results never depend on them
}
#: Known violations, each with the change that removes it. The test fails when one has gone, so
#: the list cannot outlive its reason.
KNOWN: dict[tuple[str, str], str] = {}
#: Result objects hold data only: no method that draws or writes files.
RESULTS = {
    "layer_sim.analysis.comparison": ["SimilarityMatrix"],
    "layer_sim.analysis.identification": ["LayerIdentification"],
    "layer_sim.experiments.sanity": ["SanityCheckResult", "RowResult", "ArchitectureComparison"],
    "layer_sim.experiments.learning_dynamics": ["PairRunResult", "PairRecord", "StudyResult"],
    "layer_sim.experiments.correlations": ["CorrelationResult"],
    "layer_sim.analysis.correlation": ["Correlation"],
    "layer_sim.experiments.seeds": ["SeedsResult"],
    "layer_sim.experiments.pruning": ["PruningStudyResult", "NetworkRow", "ParameterRow", "SimilarityRow"],
    "layer_sim.experiments.gradient_study": ["GradientStudyResult", "IdentificationRow"],
    "layer_sim.experiments.table2_study": ["Table2StudyResult", "Cell", "FamilyResult", "Family"],
}
VIEW_METHODS = {"plot", "save", "load", "write", "savefig", "show", "to_csv", "to_json", "to_markdown"}


# ------------------------------------------------------------------------------------ the reading
def _part(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _submodules(package_dir: Path) -> set[str]:
    return {p.stem for p in package_dir.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in package_dir.iterdir() if (p / "__init__.py").is_file()
    }


def _imports(path: Path):
    """``(target module, line)`` for every import of layer_sim in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # a/b.py and a/__init__.py both sit in package layer_sim.a: relative imports start there.
    package = ["layer_sim", *path.relative_to(SRC).parts[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base == "layer_sim":  # from layer_sim import x: a submodule, or a name of the root
                for alias in node.names:
                    sub = alias.name in _submodules(SRC)
                    yield ("layer_sim." + alias.name if sub else "layer_sim"), node.lineno
            else:
                yield base, node.lineno


def _edges():
    """``(file, importer part, imported part or "<root>", line)`` for every import between parts."""
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "__init__.py":
            continue
        me = _part(path)
        for target, line in _imports(path):
            names = target.split(".")
            if names[0] != "layer_sim":
                continue
            other = names[1] if len(names) > 1 else "<root>"
            if other != me:
                yield path.relative_to(SRC).as_posix(), me, other, line


def _violations():
    found = {}
    for file, me, other, line in _edges():
        if other == "<root>":
            found.setdefault((file, other), f"{file}:{line} imports the package root layer_sim")
        if me in ONLY and other not in ONLY[me] and other != "<root>":
            found.setdefault((file, other), f"{file}:{line}: {me} may import only {sorted(ONLY[me])}, imports {other}")
        if other in NEVER.get(me, ()):
            found.setdefault((file, other), f"{file}:{line}: {me} must never import {other}")
        if other in IMPORTED_ONLY_BY and me not in IMPORTED_ONLY_BY[other]:
            found.setdefault((file, other), f"{file}:{line}: only {sorted(IMPORTED_ONLY_BY[other])} may import {other}")
    return found


# ------------------------------------------------------------------------------------ the tests
def test_import_rules_hold():
    broken = {k: v for k, v in _violations().items() if k not in KNOWN}
    assert not broken, "\n".join(broken.values())


def test_every_known_violation_still_exists():
    gone = set(KNOWN) - set(_violations())
    assert not gone, f"fixed, so remove from KNOWN: {sorted(gone)}"


def test_the_rules_can_fail():
    # The reader sees each kind of import: absolute, from-root, relative, inside a function.
    edges = {(f, other) for f, _, other, _ in _edges()}
    assert ("cli/train.py", "_shared") not in edges  # same part: not an edge
    assert ("cli/train.py", "cli") not in edges
    assert ("report/sanity.py", "experiments") in edges  # absolute
    assert ("experiments/sanity.py", "settings") in edges  # `from layer_sim import settings`
    assert ("cli/sanity_check.py", "report") in edges  # inside the command function
    assert ("__main__.py", "cli") in edges


def test_nothing_shadows_a_module_with_a_function_of_the_same_name():
    # `layer_sim.extract` was both a module and the function that replaced it on import.
    problems = []
    for init in SRC.rglob("__init__.py"):
        subs = _submodules(init.parent)
        tree = ast.parse(init.read_text(encoding="utf-8"))
        for node in tree.body:
            bound = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound = [node.name]
            elif isinstance(node, ast.ImportFrom):
                pkg = ".".join(["layer_sim", *init.parent.relative_to(SRC).parts])
                # `from <this package> import <submodule>` binds the module itself: fine.
                bound = [a.asname or a.name for a in node.names if node.module != pkg]
            problems += [f"{init.relative_to(SRC)} binds {b!r}, also a submodule" for b in bound if b in subs]
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        problems += [f"{path.relative_to(SRC)} defines {n.name}()" for n in tree.body
                     if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == path.stem]  # fmt: skip
    assert not problems, problems


@pytest.mark.parametrize("module, names", sorted(RESULTS.items()))
def test_results_hold_data_only(module, names):
    import importlib

    mod = importlib.import_module(module)
    for name in names:
        methods = {m for m in vars(getattr(mod, name)) if not m.startswith("_")}
        assert not methods & VIEW_METHODS, f"{name} has view methods {sorted(methods & VIEW_METHODS)}"


def test_doctests_run_in_the_normal_test_command():
    import re

    text = (SRC.parents[1] / "pyproject.toml").read_text().split("[tool.pytest.ini_options]", 1)[1]
    assert re.search(r'^testpaths = \[.*"src/layer_sim".*\]$', text, flags=re.M)
    assert re.search(r'^addopts = ".*--doctest-modules.*"$', text, flags=re.M)


def test_importing_the_root_loads_no_torch():
    import subprocess

    code = "import sys, layer_sim, layer_sim.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
