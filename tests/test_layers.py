"""The layout's rules, read from the source: imports only go down the layers, none go round in a cycle, and
nothing in simseg/ imports the stage scripts (it runs them by name, see simseg.experiments.stage_table)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "simseg"
# Bottom to top. A module may import its own layer and those below it.
LAYERS = (
    ("simseg.errors", "simseg.sizes", "simseg.files"),
    ("simseg.models",),
    ("simseg.config",),
    ("simseg.data",),
    ("simseg.training",),
    ("simseg.inference",),
    # experiments, bottom to top: what every workflow shares, the sweep, the report of a sweep, the workflows on top
    ("simseg.experiments.stage_table", "simseg.experiments.stage_entry", "simseg.experiments.run_folders"),
    ("simseg.experiments.sweep",),
    ("simseg.experiments.report",),
    ("simseg.experiments.chain", "simseg.experiments.demo", "simseg.experiments"),
    ("simseg.cli",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", [m for m in MODULES if m != "simseg"])
def test_imports_only_go_down(module):
    up = sorted(m for m in GRAPH[module] if layer_of(m) > layer_of(module))
    assert not up, f"{module} imports a higher layer: {up}"
    scripts = sorted(m for m in imports_of(MODULES[module]) if m == "stages" or m.startswith("stages."))
    assert not scripts, f"{module} imports the stage scripts {scripts}: run them through stage_table.run_stage"


def test_no_import_cycles():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_the_rules_see_a_violation(tmp_path):
    """The checks above are not vacuous: they find an upward import and a cycle when there is one."""
    assert layer_of("simseg.models.vit") < layer_of("simseg.training.engine")
    sweep_or_stages = GRAPH["simseg.experiments.stage_table"] | GRAPH["simseg.experiments.sweep.command"]
    assert "simseg.training.engine" in sweep_or_stages
    assert layer_of("simseg.experiments.sweep.plan") < layer_of("simseg.experiments.report.build")
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from simseg.experiments.sweep.command import sweep\n    import stages.segment\n")
    assert {"simseg.experiments.sweep.command", "stages.segment"} <= imports_of(bad)


def test_no_library_module_reads_as_a_test():
    """pytest collects ``test_*.py`` wherever it is pointed; a library module named so would run as a test file."""
    assert not [str(path) for path in PACKAGE.rglob("test_*.py")]
