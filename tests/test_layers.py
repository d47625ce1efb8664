"""The code map as a test: the package's imports form layers, with no cycle and nothing importing upward.

Every ``from . import`` and ``from .. import`` in ``jaxstyle/`` is read with :mod:`ast`, function-local
ones included (they are dependencies too, only deferred). The layers, lowest first, are the README's
code map; a module may import its own layer or those below it, never one above.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxstyle"

LAYERS = (
    ("errors", "interrupt"),       # what every layer may raise or check
    ("io", "examples"),            # files in and out: images, frames, flow, sheets, colour
    ("model",),                    # VGG-19 and its weights
    ("losses", "optim"),           # the loss terms; the optimisers (independent of each other)
    ("config", "compile_cache"),   # StyleConfig, the single source of every option's default
    ("evaluate",),                 # the objective, whole, in tiles or in bands, and the plan
    ("run", "net"),                # problems, the run loop, batches, sweeps, video, the paper; the fast network
    ("notebook", "__init__"),      # the front ends that Python users import
    ("cli", "__main__"),           # the command line
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The layer unit of a module: its subpackage, or the module itself at the top level."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def _imports(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: {imported jaxstyle modules}}`` over every file of the package."""
    modules = {_module_name(p, package_dir): p for p in package_dir.rglob("*.py")}
    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    child = f"{target}.{alias.name}"
                    found.add(child if child in modules else target)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxstyle"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("jaxstyle"))
        graph[module] = {m for m in found if m in modules and m != module}
    return graph


def test_every_module_is_in_a_layer():
    units = {_unit(m) for m in _imports()}
    assert units <= set(RANK), f"modules outside the code map: {sorted(units - set(RANK))}; add them to LAYERS"


def _upward(graph) -> list[str]:
    # The package's face (``jaxstyle/__init__.py``) imports nothing when it loads; what reads it (its
    # ``__version__``) is not above it, so as a target it counts at the bottom.
    rank = lambda target: 0 if target == "jaxstyle" else RANK[_unit(target)]
    return sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if rank(t) > RANK[_unit(m)])


def _cycles(graph) -> list[str]:
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_runs_up_a_layer():
    upward = _upward(_imports())
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_cycle():
    cycles = _cycles(_imports())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    """The checks can fail: a planted upward import and a planted cycle (through a function-local
    import) are both found."""
    package = tmp_path / "jaxstyle"
    for folder in ("io", "run"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "io" / "image.py").write_text("from ..run import transfer\n")
    (package / "run" / "transfer.py").write_text("def f():\n    from ..io import image\n")
    graph = _imports(package)
    assert graph["jaxstyle.io.image"] == {"jaxstyle.run.transfer"}
    assert graph["jaxstyle.run.transfer"] == {"jaxstyle.io.image"}
    assert _upward(graph) == ["jaxstyle.io.image -> jaxstyle.run.transfer"]
    assert _cycles(graph) == ["jaxstyle.io.image -> jaxstyle.run.transfer -> jaxstyle.io.image"]


def test_top_level_stays_small_and_modules_stay_short():
    """At most ten modules at the top of the package; a module over 400 lines says why at its top."""
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 10, top
    long = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if len(p.read_text().splitlines()) > 400 and "Over 400 lines:" not in p.read_text()[:3000]]
    assert not long, f"modules over 400 lines without a reason in their docstring ('Over 400 lines: ...'): {long}"
