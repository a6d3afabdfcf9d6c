"""The trusted static scan of a submission's own code: routes to the reference, patching, background processes.

The cells a student wrote (solution cells, and any cell added or changed against the master) are parsed
(IPython syntax such as ``!cmd`` and ``%magic`` first turned into Python) and walked with ``ast``. A finding names
its technique:

* ``reference``: the exercise's forbidden library symbol, by name, attribute, import, or in a string;
* ``dynamic import``: ``importlib``, ``__import__``, ``sys.modules``, ``getattr``/``vars``/``__dict__`` on an
  imported module, ``globals()``;
* ``exec of a string``: ``exec``, ``eval``, ``compile``, ``runpy``, ``pickle``/``marshal`` loads;
* ``reads files``: ``open``, ``Path.read_text``/``read_bytes``/``open``, ``__file__``, ``inspect``, ``nbformat``,
  ``glob``, directory listings, a notebook's or the masters' path in a string;
* ``writes files``: ``np.savez``, ``torch.save``, ``Path.write_bytes``, removing or renaming files, the grader's
  ``outputs/`` in a string (a later cell could otherwise rewrite what a test cell recorded);
* ``patching``: the grader's environment (``os.environ``, ``M2S_…``); assigning to (or ``setattr`` on) an attribute of an imported module or class (``torch.testing
  .assert_close``, ``m2s_lib.teaching.*``, ``F.interpolate``), ``builtins``, ``sys.excepthook``/``displayhook``/
  ``settrace``/``setprofile``, IPython's shell (``get_ipython``, ``ast_transformers``, ``input_transformers``,
  ``events``, ``showtraceback``), ``ctypes``, ``gc``, frame and code objects;
* ``background process``: ``subprocess``, ``os.system``/``fork``/``popen``/``spawn*``/``exec*``,
  ``multiprocessing``, threads, ``atexit``, ``signal``;
* ``fools comparisons``: a class that subclasses ``int``/``float``/``Tensor``/``ndarray`` or defines
  ``__torch_function__``, ``__eq__``, ``__sub__`` … (results are also refused unless exactly of a plain type).

A flagged exercise scores 0; the flag says which technique, where, so that a teacher can review it.
"""
from __future__ import annotations

import ast
import difflib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import nbcheck
from ..exercises.base import Exercise

__all__ = ["Finding", "TECHNIQUES", "scan_notebook", "scan_source"]

TECHNIQUES = ("reference", "dynamic import", "exec of a string", "reads files", "writes files", "patching",
              "background process", "fools comparisons")
# a result type that lies to comparisons: a subclass of a number or tensor, or a class defining these
_PLAIN_BASES = {"int", "float", "complex", "Tensor", "ndarray", "bool"}
_LYING_METHODS = {"__torch_function__", "__torch_dispatch__", "__eq__", "__ne__", "__sub__", "__rsub__", "__abs__",
                  "__lt__", "__le__", "__gt__", "__ge__", "__float__", "__int__", "__index__", "__bool__",
                  "__array__", "__array_function__", "__array_ufunc__", "__instancecheck__"}

_MODULES = {
    "importlib": "dynamic import", "imp": "dynamic import", "pkgutil": "dynamic import", "zipimport": "dynamic import",
    "runpy": "exec of a string", "pickle": "exec of a string", "marshal": "exec of a string", "dill": "exec of a string",
    "code": "exec of a string", "codeop": "exec of a string", "cloudpickle": "exec of a string",
    "inspect": "reads files", "linecache": "reads files", "nbformat": "reads files", "nbclient": "reads files",
    "glob": "reads files", "fnmatch": "reads files", "shutil": "reads files", "tokenize": "reads files",
    "builtins": "patching", "__builtin__": "patching", "IPython": "patching", "ipykernel": "patching",
    "ctypes": "patching", "gc": "patching", "unittest": "patching", "pytest": "patching", "types": "patching",
    "subprocess": "background process", "multiprocessing": "background process", "threading": "background process",
    "_thread": "background process", "concurrent": "background process", "atexit": "background process",
    "signal": "background process", "pty": "background process", "sched": "background process",
    "asyncio": "background process", "socket": "background process",
}  # fmt: skip
_NAMES = {
    "__import__": "dynamic import", "__loader__": "dynamic import", "__spec__": "dynamic import",
    "globals": "dynamic import", "vars": "dynamic import", "locals": "dynamic import",
    "exec": "exec of a string", "eval": "exec of a string", "compile": "exec of a string",
    "execfile": "exec of a string", "breakpoint": "exec of a string",
    "open": "reads files", "__file__": "reads files", "__cached__": "reads files",
    "get_ipython": "patching", "__builtins__": "patching", "setattr": "patching", "delattr": "patching",
    "In": "exec of a string", "_ih": "exec of a string", "Out": "exec of a string", "_oh": "exec of a string",
}  # fmt: skip
_ATTRS = {
    "modules": "dynamic import", "import_module": "dynamic import", "__dict__": "dynamic import",
    "__getattribute__": "dynamic import", "__import__": "dynamic import", "__loader__": "dynamic import",
    "read_text": "reads files", "read_bytes": "reads files", "open": "reads files", "__file__": "reads files",
    "getsource": "reads files", "getfile": "reads files", "listdir": "reads files", "scandir": "reads files",
    "walk": "reads files", "iterdir": "reads files", "glob": "reads files", "rglob": "reads files",
    "ast_transformers": "patching", "input_transformers_post": "patching", "input_transformers_cleanup": "patching",
    "input_transformer_manager": "patching", "showtraceback": "patching", "excepthook": "patching",
    "displayhook": "patching", "settrace": "patching", "setprofile": "patching", "addaudithook": "patching",
    "_getframe": "patching", "f_globals": "patching", "f_back": "patching", "f_locals": "patching",
    "__globals__": "patching", "__code__": "patching", "__closure__": "patching", "__subclasses__": "patching",
    "__builtins__": "patching", "run_cell": "patching", "run_line_magic": "patching", "run_cell_magic": "patching",
    "register_magic_function": "patching", "set_custom_exc": "patching", "user_ns": "patching",
    "system": "background process", "fork": "background process", "forkpty": "background process",
    "popen": "background process", "posix_spawn": "background process", "posix_spawnp": "background process",
    "spawnl": "background process", "spawnv": "background process", "spawnlp": "background process",
    "spawnvp": "background process", "execv": "background process", "execve": "background process",
    "execl": "background process", "execvp": "background process", "kill": "background process",
    "setsid": "background process", "daemon": "background process",
    "write_text": "writes files", "write_bytes": "writes files", "savez": "writes files", "save": "writes files",
    "savez_compressed": "writes files", "tofile": "writes files", "unlink": "writes files", "rename": "writes files",
    "remove": "writes files", "rmtree": "writes files", "chmod": "writes files", "mkdir": "writes files",
    "makedirs": "writes files", "symlink_to": "writes files", "symlink": "writes files",
    "environ": "patching", "getenv": "patching", "putenv": "patching",
}  # fmt: skip
_STRINGS = {
    "get_ipython": "patching", "ast_transformers": "patching", "__builtins__": "patching", "excepthook": "patching",
    "__import__": "dynamic import", "importlib": "dynamic import", "sys.modules": "dynamic import",
    "subprocess": "background process", ".ipynb": "reads files", "BEGIN SOLUTION": "reads files",
    "notebooks/": "reads files", "source/": "reads files", "m2s_lib/": "reads files", ".py": "reads files",
    "M2S_": "patching", "outputs/": "writes files", ".npz": "writes files",
}  # fmt: skip


# attribute names that are routes only on a module the notebook imported (``os.walk``; not ``model.modules()``)
_ON_IMPORTS_ONLY = {"modules", "walk", "system", "kill", "glob", "daemon", "fork", "popen", "open", "listdir",
                    "scandir", "iterdir", "rglob", "__dict__", "save", "remove", "rename", "mkdir", "makedirs",
                    "unlink", "chmod", "environ", "getenv", "putenv", "symlink"}


_SOLUTION = re.compile(r"###\s*BEGIN SOLUTION.*?###\s*END SOLUTION\n?", re.S)


@dataclass(frozen=True)
class Finding:
    technique: str
    detail: str
    line: int = 0

    def text(self, where: str = "") -> str:
        return f"{self.technique}: {self.detail}" + (f" ({where}, line {self.line})" if where else "")


def python_source(source: str) -> str:
    """A cell's source as Python (IPython's ``!cmd``, ``%magic`` and ``%%magic`` become calls on the shell)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 — no IPython, or a cell it cannot transform: scan the text as it is
        return source


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call):
        parts.append(_dotted(node.func) + "()")
    else:
        parts.append("…")
    return ".".join(reversed(parts))


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


class _Scanner(ast.NodeVisitor):
    def __init__(self, forbidden: Iterable[str], imported: Iterable[str]):
        self.forbidden = set(forbidden)
        self.imported = set(imported) | {"torch", "F", "nn", "np", "os", "sys", "nbu", "m2s_lib", "builtins"}
        self.found: list[Finding] = []

    def add(self, technique: str, detail: str, node: ast.AST) -> None:
        self.found.append(Finding(technique, detail, getattr(node, "lineno", 0)))

    def _module(self, name: str, node: ast.AST) -> None:
        root = name.split(".")[0]
        if root in _MODULES:
            self.add(_MODULES[root], f"imports {name}", node)
        if name.startswith("m2s_lib.teaching"):
            self.add("patching", f"imports the course's own module {name}", node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._module(alias.name, node)
            self.imported.add((alias.asname or alias.name).split(".")[0])
            for part in alias.name.split("."):
                if part in self.forbidden:
                    self.add("reference", f"imports {alias.name}", node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        self._module(module, node)
        for alias in node.names:
            self.imported.add(alias.asname or alias.name)
            if alias.name == "*" and module.startswith("m2s_lib"):
                self.add("reference", f"imports everything from {module}", node)
            elif alias.name in self.forbidden:
                self.add("reference", f"imports {alias.name} from {module}", node)
            elif alias.name in _MODULES or alias.name in ("modules", "import_module", "system", "fork", "popen"):
                self.add(_MODULES.get(alias.name, "dynamic import"), f"imports {alias.name} from {module}", node)
            elif module == "m2s_lib" and alias.name == "teaching":
                self.add("patching", "imports the course's own module m2s_lib.teaching", node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.forbidden:
            self.add("reference", f"uses {node.id}", node)
        elif node.id in _NAMES:
            self.add(_NAMES[node.id], f"uses {node.id}", node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node)
        if node.attr in self.forbidden:
            self.add("reference", f"uses {dotted}", node)
        elif node.attr in _ATTRS:
            root = _root(node)
            on_import = root in self.imported or dotted.startswith("get_ipython()")
            if node.attr not in _ON_IMPORTS_ONLY or (on_import and not (node.attr == "open" and root in ("Image", "PIL"))):
                self.add(_ATTRS[node.attr], f"uses {dotted}", node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        if name in ("getattr", "setattr", "delattr", "vars") and node.args:
            root = _root(node.args[0])
            target = _dotted(node.args[0])
            if root in self.imported or root in ("__builtins__", "sys"):
                technique = "dynamic import" if name in ("getattr", "vars") else "patching"
                self.add(technique, f"{name}() on {target}", node)
            for arg in node.args[1:2]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value in self.forbidden:
                    self.add("reference", f"{name}(…, {arg.value!r})", node)
        self.generic_visit(node)

    def _assigned(self, target: ast.AST, node: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._assigned(element, node)
            return
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            root = _root(target)
            dotted = _dotted(target.value if isinstance(target, ast.Subscript) else target)
            if root in self.imported or root in ("get_ipython", "__builtins__") or dotted.startswith("get_ipython()"):
                self.add("patching", f"assigns {dotted}", node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._assigned(target, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._assigned(node.target, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assigned(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._assigned(target, node)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if name in _PLAIN_BASES:
                self.add("fools comparisons", f"class {node.name} subclasses {_dotted(base)}", node)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in _LYING_METHODS:
                self.add("fools comparisons", f"class {node.name} defines {item.name}", item)
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):  # a docstring or a bare string: it does nothing
            return
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            for word in self.forbidden:
                if word in node.value:
                    self.add("reference", f"names {word} in a string", node)
            for word, technique in _STRINGS.items():
                if word in node.value:
                    self.add(technique, f"{word!r} in a string", node)


def scan_source(source: str, forbidden: Iterable[str] = (), imported: Iterable[str] = ()) -> list[Finding]:
    """Findings in one cell's ``source``: ``forbidden`` are the bare names of the reference symbols, ``imported``
    names the notebook binds to modules or library objects. A cell that does not parse gives none (it cannot run)."""
    try:
        tree = ast.parse(python_source(source))
    except (SyntaxError, ValueError):
        return []
    scanner = _Scanner(forbidden, imported)
    scanner.visit(tree)
    unique = list(dict.fromkeys(scanner.found))
    return unique


def forbidden_names(exercise: Exercise) -> set[str]:
    """The bare names the static scan looks for: the last part of each forbidden symbol (a method name as common
    as ``forward`` is left to the exercise's own ``scan_extra``)."""
    return {s.split(".")[-1] for s in exercise.forbidden} - {"forward", "__init__", "__call__"}


# -------------------------------------------------------------------------------------------------------------
# A notebook
# -------------------------------------------------------------------------------------------------------------
def _meta(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _imported_names(sources: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(python_source(source))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                names.update(a.asname or a.name for a in node.names if a.name != "*")
    return names


def _baseline(cell: Mapping[str, Any], master: Mapping[str, Any] | None, names: set[str], imported: set[str]) -> Counter:
    """The findings of the master cell that ``cell`` changed (same cell id; else the most similar code cell)."""
    candidates = [c for c in (master or {}).get("cells", []) if c.get("cell_type") == "code"
                  and not _meta(c).get("solution")]  # fmt: skip
    if not candidates:
        return Counter()
    source = nbcheck.cell_source(cell)
    same = [c for c in candidates if cell.get("id") and c.get("id") == cell.get("id")]
    best = same[0] if same else max(candidates, key=lambda c: difflib.SequenceMatcher(
        None, nbcheck.cell_source(c), source, autojunk=False).ratio())  # fmt: skip
    return Counter((f.technique, f.detail) for f in scan_source(nbcheck.cell_source(best), names, imported))


def scan_notebook(notebook: Mapping[str, Any], exercises: Sequence[Exercise],
                  master: Mapping[str, Any] | None = None) -> dict[str, list[str]]:  # fmt: skip
    """``{test cell grade_id: [flags]}`` for ``exercises`` of ``notebook``.

    A finding in an exercise's solution cell flags that exercise. A cell the student added or changed (it equals
    no cell of ``master``) is scanned too: a forbidden symbol there flags the exercises that forbid it and whose
    test cell comes later; any other technique flags every exercise. Locked nbgrader cells are the grader's."""
    cells = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    sources = [nbcheck.cell_source(c) for c in cells]
    imported = _imported_names(sources)
    master_set = {nbcheck.cell_source(c).strip() for c in (master or {}).get("cells", [])
                  if c.get("cell_type") == "code" and not _meta(c).get("solution")}  # fmt: skip
    by_solution = {sid: e for e in exercises for sid in e.solution_ids}
    stubs = {_meta(c).get("grade_id"): _SOLUTION.sub("pass\n", nbcheck.cell_source(c))
             for c in (master or {}).get("cells", []) if _meta(c).get("solution")}  # fmt: skip
    test_position = {_meta(c).get("grade_id"): i for i, c in enumerate(cells)}
    flags: dict[str, list[str]] = {e.grade_id: [] for e in exercises}
    everything = set().union(*(forbidden_names(e) for e in exercises)) if exercises else set()
    for index, (cell, source) in enumerate(zip(cells, sources)):
        meta = _meta(cell)
        grade_id = meta.get("grade_id")
        if grade_id in by_solution:
            exercise = by_solution[grade_id]
            given = Counter((f.technique, f.detail) for f in scan_source(
                stubs.get(grade_id, ""), forbidden_names(exercise), imported))  # the code given around the region
            findings = []
            for f in scan_source(source, forbidden_names(exercise), imported):
                if given[(f.technique, f.detail)] > 0:
                    given[(f.technique, f.detail)] -= 1
                else:
                    findings.append(f)
            try:
                findings += [Finding("reference", d) for d in exercise.scan_extra(ast.parse(python_source(source)),
                                                                                  source)]  # fmt: skip
            except (SyntaxError, ValueError):
                pass
            flags[exercise.grade_id] += [f.text(f"solution cell {grade_id!r}") for f in findings]
            continue
        if (meta.get("locked") and grade_id) or source.strip() in master_set or not source.strip():
            continue
        seen = _baseline(cell, master, everything, imported)
        for finding in scan_source(source, everything, imported):
            key = (finding.technique, finding.detail)
            if seen[key] > 0:
                seen[key] -= 1
                continue
            where = f"a cell you added or changed (code cell {index + 1})"
            for exercise in exercises:
                if finding.technique == "reference":
                    hits = any(w in finding.detail for w in forbidden_names(exercise))
                    if not hits or test_position.get(exercise.grade_id, len(cells)) < index:
                        continue
                flags[exercise.grade_id].append(finding.text(where))
    return {k: list(dict.fromkeys(v)) for k, v in flags.items()}
