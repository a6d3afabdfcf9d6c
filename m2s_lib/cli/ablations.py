"""``m2s ablations``: the paper's Tables 9–11 as a seeded study with confidence intervals.

    m2s ablations run                                   # the default CPU study (make ablations), runs/ablations/cpu
    m2s ablations run --preset paper --data-root data/polyp --device cuda     # the full tables on a GPU
    m2s ablations run --seeds 0 1 2 3 4                 # add seeds to a finished study (finished runs are kept)
    m2s ablations run --preset budget --jobs 2          # M2SNet w/o L_f vs MSNet at 300-2400 steps (hours)
    m2s ablations report runs/ablations/cpu             # tables, verdicts and figure from the finished runs
    m2s ablations list                                  # variants and the paper's claims
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ..constants import runs_path
from . import non_negative_int, positive_int

__all__ = ["register", "run_ablations", "report_ablations", "list_ablations"]

DEFAULT_OUT = str(runs_path("ablations", "{preset}"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablations", help="seeded ablation study (Tables 9–11) with confidence intervals",
                       description=__doc__.splitlines()[0])
    s = p.add_subparsers(dest="ablations_command", metavar="ACTION")

    r = s.add_parser("run", help="train the unfinished (variant, seed) runs, then write the report")
    r.add_argument("--preset", default="cpu", help="cpu (default: 2 CPU cores; wall time in docs/ablations.md), early, paper, smoke; "
                   "budget (one comparison at several training budgets), budget-realistic, budget-smoke")
    r.add_argument("--profile", default=None, help="configuration profile (default: the preset's)")
    r.add_argument("--variants", nargs="+", default=None, help="variant keys (m2s ablations list)")
    r.add_argument("--seeds", nargs="+", type=non_negative_int, default=None, help="training seeds (default 0 1 2)")
    r.add_argument("--out", default=None, help="study folder (default runs/ablations/<preset>)")
    r.add_argument("--data-root", default=None, help="dataset root (default: the synthetic set of the preset)")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the profile's, auto)")
    r.add_argument("--jobs", type=positive_int, default=1, help="processes training runs side by side (default 1)")
    r.add_argument("--threads", type=positive_int, default=None, help="torch threads per process (default: cores / jobs)")
    r.add_argument("--reuse", nargs="+", default=None, metavar="FOLDER",
                   help="study folders whose runs of the same configuration are copied, not trained (default for "
                   "a budget preset: its base preset's folder, e.g. runs/ablations/cpu)")
    r.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides common to every variant")
    r.set_defaults(func=run_ablations)

    g = s.add_parser("report", help="write REPORT.md, summary.csv, comparisons.csv and ablations.png (a budget "
                     "study: REPORT.md, budget.csv and budget.png)")
    g.add_argument("out", help="study folder")
    g.set_defaults(func=report_ablations)

    ls = s.add_parser("list", help="the variants and the paper's claims")
    ls.set_defaults(func=list_ablations)


def _worker_argv(args: argparse.Namespace, out: str, threads: int) -> list[str]:
    argv = [sys.executable, "-m", "m2s_lib.cli", "ablations", "run", "--worker", "--no-progress",
            "--preset", args.preset, "--out", out, "--threads", str(threads)]
    for flag, value in (("--profile", args.profile), ("--data-root", args.data_root), ("--device", args.device)):
        if value:
            argv += [flag, value]
    if args.variants:
        argv += ["--variants", *args.variants]
    if args.seeds:
        argv += ["--seeds", *map(str, args.seeds)]
    if args.reuse:
        argv += ["--reuse", *args.reuse]
    return argv + (["--", *args.overrides] if args.overrides else [])  # after `--`: never read as variants or seeds


def _study_runner(args: argparse.Namespace, overrides: dict, out: str):
    """A callable that trains the chosen preset's study into ``out`` (a budget preset: one study per budget)."""
    from ..engine.study import run_study, study_spec
    from ..engine.study_budget import BUDGET_PRESETS, budget_specs, run_budget_study

    progress = not args.no_progress
    if args.preset in BUDGET_PRESETS:
        specs = budget_specs(args.preset, profile=args.profile, variants=args.variants, seeds=args.seeds,
                             overrides=overrides)
        reuse = args.reuse if args.reuse is not None else [DEFAULT_OUT.format(preset=BUDGET_PRESETS[args.preset].base)]
        return lambda: run_budget_study(args.preset, out, specs=specs, reuse=reuse, device=args.device,
                                        progress=progress)
    spec = study_spec(args.preset, profile=args.profile, variants=args.variants, seeds=args.seeds,
                      overrides=overrides)
    return lambda: run_study(spec, out, device=args.device, progress=progress, reuse=args.reuse or ())


def _write_report(out: str):
    """The report of the study in ``out`` (a budget study's own report when ``out`` holds one)."""
    from ..engine.study_budget import is_budget_study

    if is_budget_study(out):
        from ..engine.study_budget_report import write_budget_report

        return write_budget_report(out)
    from ..engine.study_report import write_report

    return write_report(out)


def run_ablations(args: argparse.Namespace) -> int:
    import torch

    from ..config import ConfigError, parse_overrides
    from ..engine.folder_lock import lock_folder
    from ..engine.study import StudyError

    jobs = max(1, int(args.jobs))
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    torch.set_num_threads(threads)
    out = args.out or DEFAULT_OUT.format(preset=args.preset)
    stray = [v for v in (args.variants or []) if "=" in v]
    if stray:
        print(f"m2s ablations: {stray[0]!r} looks like a KEY=VALUE override, not a variant: put overrides before "
              "--variants, or after `--`", file=sys.stderr)
        return 2
    try:
        overrides = dict(parse_overrides(args.overrides))
        if args.data_root:
            overrides["data.root"] = args.data_root
        run = _study_runner(args, overrides, out)
    except (ConfigError, StudyError) as err:
        print(f"m2s ablations: {err}", file=sys.stderr)
        return 2
    lock = None if args.worker else lock_folder(out, "m2s ablations run")  # noqa: F841 (held until this returns)
    children = []
    if jobs > 1 and not args.worker:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        children = [subprocess.Popen(_worker_argv(args, out, threads), env=env) for _ in range(jobs - 1)]
    try:
        run()
    except StudyError as err:
        print(f"m2s ablations: {err}", file=sys.stderr)
        return 2
    finally:
        codes = [c.wait() for c in children]
    if args.worker:
        return 0
    if any(codes):
        print(f"m2s ablations: a worker process failed (exit codes {codes}); run the same command again to "
              "finish the remaining runs", file=sys.stderr)
    paths = _write_report(out)
    print(f"report: {paths['markdown']}")
    return 1 if any(codes) else 0


def report_ablations(args: argparse.Namespace) -> int:
    paths = _write_report(args.out)
    print(paths["markdown"].read_text())
    return 0


def list_ablations(args: argparse.Namespace) -> int:
    from ..engine.study import COMPARISONS, PRESETS, VARIANTS
    from ..engine.study_budget import BUDGET_PRESETS

    print("variants (key: table, label, changes):")
    for v in VARIANTS.values():
        changes = ", ".join(f"{k}={x}" for k, x in v.overrides.items())
        print(f"  {v.key:<22} {v.table:<9} {v.label}  [{changes}]")
    print("claims (variant − baseline, the paper's sign):")
    for c in COMPARISONS:
        sign = {1: ">", -1: "<", 0: "≈"}[c.direction]
        print(f"  {c.table:<10} {c.variant} {sign} {c.baseline}: {c.claim}")
    print("presets: " + "; ".join(f"{k}: {', '.join(p['variants'])} × seeds {p['seeds']}" for k, p in PRESETS.items()))
    print("budget presets: " + "; ".join(f"{k}: {', '.join(b.variants)} × seeds {list(b.seeds)} at {list(b.steps)} "
                                         f"steps ({b.base} recipe)" for k, b in BUDGET_PRESETS.items()))
    return 0
