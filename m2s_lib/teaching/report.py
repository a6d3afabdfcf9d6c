"""The reproduction's report: ``REPORT.md`` and a self-contained ``REPORT.html`` with the environment, the status
and time of each notebook, the polyp headline against the profile's target, and every figure and table the
notebooks saved (``outputs.json`` of :class:`m2s_lib.teaching.notebook_utils.NotebookOutputs`)."""
from __future__ import annotations

import base64
import html
import json
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..constants import repo_root, runs_path, shown_path
from .lockfile import lock_status

__all__ = ["TARGET_DICE", "clock", "environment", "load_average", "write_report"]

TARGET_DICE = {"tiny": 0.85}  # mean test Dice the profile's run is expected to reach (synthetic test sets)
ROOT = repo_root()


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def environment(device: str, profile: str, data_root: Path, data_info: Mapping[str, Any]) -> dict[str, Any]:
    """Versions, machine, threads, device, profile and data for the report header."""
    from ..engine.runtime import select_device
    from .notebook_utils import environment_report

    env = environment_report(select_device(device))
    from importlib.metadata import PackageNotFoundError, version

    for package in ("pandas", "matplotlib", "pysodmetrics", "papermill"):
        try:
            env[package] = version(package)
        except PackageNotFoundError:
            env[package] = "not installed"
    env["cpu"] = f"{_cpu_model()}, {os.cpu_count()} logical cores"
    env["working tree"] = _git_changes()
    env["install"] = lock_status()
    env["MKL_NUM_THREADS"] = os.environ.get("MKL_NUM_THREADS", "unset")
    load = load_average()
    if load:
        env["load average at the start (1/5/15 min)"] = load
    env["profile"] = profile
    if data_info.get("source") == "synthetic":
        env["data"] = (f"SYNTHETIC polyps in {shown_path(data_root)} ({data_info['synthetic_n']} training images, "
                       f"{data_info['synthetic_n_test']} per test set, {data_info['synthetic_size']} px, seed "
                       f"{data_info['synthetic_seed']}, {data_info['synthetic_difficulty']} "
                       "difficulty)")
    else:
        env["data"] = f"real polyp data in {shown_path(data_root)}"
    return env


def load_average() -> str | None:
    """``"1.26 / 1.34 / 1.43"`` (1, 5, 15 minutes), or ``None`` where the system does not tell."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_changes() -> str:
    import subprocess

    try:
        res = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                             text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if res.returncode != 0:
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in res.stdout.splitlines() if line.strip()]
    return "clean" if not changed else f"{len(changed)} modified tracked file(s): {', '.join(changed[:6])}"


def _read_outputs(folder: Path) -> list[dict]:
    index = folder / "outputs.json"
    if not index.is_file():
        return []
    try:
        return json.loads(index.read_text())
    except ValueError:
        return []


def _polyp_headline(run_dir: Path, profile: str, custom: bool = False) -> list[str]:
    import pandas as pd

    csv = run_dir / "07_evaluation" / "polyp_results.csv"
    if not csv.is_file():
        return ["_No polyp table: notebook 07 did not run or did not finish._", ""]
    res = pd.read_csv(csv)
    n = res["n"].sum()
    pooled = float((res["mDice"] * res["n"]).sum() / n)
    lines = []
    md = (run_dir / "07_evaluation" / "polyp_results.md")
    lines.append(md.read_text().strip() if md.is_file() else res.to_markdown(index=False))
    lines.append("")
    verdict = f"**Mean Dice over all {int(n)} test images: {pooled:.4f}** (PraNet protocol)."
    target = TARGET_DICE.get(profile)
    if target is not None and custom:
        verdict += (f" (The target of profile `{profile}`, ≥ {target}, applies to its own settings; this run changed "
                    "notebook parameters, so it is not checked.)")
    elif target is not None:
        verdict += f" Target for profile `{profile}`: ≥ {target} — **{'met' if pooled >= target else 'NOT met'}**."
    lines += [verdict, ""]
    return lines


ABLATION_SMOKE_NOTE = ("> **Smoke run — not evidence.** `make reproduce` runs notebook 09 with the `smoke` preset (one "
                       "training step per run) to check that the study works; its numbers say nothing about the paper's "
                       "claims. The evidence is `make ablations` (section *Ablations* above shows its latest results).")


def _ablation_lines() -> list[str]:
    """The latest `make ablations` study (``runs/ablations``): per-variant table and the paper's claims."""
    from ..engine.study_report import comparison_lines, latest_study, study_tables, wide_summary

    where = latest_study(runs_path("ablations"))
    if where is None:
        return ["_No `make ablations` study in runs/ablations yet: run `make ablations` (its wall time: docs/ablations.md) "
                "for Tables 9–11 with seeds and confidence intervals._", ""]
    from ..engine.study import read_results

    summary, comparisons = study_tables(read_results(where))
    lines = [f"Latest `make ablations` study: `{where}` (its REPORT.md has the scale, the early-training probe and "
             "the figure). Mean ± sd [95 % CI] over seeds; claims as paired differences with verdicts.", "",
             wide_summary(summary).to_markdown(index=False), ""]
    if len(comparisons):
        lines += [comparison_lines(comparisons).to_markdown(index=False), ""]
    return lines


def _budget_lines(run_dir: Path) -> list[str]:
    """The budget study under ``runs/ablations`` (M2SNet w/o L_f − MSNet by training budget), when there is one: its
    table, trend sentence, caveat, and its figure copied into ``run_dir``."""
    import shutil

    from ..engine.study_budget_report import (
        CAVEAT,
        budget_tables,
        budget_verdict_table,
        latest_budget_study,
        trend_sentence,
    )

    where = latest_budget_study(runs_path("ablations"))
    if where is None:
        return []
    t = budget_tables(where)
    lines = ["### Does the gap close with training? (budget study)", "",
             f"Study `{shown_path(where)}` (`m2s ablations run --preset budget --jobs 2`; its REPORT.md has the "
             "details): "
             f"{t.info['variant']} − {t.info['baseline']}, paired over seeds, at each training budget.", "",
             budget_verdict_table(t).to_markdown(index=False), "", f"**Trend (mDice).** {trend_sentence(t)}", ""]
    if (where / "budget.png").is_file():
        shutil.copyfile(where / "budget.png", run_dir / "ablations_budget.png")
        lines += ["![budget study](ablations_budget.png)", ""]
    return lines + [CAVEAT, ""]


def write_report(run_dir: Path, state: Mapping[str, Any]) -> tuple[Path, Path]:
    """``REPORT.md`` and a self-contained ``REPORT.html`` in ``run_dir`` from the run's state and outputs."""
    env = state.get("environment", {})
    notebooks = state.get("notebooks", {})
    ok = all(v.get("status") in ("ok", "skipped") for v in notebooks.values()) and notebooks
    lines = [f"# M2SNet reproduction — profile `{state.get('profile')}`", ""]
    lines += [f"Run folder `{run_dir}`, started {state.get('started')}, wall time "
              f"{clock(state.get('wall_s', 0.0))} — **{'complete' if ok else 'INCOMPLETE'}**.", ""]
    lines += ["## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in env.items()]
    lines += ["", "## Notebooks", "", "| notebook | status | time | executed copy |", "|---|---|---|---|"]
    for name, info in notebooks.items():
        status = info.get("status", "?")
        if status == "failed":
            status = f"**FAILED** in cell {info.get('cell')}: {info.get('error', '')}".replace("|", "/")[:300]
        elif status == "interrupted":
            status = "**interrupted**"
        lines.append(f"| {name} | {status} | {clock(info.get('seconds', 0.0))} | [{name}]({name}) |")
    lines += ["", "## Polyp results (notebook 07)", ""]
    lines += _polyp_headline(run_dir, state.get("profile", ""), custom=bool(state.get("custom_parameters")))
    lines += ["## Ablations (Tables 9–11)", ""] + _ablation_lines() + _budget_lines(run_dir)
    for name, info in notebooks.items():
        stem = Path(name).stem
        lines += [f"## {stem}", ""] + ([ABLATION_SMOKE_NOTE, ""] if stem == "09_ablations" else [])
        params = info.get("parameters", {})
        if params:
            lines.append("Parameters: " + ", ".join(f"`{k}={v!r}`" for k, v in params.items()))
            lines.append("")
        if info.get("status") == "failed":
            lines += [f"**Failed** in cell {info.get('cell')}: `{info.get('error', '')}` — executed copy with the "
                      f"traceback in place: `{info.get('executed')}`", ""]
        for item in _read_outputs(run_dir / stem):
            caption = item.get("caption") or item.get("name")
            files = item.get("files", [])
            if item.get("kind") == "figure" and files:
                lines += [f"**{caption}**", "", f"![{caption}]({stem}/{files[0]})", ""]
            elif item.get("kind") == "table":
                md = next((run_dir / stem / f for f in files if f.endswith(".md")), None)
                if md is not None and md.is_file():
                    lines += [md.read_text().strip(), ""]
    text = "\n".join(lines).rstrip() + "\n"
    md_path = write_text(run_dir / "REPORT.md", text)
    html_path = write_text(run_dir / "REPORT.html", _to_html(text, run_dir, f"M2SNet reproduction — {state.get('profile')}"))
    return md_path, html_path


def _inline_images(body: str, run_dir: Path) -> str:
    def repl(m: re.Match) -> str:
        src = html.unescape(m.group(2))
        path = run_dir / src
        if path.is_file() and path.suffix.lower() == ".png":
            data = base64.b64encode(path.read_bytes()).decode()
            return f'{m.group(1)}"data:image/png;base64,{data}"'
        return m.group(0)

    return re.sub(r'(<img[^>]*?src=)"([^"]+)"', repl, body)


def _to_html(markdown_text: str, run_dir: Path, title: str) -> str:
    try:
        import mistune

        body = mistune.create_markdown(plugins=["table"])(markdown_text)
    except Exception:  # noqa: BLE001 — without mistune the report is still readable
        body = f"<pre>{html.escape(markdown_text)}</pre>"
    body = _inline_images(body, run_dir)
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:0.5em 0;font-size:0.85em}td,th{border:1px solid #ccc;"
             "padding:2px 6px}img{max-width:100%}code{background:#f4f4f4}")  # fmt: skip
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")
