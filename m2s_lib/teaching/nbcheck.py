"""Checks that committed notebooks are clean and papermill-ready: ``m2s nbcheck notebooks`` (``make lint``, the
pre-commit hook).

Rules, for every ``*.ipynb`` under the given folders (``.ipynb_checkpoints`` skipped) or given as files:

1. No outputs and no execution counts (strip with ``nbstripout`` before committing; the pre-commit hook does it).
2. The first code cell is tagged ``parameters`` (papermill injects its overrides right after it); only the Colab
   install cell, tagged ``install`` (m2s_lib.teaching.badges), may come before it.
3. That cell holds only plain ``name = <literal>`` assignments (comments welcome): papermill overrides by
   re-assigning names, so a parameter computed from another one would silently keep its full-size value.
   Their comments hold no ``=``: papermill's parameter parser (``papermill --help-notebook``, the
   unknown-parameter warning) gives up on such a line.
4. No ``injected-parameters`` cell (that is an executed copy, which belongs in ``runs/``).
5. No code cell over :data:`MAX_CELL_LINES` lines, except the parameters cell, the install cell and solution cells
   (nbgrader ``solution`` metadata or a ``### BEGIN SOLUTION`` region): a longer cell is a function that belongs
   in the library, which the cell then calls.

With ``--overrides tests/notebook_overrides.yaml`` it also checks that file: every entry names an existing
numbered notebook, every numbered notebook has an entry (``{}`` is fine), and every overridden name is one of
that notebook's parameters. Exit status 1 and one line per problem when anything is wrong.

The notebook files are read as JSON, so this needs neither nbformat nor Jupyter.
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import tokenize
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "NOTEBOOK_GLOB",
    "INSTALL_TAG",
    "MAX_CELL_LINES",
    "PARAMETERS_TAG",
    "cell_source",
    "discover_notebooks",
    "load_notebook",
    "load_overrides",
    "long_cells",
    "main",
    "notebook_problems",
    "overrides_problems",
    "parameter_names",
    "parameters_cell",
]

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"  # the ordered notebooks that tests and `make reproduce` execute
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
INSTALL_TAG = "install"  # the Colab install cell, the one code cell allowed before `parameters`
MAX_CELL_LINES = 30  # rule 5


def discover_notebooks(folder: str | Path, pattern: str = NOTEBOOK_GLOB) -> list[Path]:
    """The ordered notebooks ``NN_name.ipynb`` directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file())


def load_notebook(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def cell_source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def parameters_cell(nb: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first code cell not tagged ``install`` if it is tagged ``parameters``, else ``None``."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and INSTALL_TAG not in _tags(cell):
            return cell if PARAMETERS_TAG in _tags(cell) else None
    return None


def _parse_parameters(source: str) -> tuple[dict[str, Any], list[str]]:
    """Assigned names → literal values, and the problems found (non-literal or non-assignment statements)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return {}, [f"the parameters cell does not parse: {err}"]
    names: dict[str, Any] = {}
    problems = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a bare string is documentation
        else:
            problems.append(
                f"line {node.lineno} of the parameters cell is not a plain `name = <literal>` assignment: "
                f"{ast.unparse(node)[:80]!r}"
            )
            continue
        try:
            names[target] = ast.literal_eval(value)
        except ValueError:
            problems.append(
                f"parameter {target!r} is not a literal ({ast.unparse(value)[:60]!r}): compute derived values in a "
                "later cell so that overrides reach them"
            )
    try:
        comments = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):
        comments = []
    assigned_lines = {node.lineno for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))}
    for token in comments:
        if token.start[0] in assigned_lines and "=" in token.string:
            problems.append(
                f"line {token.start[0]} of the parameters cell has '=' in its comment, which papermill cannot parse "
                f"(write 'None: show only', not 'None = show only'): {token.string[:60]!r}"
            )
    return names, problems


def parameter_names(nb_or_path: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """The parameters (name → default value) of a notebook's ``parameters`` cell; empty if it has none."""
    nb = load_notebook(nb_or_path) if isinstance(nb_or_path, (str, Path)) else nb_or_path
    cell = parameters_cell(nb)
    return {} if cell is None else _parse_parameters(cell_source(cell))[0]


def long_cells(nb: Mapping[str, Any], limit: int = MAX_CELL_LINES) -> list[tuple[int, int]]:
    """``(cell number from 1, lines)`` of every code cell over ``limit`` lines, the exempt cells left out (rule 5)."""
    found = []
    for number, cell in enumerate(nb.get("cells", []), 1):
        source = cell_source(cell)
        exempt = (PARAMETERS_TAG in _tags(cell) or INSTALL_TAG in _tags(cell) or "### BEGIN SOLUTION" in source
                  or cell.get("metadata", {}).get("nbgrader", {}).get("solution"))
        lines = len(source.splitlines())
        if cell.get("cell_type") == "code" and not exempt and lines > limit:
            found.append((number, lines))
    return found


def notebook_problems(path: str | Path) -> list[str]:
    """Everything wrong with one committed notebook (empty list: clean)."""
    path = Path(path)
    try:
        nb = load_notebook(path)
    except (OSError, json.JSONDecodeError) as err:
        return [f"{path}: cannot be read as a notebook ({err})"]
    problems = []
    code_cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    if not code_cells:
        problems.append("has no code cell")
    elif parameters_cell(nb) is None:
        problems.append(f"its first code cell is not tagged {PARAMETERS_TAG!r} (papermill needs it; only a cell "
                        f"tagged {INSTALL_TAG!r} may come before it)")
    else:
        problems += _parse_parameters(cell_source(parameters_cell(nb)))[1]
    with_outputs = [i for i, c in enumerate(nb.get("cells", []), 1) if c.get("cell_type") == "code" and c.get("outputs")]
    counted = [i for i, c in enumerate(nb.get("cells", []), 1) if c.get("cell_type") == "code" and c.get("execution_count")]
    if with_outputs:
        problems.append(f"has outputs in cells {with_outputs[:10]} (run `nbstripout {path}`)")
    if counted and not with_outputs:
        problems.append(f"has execution counts in cells {counted[:10]} (run `nbstripout {path}`)")
    if any(INJECTED_TAG in _tags(c) for c in nb.get("cells", [])):
        problems.append("holds papermill's injected-parameters cell: it is an executed copy (those go in runs/)")
    for number, lines in long_cells(nb):
        problems.append(f"cell {number} has {lines} code lines (at most {MAX_CELL_LINES}): move the work into a "
                        "library function and call it")
    return [f"{path}: {p}" for p in problems]


def load_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read the overrides YAML: ``{notebook file name: {parameter: value}}`` (an empty file gives ``{}``)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping of notebook file names to parameter mappings")
    return {str(k): (v or {}) for k, v in data.items()}


def overrides_problems(overrides: Mapping[str, Any], folder: str | Path) -> list[str]:
    """Problems of an overrides mapping against the numbered notebooks of ``folder``."""
    folder = Path(folder)
    notebooks = {p.name: p for p in discover_notebooks(folder)}
    problems = []
    for name, values in overrides.items():
        if name not in notebooks:
            problems.append(f"overrides name {name!r}, which is not a notebook in {folder}/ (have: {sorted(notebooks)})")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"overrides for {name} must be a mapping of parameter names to values, got {values!r}")
            continue
        params = parameter_names(notebooks[name])
        unknown = sorted(set(values) - set(params))
        if unknown:
            problems.append(
                f"overrides for {name} set {unknown}, which are not in its parameters cell (has: {sorted(params)})"
            )
    for name in sorted(set(notebooks) - set(overrides)):
        problems.append(f"{name} has no entry in the overrides file: add `{name}: {{}}` or its small CI values")
    return problems


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    found = []
    for item in paths:
        item = Path(item)
        if item.is_dir():
            found += sorted(p for p in item.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"{item} does not exist")
    return found


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``m2s nbcheck`` (added to ``parser``, which is returned)."""
    parser.add_argument("paths", nargs="*", default=["notebooks"], help="notebook files or folders (default notebooks)")
    parser.add_argument("--overrides", default=None, help="also check this overrides YAML against the notebooks")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="m2s nbcheck", description=__doc__.splitlines()[0])
    return run(add_arguments(parser).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """``m2s nbcheck`` with parsed options; returns the exit status (1: problems, 2: a path does not exist)."""
    try:
        notebooks = _expand(args.paths)
    except FileNotFoundError as err:
        print(f"nbcheck: {err}", file=sys.stderr)
        return 2
    problems = [p for nb in notebooks for p in notebook_problems(nb)]
    if args.overrides:
        folders = [Path(p) for p in args.paths if Path(p).is_dir()] or [Path("notebooks")]
        problems += overrides_problems(load_overrides(args.overrides), folders[0])
    for line in problems:
        print(line)
    if problems:
        print(f"nbcheck: {len(problems)} problem(s) in {len(notebooks)} notebook(s)", file=sys.stderr)
        return 1
    print(f"nbcheck: {len(notebooks)} notebook(s) clean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
