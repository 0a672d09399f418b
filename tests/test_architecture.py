"""Architecture rules of the source tree, checked statically (``ast``; nothing is imported).

* no import cycles among ``clinloop`` modules (every import counts, also those inside functions);
* only ``clinloop.cli`` parses command lines: no other module imports ``argparse`` or ``clinloop.cli``;
* no Python file under ``src/clinloop/assets`` (model folders hold data, not code);
* no file in ``src/`` over 500 lines;
* no absolute path of a machine in any tracked file;
* layering: a module only imports modules of its own layer or of lower ones (``LAYERS``).

Every rule holds on main (the violations found when this test was written were fixed by
the library-first restructuring, issue 12); there is no list of tolerated exceptions.
"""
from __future__ import annotations

import ast
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "clinloop"

# Layers, lowest first. A module of layer i may import layers <= i. Keys are the first name
# below ``clinloop`` (a subpackage or a top-level module); "" is ``clinloop/__init__.py``.
LAYERS: dict[str, int] = {
    "atomic": 0, "errors": 0, "paths": 0, "metrics": 0, "config": 0, "config_io": 0, "config_options": 0,
    "data": 1,
    "interaction": 2,
    "models": 3, "visualize": 3,
    "training": 4,
    "evaluation": 5, "inference": 5,
    "": 6, "api": 6,
    "server": 7,
    "cli": 8,
}

MAX_LINES = 500


# --- the import graph ------------------------------------------------------------------

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of the package."""
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _in_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _import_nodes(tree: ast.AST):
    """Every import statement, including those inside functions; not those under
    ``if TYPE_CHECKING:`` (they never run)."""
    skip = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and _in_type_checking(n):
            skip.update(id(m) for b in n.body for m in ast.walk(b))
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip:
            yield n


def imported_names(name: str) -> set[str]:
    """Absolute names a module imports: ``import a.b`` -> a.b; ``from a import b`` -> a.b
    when that is a module, else a; relative imports resolved against the module's package."""
    path = modules()[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for n in _import_nodes(tree):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
            continue
        if n.level:
            base = package.split(".")
            base = base[: len(base) - (n.level - 1)]
            mod = ".".join(base + ([n.module] if n.module else []))
        else:
            mod = n.module or ""
        subs = {f"{mod}.{a.name}" for a in n.names if f"{mod}.{a.name}" in modules()}
        out |= subs
        if len(subs) < len(n.names):
            out.add(mod)
    return out


@lru_cache(maxsize=None)
def graph() -> dict[str, frozenset[str]]:
    """Module -> the clinloop modules it imports (itself excluded)."""
    mods = modules()
    return {m: frozenset(t for t in imported_names(m) if t in mods and t != m) for m in mods}


def strongly_connected(g: dict[str, frozenset[str]]) -> list[frozenset[str]]:
    """Components with more than one module (each is an import cycle); iterative Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[frozenset[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(g[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(frozenset(comp))
    return comps


def layer_key(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# --- the helpers themselves ------------------------------------------------------------

def test_strongly_connected_finds_hand_made_cycles():
    g = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a", "e"}),
         "e": frozenset({"d"}), "f": frozenset()}
    assert sorted(sorted(c) for c in strongly_connected(g)) == [["a", "b", "c"], ["d", "e"]]
    assert strongly_connected({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_imported_names_resolves_relative_and_from_imports():
    # clinloop/__init__.py imports both lazily, inside a function
    assert {"clinloop.models.registry", "clinloop.interaction.session"} <= graph()["clinloop"]
    # `from clinloop.data import fusion` names the module clinloop.data.fusion, not just the package
    assert "clinloop.data.fusion" in imported_names("clinloop.evaluation.triage")
    assert len(modules()) > 50


# --- the rules -------------------------------------------------------------------------

def test_no_import_cycles():
    cycles = [sorted(c) for c in strongly_connected(graph())]
    assert not cycles, f"import cycles: {cycles}"


def _cli_imports(module: str) -> list[str]:
    return sorted(t for t in imported_names(module)
                  if t == "argparse" or t.startswith("argparse.") or t == "clinloop.cli" or t.startswith("clinloop.cli."))


@pytest.mark.parametrize("module", [
    m for m in sorted(modules()) if not (m == "clinloop.cli" or m.startswith("clinloop.cli."))
])
def test_only_cli_parses_command_lines(module):
    assert not _cli_imports(module), f"{module} imports {_cli_imports(module)}; only clinloop.cli may"


def test_no_code_under_assets():
    assets = PKG / "assets"
    code = sorted(str(p.relative_to(ROOT)) for p in assets.rglob("*") if p.suffix in (".py", ".pyc", ".sh", ".ipynb"))
    assert not code, f"code under src/clinloop/assets (move it to benchmarks/ or the library): {code}"


@pytest.mark.parametrize("path", [
    rel for rel in sorted(str(p.relative_to(SRC)) for p in PKG.rglob("*.py"))
])
def test_source_files_are_short(path):
    n = len((SRC / path).read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"src/{path} has {n} lines (limit {MAX_LINES})"


def test_every_package_has_a_layer():
    missing = sorted({layer_key(m) for m in modules()} - set(LAYERS))
    assert not missing, f"add these to LAYERS in tests/test_architecture.py (and the contributors' page): {missing}"


def layer_violations() -> list[tuple[str, str]]:
    out = []
    for m, targets in graph().items():
        lm = LAYERS.get(layer_key(m))
        for t in targets:
            lt = LAYERS.get(layer_key(t))
            if lm is not None and lt is not None and lt > lm:
                out.append((m, t))
    return sorted(out)


def test_lower_layers_never_import_higher_ones():
    bad = layer_violations()
    assert not bad, "imports from a higher layer (importer -> imported): " + ", ".join(f"{a} -> {b}" for a, b in bad)


def test_layer_check_catches_an_upward_import():
    """The rule is live: a data module importing the server would be reported."""
    assert LAYERS["data"] < LAYERS["server"] and LAYERS["models"] < LAYERS["training"] < LAYERS["cli"]
    g = dict(graph())
    g["clinloop.data"] = g["clinloop.data"] | {"clinloop.server"}
    viol = [(m, t) for m, ts in g.items() for t in ts
            if LAYERS.get(layer_key(t), -1) > LAYERS.get(layer_key(m), 99)]
    assert ("clinloop.data", "clinloop.server") in viol


# --- absolute paths --------------------------------------------------------------------

# spelled in pieces so that this file does not match itself
ABSOLUTE_PREFIXES = tuple("/" + d + "/" for d in ("work", "root", "home"))


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        files = [ROOT / f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", "site", "build", "dist"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return [f for f in files if f.is_file()]


def test_no_absolute_machine_paths_in_tracked_files():
    bad = []
    for f in tracked_files():
        if f.stat().st_size > 5_000_000:
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (weights, images)
        for i, line in enumerate(text.splitlines(), 1):
            if any(p in line for p in ABSOLUTE_PREFIXES):
                bad.append(f"{f.relative_to(ROOT)}:{i}")
    assert not bad, f"absolute machine paths (use paths relative to the repository, e.g. ../shared/data): {bad[:20]}"
