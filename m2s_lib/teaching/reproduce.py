"""``m2s reproduce`` (``make reproduce``): run every notebook headlessly and write a report.

What it does, in order:

1. resolves the data: ``--data-root`` (a real dataset, or a synthetic one made by this library), else the synthetic
   polyp set of the profile (``data.synthetic_*``), generated once under ``--data-dir`` (default ``runs/data``, the
   same folder ``m2s train`` uses);
2. executes every ``notebooks/NN_*.ipynb`` in order with papermill (kernel ``python3``, working directory
   ``notebooks/``, ``MPLBACKEND=Agg``), passing each one parameters derived from the profile
   (:data:`REPRODUCE_PARAMETERS`, :data:`PROFILE_PARAMETERS`) — all notebooks share one run folder, so notebooks 07
   and 08 evaluate the checkpoint that notebook 06 trained;
3. writes ``runs/<timestamp>/``: the executed notebooks, each notebook's figures and tables
   (``<run>/<notebook>/``, see :class:`m2s_lib.teaching.notebook_utils.NotebookOutputs`), ``REPORT.md`` and a
   self-contained ``REPORT.html`` (environment first, then the polyp table, then every table and figure in
   notebook order), and ``reproduce.json`` (settings, status and time of every notebook);
4. points ``runs/latest`` at it (a relative symlink, replaced atomically).

Every parameter name is checked against the notebook's ``parameters`` cell before anything runs. A failing
notebook stops the run with its path and the cell that failed; ``--resume RUN_DIR`` continues that run, skipping the
notebooks that already succeeded with the same parameters.

Profiles: ``tiny`` (default: CPU, offline, minutes) and ``paper-polyp`` (the paper's scale: ``make reproduce
PROFILE=paper-polyp DATA=data/polyp DEVICE=cuda``). Other tasks are trained with ``m2s train`` (docs/training.md);
notebook 07 then adds their tables.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..constants import repo_root, runs_path, shown_path
from . import nbcheck
from .report import TARGET_DICE, clock, environment, load_average, write_report

__all__ = [
    "PROFILE_PARAMETERS",
    "REPRODUCE_PARAMETERS",
    "TARGET_DICE",
    "ParameterError",
    "Ref",
    "build_context",
    "main",
    "notebook_parameters",
    "write_report",
]

ROOT = repo_root()
NOTEBOOK_DIR = ROOT / "notebooks"
KERNEL_NAME = "python3"
CELL_TIMEOUT = 3600  # seconds per cell (the paper-scale training cell is the long one)
STATE_FILE = "reproduce.json"
SUPPORTED_TASKS = ("polyp",)


@dataclass(frozen=True)
class Ref:
    """A parameter value taken from the run's context (see :func:`build_context`)."""

    key: str


SYNTHETIC_KEYS = ("synthetic_n", "synthetic_n_test", "synthetic_size", "synthetic_seed", "synthetic_difficulty")
_DATA = {"data_root": Ref("data_root"), **{k: Ref(k) for k in SYNTHETIC_KEYS}}

# Parameters every notebook gets when it has them.
COMMON_PARAMETERS: dict[str, Any] = {"run_dir": Ref("run_dir"), "device": Ref("device")}

# Per notebook: parameter -> value (a literal, or a Ref into the context). Derived from the profile, so that the
# same table drives the CPU-sized and the paper-sized reproduction.
REPRODUCE_PARAMETERS: dict[str, dict[str, Any]] = {
    "00_setup_and_data.ipynb": {**_DATA, "image_size": Ref("image_size")},
    "01_subtraction_unit.ipynb": {"encoder_name": Ref("encoder_name"), "encoder_weights": Ref("encoder_weights"),
                                  "image_size": Ref("image_size")},
    "02_multiscale_subtraction_unit.ipynb": {"image_size": Ref("image_size")},
    "03_mmsm.ipynb": {"image_size": Ref("image_size")},
    "04_m2snet.ipynb": {"image_size": Ref("image_size")},  # always the paper's Res2Net-50: its 27.7 M parameters
    "05_lossnet.ipynb": {"lossnet_weights": Ref("lossnet_weights"), "image_size": Ref("image_size")},
    "06_training.ipynb": {**_DATA, "profile": Ref("profile")},
    "07_evaluation.ipynb": {**_DATA, "checkpoint_path": Ref("checkpoint")},
    "08_feature_maps.ipynb": {**_DATA, "checkpoint_path": Ref("checkpoint")},
    # 09 runs the smoke study (labelled NOT EVIDENCE) and shows the latest `make ablations` study (docs/ablations.md).
    "09_ablations.ipynb": {**_DATA, "preset": "smoke", "lossnet_weights": Ref("lossnet_weights")},
}

# Extra values for one profile, on top of REPRODUCE_PARAMETERS: what keeps the CPU run within its budget.
PROFILE_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "02_multiscale_subtraction_unit.ipynb": {"latency_repeats": 3},
        "04_m2snet.ipynb": {"latency_repeats": 2},
        "05_lossnet.ipynb": {"lossnet_input_size": Ref("image_size")},
        "09_ablations.ipynb": {"variants": ["msnet", "m2snet-nolf", "au"], "seeds": [0, 1, 2]},
    },
}


class ParameterError(ValueError):
    """A parameter name that a notebook does not have, or a malformed ``-p`` option."""


# ---------------------------------------------------------------------------------------------------------------
# Context and parameters
# ---------------------------------------------------------------------------------------------------------------
def resolve_data(profile: str, data_root: str | None, data_dir: str | os.PathLike, log=print) -> tuple[Path, dict]:
    """The polyp data root of the run and a description of it (``source``, synthetic parameters).

    ``data_root`` given: used as it is (it must exist). Otherwise the profile's synthetic polyp set, generated
    once under ``data_dir`` with the name ``m2s train`` would give it.
    """
    from ..config import get_profile
    from ..data.synthetic import ensure_synthetic, read_manifest

    d = get_profile(profile).data
    if data_root is not None:
        root = Path(data_root).expanduser().resolve()
        if not root.exists():
            raise FileNotFoundError(
                f"--data-root {data_root} does not exist: download the polyp data (`m2s data download polyp --root "
                f"{data_root}`) or leave --data-root out to use synthetic data"
            )
    else:
        root = d.synthetic_root(data_dir, task="polyp").resolve()
        fresh = not root.exists()
        if fresh:
            log(f"generating the synthetic polyp data of profile {profile!r} in {root} (once) ...")
        start = time.perf_counter()
        ensure_synthetic("polyp", root, d.synthetic_n, seed=d.synthetic_seed, size=d.synthetic_size,
                         n_test=d.synthetic_n_test, progress=False, difficulty=d.synthetic_difficulty)  # fmt: skip
        if fresh:
            log(f"  done in {time.perf_counter() - start:.0f} s")
    manifest = read_manifest(root)
    if manifest is not None:
        info = {"source": "synthetic", "synthetic_n": manifest["n"], "synthetic_n_test": manifest["n_test"],
                "synthetic_size": manifest["size"], "synthetic_seed": manifest["seed"],
                "synthetic_difficulty": manifest["difficulty"]}  # fmt: skip
    else:  # a real dataset: the synthetic_* parameters are not used, the notebooks read the folder as it is
        info = {"source": "real", "synthetic_n": d.synthetic_n, "synthetic_n_test": d.synthetic_n_test,
                "synthetic_size": d.synthetic_size, "synthetic_seed": d.synthetic_seed,
                "synthetic_difficulty": d.synthetic_difficulty}  # fmt: skip
    return root, info


def build_context(profile: str, run_dir: Path, data_root: Path, data_info: Mapping[str, Any], device: str) -> dict:
    """The values :class:`Ref` entries point at, derived from the profile and the run. Folders inside the repository
    are passed relative to its root (the notebooks resolve them there), so no executed notebook, report or site page
    carries the builder's absolute paths."""
    from ..config import get_profile

    cfg = get_profile(profile)
    return {
        "profile": profile,
        "run_dir": shown_path(run_dir),
        "device": device,
        "data_root": shown_path(data_root),
        **{k: data_info[k] for k in SYNTHETIC_KEYS},
        "image_size": cfg.data.size,
        "encoder_name": cfg.model.encoder_name,
        "encoder_weights": cfg.model.encoder_weights,
        "lossnet_weights": cfg.loss.lossnet_weights,
        "checkpoint": shown_path(Path(run_dir) / "06_training" / "best.pt"),
    }


def _resolve(value: Any, context: Mapping[str, Any]) -> Any:
    return context[value.key] if isinstance(value, Ref) else value


def _unknown_message(notebook: str, unknown: Sequence[str], params: Sequence[str], where: str) -> str:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, params, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (f"{notebook} has no parameter {', '.join(hints)} ({where}). Its parameters: {', '.join(sorted(params))}")


def notebook_parameters(
    notebook: Path, profile: str, context: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The papermill parameters of one notebook: common ones it has, its table entry, the profile's entry, then
    ``extra`` (``-p`` options / ``--overrides``). Raises :class:`ParameterError` naming any unknown name."""
    params = nbcheck.parameter_names(notebook)
    if not params:
        raise ParameterError(f"{notebook.name} has no `parameters` cell: tag its first code cell `parameters`")
    out = {k: _resolve(v, context) for k, v in COMMON_PARAMETERS.items() if k in params}
    layers = [
        (REPRODUCE_PARAMETERS.get(notebook.name, {}), "REPRODUCE_PARAMETERS in m2s_lib/teaching/reproduce.py"),
        (PROFILE_PARAMETERS.get(profile, {}).get(notebook.name, {}), f"PROFILE_PARAMETERS[{profile!r}]"),
        (extra or {}, "command-line parameters"),
    ]
    for values, where in layers:
        unknown = [k for k in values if k not in params]
        if unknown:
            raise ParameterError(_unknown_message(notebook.name, unknown, list(params), where))
        out.update({k: _resolve(v, context) for k, v in values.items()})
    return out


def _match_notebook(key: str, notebooks: Sequence[Path]) -> Path:
    key = key.strip()
    hits = [p for p in notebooks if p.name == key or p.stem == key or p.name.startswith(key)]
    if len(hits) != 1:
        names = ", ".join(p.stem for p in notebooks)
        problem = "matches no notebook" if not hits else f"matches several ({', '.join(p.stem for p in hits)})"
        raise ParameterError(f"{key!r} {problem}; notebooks: {names}")
    return hits[0]


def parse_parameter_options(options: Sequence[str], notebooks: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """``["06:epochs=3", "09_ablations:variants=[fpn, m2snet]"]`` → ``{notebook file: {name: value}}`` (YAML values)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for option in options:
        m = re.fullmatch(r"\s*([^:=\s]+)\s*:\s*([A-Za-z_]\w*)\s*=(.*)", option, flags=re.S)
        if m is None:
            raise ParameterError(f"-p {option!r} is not of the form NOTEBOOK:NAME=VALUE (e.g. -p 06:epochs=3)")
        notebook = _match_notebook(m.group(1), notebooks)
        value = m.group(3).strip()
        out.setdefault(notebook.name, {})[m.group(2)] = yaml.safe_load(value) if value else ""
    return out


def _merge(*mappings: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for mapping in mappings:
        for name, values in mapping.items():
            out.setdefault(name, {}).update(values or {})
    return out


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------
def _kernel_environment() -> None:
    os.environ["MPLBACKEND"] = "Agg"
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    os.environ["PYTHONUNBUFFERED"] = "1"
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    path = os.environ.get("PYTHONPATH", "")
    if str(ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, path.split(os.pathsep))])


def _save_state(run_dir: Path, state: dict) -> None:
    write_text(run_dir / STATE_FILE, json.dumps(state, indent=2, default=str) + "\n")


def link_latest(run_dir: Path) -> Path:
    """Point ``<parent>/latest`` at ``run_dir`` (relative symlink, replaced atomically)."""
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, latest)
    return latest


def run_notebook(notebook: Path, executed: Path, parameters: Mapping[str, Any], progress: bool) -> None:
    import tempfile

    import papermill

    with tempfile.TemporaryDirectory(prefix="m2s-kernel-") as sockets:
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=dict(parameters), kernel_name=KERNEL_NAME, language="python",
            cwd=str(NOTEBOOK_DIR), execution_timeout=CELL_TIMEOUT, progress_bar=progress, log_output=False,
            config=kernel_transport(sockets),
        )  # fmt: skip


def kernel_transport(folder: str | os.PathLike):
    """The kernel's transport: local sockets in ``folder`` (IPC) where the system has them, so that nothing travels
    over TCP in plain text (and ipykernel has no reason to warn about it); TCP on Windows, which has no IPC."""
    from traitlets.config import Config

    if os.name == "nt":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})


def _failure_details(err: Exception, executed: Path) -> dict[str, Any]:
    import papermill

    if isinstance(err, papermill.PapermillExecutionError):
        return {"cell": err.exec_count, "error": f"{err.ename}: {err.evalue}",
                "traceback": _strip_ansi("\n".join(err.traceback[-6:])), "executed": str(executed)}  # fmt: skip
    return {"cell": None, "error": f"{type(err).__name__}: {err}", "traceback": "", "executed": str(executed)}


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------
def _select(notebooks: Sequence[Path], spec: str | None) -> list[Path]:
    if not spec:
        return list(notebooks)
    chosen = {_match_notebook(key, notebooks) for key in spec.split(",") if key.strip()}
    return [p for p in notebooks if p in chosen]


DESCRIPTION = "Run every notebook with papermill on a profile and write runs/<timestamp>/REPORT.md."
EPILOG = ("Examples: `m2s reproduce` (tiny, offline, CPU); `m2s reproduce --profile paper-polyp --data-root data/polyp "
          "--device cuda`; `m2s reproduce --notebooks 06,07 -p 06:epochs=2`.")


def _parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="m2s reproduce", description=DESCRIPTION, epilog=EPILOG))


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``m2s reproduce`` (added to ``p``, which is returned)."""
    p.add_argument("--profile", default=None, help="configuration profile (default tiny; polyp profiles only)")
    p.add_argument("--data-root", default=None, help="polyp dataset root (default: the profile's synthetic data)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--out", default=None, help="folder of the run folders (default: runs/ at the repository root)")
    p.add_argument("--data-dir", default=None, help="where synthetic data is generated (default: runs/data at the repository root)")
    p.add_argument("--notebooks", default=None, help="comma-separated subset, by number or name (default: all)")
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NB:NAME=VALUE",
                   help="extra notebook parameter, YAML value (repeatable), e.g. -p 06:epochs=3")  # fmt: skip
    p.add_argument("--overrides", default=None, help="YAML {notebook file: {name: value}} applied last "
                   "(e.g. tests/notebook_overrides.yaml for a quick smoke run)")  # fmt: skip
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue this run: notebooks that already succeeded with the same parameters are skipped")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    return p


def _resume_arguments(args: argparse.Namespace) -> tuple[Path | None, dict]:
    """``(run folder, its saved state)`` for ``--resume`` (``(None, {})`` otherwise); the run's own settings fill in
    ``args`` and may not be changed."""
    if not args.resume:
        return None, {}
    run_dir = Path(args.resume).expanduser().resolve()
    if not (run_dir / STATE_FILE).is_file():
        raise ParameterError(f"--resume {args.resume}: no {STATE_FILE} there (not a reproduce run folder)")
    previous = json.loads((run_dir / STATE_FILE).read_text())
    saved = previous.get("arguments", {})
    for key in ("profile", "data_root", "device", "data_dir", "notebooks", "overrides"):
        mine, theirs = getattr(args, key), saved.get(key)
        if mine is not None and theirs is not None and mine != theirs:
            raise ParameterError(f"--resume keeps the run's own --{key.replace('_', '-')} {theirs!r}; got {mine!r}. "
                                 "Start a new run to change it.")
        if mine is None:
            setattr(args, key, theirs)
    args.parameter = list(saved.get("parameter", [])) + list(args.parameter)
    return run_dir, previous


def _check_settings(args: argparse.Namespace, notebooks: list[Path], profile: str, device: str,
                    out_base: Path) -> tuple[list[Path], dict[str, dict[str, Any]]]:
    """The notebooks to run and their extra parameters, every setting checked before any work is done."""
    from ..config import get_profile
    from ..engine.runtime import select_device

    select_device(device, fix="--device cpu (or auto)")  # before any data or run folder is made
    task = get_profile(profile).data.task
    if task not in SUPPORTED_TASKS:
        raise ParameterError(
            f"profile {profile!r} trains the {task} task; make reproduce runs the polyp course (profiles tiny, "
            f"paper-polyp). Train {task} with `m2s train --profile {profile}` (docs/training.md): notebook 07 "
            "then adds its table."
        )
    selected = _select(notebooks, args.notebooks)
    extra = parse_parameter_options(args.parameter, notebooks)
    if args.overrides:
        overrides = nbcheck.load_overrides(Path(args.overrides).expanduser())
        unknown_nb = sorted(set(overrides) - {p.name for p in notebooks})
        if unknown_nb:
            raise ParameterError(f"--overrides {args.overrides} names notebooks that do not exist: {unknown_nb}")
        extra = _merge(extra, overrides)
    # Validate every notebook's parameters before anything runs (placeholder context: names only).
    placeholder = build_context(profile, out_base / "RUN", Path("DATA"), dict.fromkeys(SYNTHETIC_KEYS, 0), device)
    for nb in selected:
        notebook_parameters(nb, profile, placeholder, extra.get(nb.name))
    return selected, extra


def _new_run_dir(out_base: Path) -> Path:
    out_base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = out_base / stamp
    k = 1
    while run_dir.exists():
        k += 1
        run_dir = out_base / f"{stamp}-{k}"
    run_dir.mkdir()
    return run_dir


def _run_notebooks(selected: list[Path], profile: str, context: dict, extra: dict, run_dir: Path, state: dict,
                   previous: dict, start: float, progress: bool) -> tuple[Path, dict] | None:
    """Run the notebooks in order (skipping those a resumed run finished with the same parameters), recording each
    in ``state``; returns ``(notebook, entry)`` of the first failure, else ``None``."""
    done_before = previous.get("notebooks", {})
    for i, nb in enumerate(selected, 1):
        params = notebook_parameters(nb, profile, context, extra.get(nb.name))
        executed = run_dir / nb.name
        before = done_before.get(nb.name, {})
        if before.get("status") == "ok" and before.get("parameters") == json.loads(json.dumps(params, default=str)):
            state["notebooks"][nb.name] = dict(before)
            print(f"[{i}/{len(selected)}] {nb.stem}: already done in this run, skipped (--resume)", flush=True)
            continue
        print(f"[{i}/{len(selected)}] {nb.stem} ... (total {clock(time.perf_counter() - start)})", flush=True)
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"parameters": params}
        failed = None
        try:
            run_notebook(nb, executed, params, progress)
            entry.update(status="ok")
        except Exception as err:  # noqa: BLE001 — any failure stops the run with its details
            entry.update(status="failed", **_failure_details(err, executed))
            failed = (nb, entry)
        except BaseException:  # Ctrl-C or SIGTERM: record it, write the report (finally in main), then stop
            entry.update(status="interrupted", seconds=time.perf_counter() - t0)
            state["notebooks"][nb.name] = entry
            raise
        entry["seconds"] = time.perf_counter() - t0
        state["notebooks"][nb.name] = entry
        state["wall_s"] = float(previous.get("wall_s", 0.0)) + time.perf_counter() - start
        _save_state(run_dir, state)
        if failed:
            return failed
        print(f"      ok in {clock(entry['seconds'])}", flush=True)
    return None


def main(argv: list[str] | None = None) -> int:
    return run(_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """``m2s reproduce`` with parsed options (:func:`add_arguments`); returns the exit status."""
    start = time.perf_counter()
    notebooks = nbcheck.discover_notebooks(NOTEBOOK_DIR)
    if not notebooks:
        print(f"reproduce: no notebooks matching {nbcheck.NOTEBOOK_GLOB} in {NOTEBOOK_DIR}", file=sys.stderr)
        return 2
    try:
        run_dir, previous = _resume_arguments(args)  # a resumed run keeps its own settings
        profile = args.profile or "tiny"
        device = args.device or "auto"
        out_base = Path(args.out or runs_path()).expanduser().resolve()
        data_dir = args.data_dir or str(runs_path("data"))
        selected, extra = _check_settings(args, notebooks, profile, device, out_base)
        data_root, data_info = resolve_data(profile, args.data_root, data_dir)
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # ParameterError, ConfigError, DeviceError: a bad
        # setting ends here, before any work
        print(f"reproduce: {err}", file=sys.stderr)
        return 2
    run_dir = run_dir or _new_run_dir(out_base)
    context = build_context(profile, run_dir, data_root, data_info, device)
    _kernel_environment()
    state = {
        "profile": profile,
        "started": previous.get("started") or datetime.now().isoformat(timespec="seconds"),
        "arguments": {"profile": profile, "data_root": args.data_root, "device": device, "data_dir": args.data_dir,
                      "notebooks": args.notebooks, "overrides": args.overrides, "parameter": list(args.parameter)},
        "environment": environment(device, profile, data_root, data_info),
        "custom_parameters": extra,
        "notebooks": {},
        "wall_s": float(previous.get("wall_s", 0.0)),
    }  # fmt: skip
    print(f"reproduce: profile {profile}, device {device}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{data_info['source']} data {data_root}\n           {len(selected)} notebook(s) -> {run_dir}", flush=True)
    progress = not args.no_progress and sys.stderr.isatty()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # run the finally block below
    try:
        failed = _run_notebooks(selected, profile, context, extra, run_dir, state, previous, start, progress)
    finally:
        state["wall_s"] = float(previous.get("wall_s", 0.0)) + time.perf_counter() - start
        load = load_average()
        if load:
            state["environment"]["load average at the end"] = load
        _save_state(run_dir, state)
        md, _ = write_report(run_dir, state)
        latest = link_latest(run_dir)
    if failed:
        nb, entry = failed
        print(f"\nreproduce: FAILED in {nb} at cell {entry.get('cell')}: {entry.get('error')}\n"
              f"{entry.get('traceback', '')}\nexecuted copy (traceback in place): {entry['executed']}\n"
              f"continue after fixing: m2s reproduce --resume {run_dir}", file=sys.stderr)
        return 1
    print(f"reproduce: done in {clock(state['wall_s'])}; report {md} (and REPORT.html); {latest} -> {run_dir.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
