"""Imports point down only (docs/design.md, "Layers"): cli → api → wings → explain → pipeline →
io, validate → engine → lang → errors. This test reads every module under grouper/ (with ast: module-
and function-level imports alike) and fails on

- an import cycle between modules (a function-level import is still a dependency);
- an import from a lower layer into a higher one;
- a wing importing another wing, unless the edge is listed in WING_EDGES with its reason;
- a top-level module or package that no layer names (add it to LAYERS below).
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

COMPILED = ("_kernel", "_dip_kernel", "_settle_kernel")   # ext/*.pyx: modules with no .py file

# Top to bottom. Same-layer imports are allowed (but no cycles), except between wings.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("__main__", "cli", "serve")),            # the faces a user runs: command line, HTTP server
    ("api", ("__init__", "api", "spark")),            # the Python API (grouper.*) and its Spark face
    ("wings", ("payment", "dip", "report", "screen", "versions", "importers")),
    ("explain", ("explain",)),
    ("pipeline", ("pipeline", "onecase", "fields", "grouped", "scheme", "synth")),
    ("io", ("io", "validate", "writers", "headers", "outputs", "console", "options", "config", "overlap")),
    ("engine", ("engine", "plancache", *COMPILED)),
    ("lang", ("lang", "package_data")),
    ("errors", ("errors", "reasons", "version", "tomlpos", "tomlcheck", "_lazy")),
]
WINGS = dict(LAYERS)["wings"]

# The only imports from one wing into another, each with why it is there.
WING_EDGES: dict[tuple[str, str], str] = {
    ("dip", "payment"): "DIP settles through the one settlement engine: DipScores is the engine's base-points "
                        "source (payment.settle.BaseSource), and settle_dip calls payment's api",
    ("report", "payment"): "the report reads the settlement folder that payment writes (settle_files.read_table, "
                           "the case types of payment.settle)",
    ("screen", "payment"): "screens read grouped years with payment's load_grouped, price the alternative group "
                           "by settling under a policy, and plant anomalies in payment's synthetic history",
    ("versions", "payment"): "a version switch's money effect is weights calibrated and settled by payment's "
                             "entry functions",
}


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """module → the package modules it imports (`from . import x` of a submodule counts as x)."""
    files = {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    known = set(files) | {f"{package.name}.{name}" for name in COMPILED}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        here = module.split(".") if is_package else module.split(".")[:-1]
        found = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target not in known and "." in target:   # `import grouper.x.y` of an attribute
                    target = target.rsplit(".", 1)[0]
                if target in known and target != module and target.split(".")[0] == package.name:
                    found.add(target)
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer_of() -> dict[str, int]:
    return {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_problems(package: Path) -> list[str]:
    """Every broken rule of the module doc, as a sentence."""
    graph = import_graph(package)
    layer = _layer_of()
    names = [name for name, _ in LAYERS]
    problems = [f"{_top(m)} ({m}) is in no layer: add it to LAYERS in tests/test_layers.py, in the layer of "
                f"docs/design.md it belongs to" for m in sorted(graph) if _top(m) not in layer]
    problems += [f"import cycle: {' ↔ '.join(c)}" for c in cycles(graph)]
    for module, targets in sorted(graph.items()):
        src = _top(module)
        for target in sorted(targets):
            dst = _top(target)
            if src == dst or src not in layer or dst not in layer:
                continue
            if layer[dst] < layer[src]:
                problems.append(f"{module} imports {target}: an upward import ({names[layer[src]]} layer → "
                                f"{names[layer[dst]]} layer)")
            elif src in WINGS and dst in WINGS and (src, dst) not in WING_EDGES:
                problems.append(f"{module} imports {target}: the {src} wing reaches into the {dst} wing (move the "
                                f"shared code down a layer, let a face choose, or list the edge in WING_EDGES "
                                f"with its reason)")
    return problems


def test_imports_point_down_without_cycles():
    problems = layer_problems(ROOT / "grouper")
    assert not problems, "\n".join(problems)


def test_every_listed_wing_edge_is_still_used():
    """A stale exception would let the next sideways import through unnoticed."""
    graph = import_graph(ROOT / "grouper")
    used = {(_top(m), _top(t)) for m, targets in graph.items() for t in targets}
    assert not set(WING_EDGES) - used


def test_the_checker_catches_cycles_upward_imports_sideways_wings_and_unlisted_modules(tmp_path):
    package = tmp_path / "grouper"
    for name, text in {
        "__init__.py": "",
        "errors.py": "from .pipeline import run\n",                     # upward: errors → pipeline
        "pipeline.py": "def run():\n    from . import errors\n",        # with the line above: a cycle
        "brand_new.py": "",                                              # in no layer
        "report/__init__.py": "",
        "report/html.py": "from ..dip.run import x\n",                  # report → dip: not listed
        "dip/__init__.py": "",
        "dip/run.py": "x = 1\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text, encoding="utf-8")
    problems = "\n".join(layer_problems(package))
    assert "import cycle: grouper.errors ↔ grouper.pipeline" in problems
    assert "grouper.errors imports grouper.pipeline: an upward import" in problems
    assert "brand_new (grouper.brand_new) is in no layer: add it to LAYERS in tests/test_layers.py" in problems
    assert "the report wing reaches into the dip wing" in problems
