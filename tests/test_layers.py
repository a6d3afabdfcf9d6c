"""The package's architecture, read from its source with ``ast`` (nothing is imported or run):

* the layers, bottom to top, and no import pointing up: foundation (``constants``, ``atomic``, ``progress``) < the paper
  (``subtraction``, ``mmsm``, ``model``, ``losses``, ``metrics``, ``backbones``, ``profiling``) < ``data`` <
  the settings (``profiles``, ``config``) < ``engine`` < ``teaching`` < ``cli``;
* no import cycle among ``m2s_lib`` modules, counting imports inside functions;
* one home for each rule: the dataset facts, device selection, seeding, checkpoint reading, overlay drawing, the
  repository root, the ``runs/`` base, the probability cut, Dice smoothing, device synchronisation for timing;
* no module at the package's top level is a bare re-export (the old import paths are gone);
* size limits: no module over 600 lines, no function over 80.
"""
from __future__ import annotations

import ast
from functools import cache, lru_cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "m2s_lib"

# The layers, bottom first. A module belongs to the first layer with a matching name or prefix (``x.*``).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("m2s_lib", "m2s_lib.constants", "m2s_lib.atomic", "m2s_lib.progress")),
    ("paper", ("m2s_lib.subtraction", "m2s_lib.mmsm", "m2s_lib.model", "m2s_lib.losses", "m2s_lib.metrics",
               "m2s_lib.backbones", "m2s_lib.profiling")),
    ("data", ("m2s_lib.data", "m2s_lib.data.*")),
    ("settings", ("m2s_lib.profiles", "m2s_lib.config")),
    ("engine", ("m2s_lib.engine", "m2s_lib.engine.*")),
    ("teaching", ("m2s_lib.teaching", "m2s_lib.teaching.*")),
    ("cli", ("m2s_lib.cli", "m2s_lib.cli.*")),
)
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                return index
    raise LookupError(f"{name} is in no layer: add it to LAYERS in tests/test_layers.py")


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``m2s_lib`` modules that ``name`` imports anywhere in its source (functions included)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import module` imports that module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}



def test_every_module_has_a_layer(graph):
    for name in graph:
        layer_of(name)


def test_no_import_points_up(graph):
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in graph.items() for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not upward, "imports that point up a layer:\n  " + "\n  ".join(upward)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle(graph):
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_sees_a_cycle_through_a_function_import():
    # the shape of the old data <-> synthetic circle: a top-level import one way, a lazy one back
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


# ---------------------------------------------------------------------------------------------------------------
# One home for each rule
# ---------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _trees() -> dict[str, ast.AST]:
    return {name: ast.parse(path.read_text(), str(path)) for name, path in package_modules().items()}


def _literal_collections(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            yield node, values


FACTS = {
    "polyp test-set names": lambda v: len({"Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB",
                                           "CVC-300"} & set(v)) >= 3,
    "task list": lambda v: len({"polyp", "covid", "busi", "oct"} & set(v)) >= 3,
    "GOALS label values": lambda v: sorted(x for x in v if isinstance(x, int)) == [0, 80, 160, 255],
    "image extensions": lambda v: len({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"} & set(v)) >= 5,
}


@pytest.mark.parametrize("fact", sorted(FACTS))
def test_dataset_facts_are_written_once(fact):
    places = [f"{name}:{node.lineno}" for name, tree in _trees().items()
              for node, values in _literal_collections(tree) if FACTS[fact](values)]
    assert places == [places[0]] and places[0].startswith("m2s_lib.constants:"), f"{fact} written at {places}"


def _calls(tree: ast.AST, dotted: str):
    """Calls whose function is written ``dotted`` (e.g. ``torch.load``, ``np.random.seed``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == dotted:
            yield node


def _enclosing_functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Node -> name of the innermost function around it (``ast.walk`` visits outer functions first)."""
    owner: dict[ast.AST, str] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if node is not fn:
                    owner[node] = fn.name
    return owner


def _call_homes(dotted: str) -> set[str]:
    homes = set()
    for name, tree in _trees().items():
        owner = _enclosing_functions(tree)
        homes.update(f"{name}.{owner.get(call, '<module>')}" for call in _calls(tree, dotted))
    return homes


@pytest.mark.parametrize(("rule", "calls", "home"), [
    ("seeding", ("random.seed", "np.random.seed", "torch.manual_seed"), "m2s_lib.engine.runtime.seed_everything"),
    ("checkpoint reading", ("torch.load",), "m2s_lib.backbones.read_torch_file"),
    ("device selection", ("torch.cuda.is_available", "mps.is_available"), None),
])
def test_rules_have_one_home(rule, calls, home):
    homes = set().union(*(_call_homes(c) for c in calls))
    if home is not None:
        assert homes == {home}, f"{rule} happens in {sorted(homes)}, not only in {home}"
    else:  # availability probes: only the runtime module asks which devices exist
        assert {h.rsplit(".", 1)[0] for h in homes} == {"m2s_lib.engine.runtime"}, f"{rule} in {sorted(homes)}"


def test_device_names_are_chosen_in_one_place():
    """``torch.device("cuda"/"mps"/"cpu")`` from a literal only in the runtime's device rule."""
    places = []
    for name, tree in _trees().items():
        for call in _calls(tree, "torch.device"):
            if call.args and isinstance(call.args[0], ast.Constant) and call.args[0].value in ("cpu", "cuda", "mps"):
                places.append(name)
    assert set(places) == {"m2s_lib.engine.runtime"}, places


def test_one_checkpoint_format_check():
    places = [f"{name}:{node.lineno}" for name, tree in _trees().items() for node in ast.walk(tree)
              if isinstance(node, ast.Compare) and "CHECKPOINT_FORMAT" in ast.unparse(node)]
    assert len(places) == 1 and places[0].startswith("m2s_lib.engine.checkpoint:"), places


def test_one_overlay_rule():
    """Every ``overlay`` function is the engine's, or hands the blending to it."""
    for name, tree in _trees().items():
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and fn.name == "overlay" and name != "m2s_lib.engine.predict":
                called = {ast.unparse(c.func) for c in ast.walk(fn) if isinstance(c, ast.Call)}
                assert "blend_overlay" in called, f"{name}.overlay draws its own overlay"


@cache
def _docstrings(name: str) -> frozenset[int]:
    """``id`` of every docstring node of module ``name``."""
    return frozenset(id(node.body[0].value) for node in ast.walk(_trees()[name])
                     if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                     and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant))


@cache
def _divided(name: str) -> frozenset[int]:
    """``id`` of every operand of a ``/`` in module ``name`` (``root / "runs"``)."""
    return frozenset(id(side) for node in ast.walk(_trees()[name]) if isinstance(node, ast.BinOp)
                     and isinstance(node.op, ast.Div) for side in (node.left, node.right))


def _outside(home: str, found: list[tuple[str, str]]) -> list[str]:
    """``module.function:line`` of the places in ``found`` (``(module.function, line)``) that are not ``home``."""
    return [f"{where}:{line}" for where, line in found if where != home]


def _places(predicate) -> list[tuple[str, str]]:
    """``(module.function, line)`` of every node for which ``predicate(node, module name)`` holds."""
    found = []
    for name, tree in _trees().items():
        owner = _enclosing_functions(tree)
        found += [(f"{name}.{owner.get(node, '<module>')}", str(node.lineno)) for node in ast.walk(tree)
                  if predicate(node, name)]
    return found


def test_repository_root_has_one_home():
    """Only ``constants.repo_root`` climbs from ``__file__`` (the sandbox's copy of the installed package, which
    looks for the package itself, is not the repository)."""
    found = _places(lambda node, name: isinstance(node, ast.Attribute) and node.attr in ("parent", "parents")
                    and "__file__" in ast.unparse(node))  # fmt: skip
    places = [p for p in _outside("m2s_lib.constants.repo_root", found) if "m2s_lib.teaching.grading." not in p]
    assert not places, f"the repository root is found again at {places}: use m2s_lib.constants.repo_root()"


def test_runs_base_has_one_home():
    """A ``runs/...`` path is written only as ``constants.RUNS_DIR`` and built with ``runs_path``; the settings'
    relative ``runs/data`` default is resolved against the repository root where it is used. The classroom's and
    the grader's run folders are relative to a student's folder by design (no repository there)."""
    def is_runs_path(node, name):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in _docstrings(name):
            return False
        if name.startswith(("m2s_lib.teaching.course", "m2s_lib.teaching.grading.")) or name == "m2s_lib.constants":
            return False
        if name == "m2s_lib.config" and node.value == "runs/data":  # DataConfig.synthetic_dir, a relative setting
            return False
        return node.value.startswith("runs/") or (node.value == "runs" and id(node) in _divided(name))

    places = _outside("", _places(is_runs_path))
    assert not places, f"runs/ written out at {places}: use m2s_lib.constants.runs_path(...)"


def test_probability_cut_has_one_home():
    """``p > 0.5`` (or ``>= threshold``) is decided only by ``metrics.binarize_prob`` (and masks by
    ``metrics.binarize_mask``); coin flips (``rand() < 0.5``) are not cuts."""
    def is_cut(node, name):
        if not isinstance(node, ast.Compare) or not any(isinstance(op, (ast.Gt, ast.GtE)) for op in node.ops):
            return False
        return any((isinstance(c, ast.Constant) and c.value == 0.5) or ast.unparse(c).endswith(("threshold", "PROB_CUT"))
                   for c in (node.left, *node.comparators))

    places = [p for p in _outside("m2s_lib.metrics.binarize_prob", _places(is_cut))
              if not p.startswith("m2s_lib.metrics.binarize_mask:")]
    assert not places, f"a probability is cut at {places}: use m2s_lib.metrics.binarize_prob"


def test_dice_smoothing_has_one_home():
    """A smoothed ratio ``(a + eps) / (b + eps)`` (Dice, IoU) uses ``metrics.DICE_SMOOTH``, never its own eps."""
    def is_smoothed_ratio(node, name):
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)):
            return False
        eps = [[c.value for c in ast.walk(side) if isinstance(c, ast.Constant) and isinstance(c.value, float)
                and 0 < c.value < 1e-3] for side in (node.left, node.right)]
        return bool(set(eps[0]) & set(eps[1]))

    places = _outside("", _places(is_smoothed_ratio))
    assert not places, f"a Dice/IoU ratio carries its own smoothing at {places}: use m2s_lib.metrics.DICE_SMOOTH"


def test_device_synchronisation_has_one_home():
    """Timing waits for the device only through ``profiling.synchronize`` (CUDA, MPS, ... in one place)."""
    found = _places(lambda node, name: isinstance(node, ast.Call)
                    and ast.unparse(node.func).endswith(("cuda.synchronize", "mps.synchronize", "backend.synchronize")))
    places = _outside("m2s_lib.profiling.synchronize", found)
    assert not places, f"a device is synchronised at {places}: use m2s_lib.profiling.synchronize"


def test_no_top_level_module_is_a_bare_reexport():
    """Every module directly in ``m2s_lib/`` defines something of its own (the old import paths are gone)."""
    bare = []
    for name, tree in _trees().items():
        if name.count(".") != 1:
            continue
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        if body and all(isinstance(n, (ast.Import, ast.ImportFrom)) or (isinstance(n, ast.Assign) and
                        any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)) for n in body):
            bare.append(name)
    assert not bare, f"modules that only re-export: {bare}"


# ---------------------------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------------------------
def test_modules_and_functions_stay_small():
    too_long = []
    for name, path in package_modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"module {name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"function {name}.{node.name}: {lines} lines")
    assert not too_long, f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per function:\n  " + \
        "\n  ".join(too_long)
