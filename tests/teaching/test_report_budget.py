"""REPORT.md's Ablations section shows the budget study (table, trend, figure, caveat) when runs/ablations has one."""
from __future__ import annotations

import pandas as pd

from m2s_lib.engine.study_budget import _write_budget_file, budget_folder, budget_specs
from m2s_lib.teaching import report


def _plant_budget_study(root):
    """A budget study folder with a planted runs.csv at 1 step (3 seeds) and nothing yet at 2 steps."""
    out = root / "ablations" / "budget"
    out.mkdir(parents=True)
    _write_budget_file(out, "budget", budget_specs("budget-smoke", seeds=[0, 1, 2]))  # smoke studies are skipped
    rows = [{"variant": key, "seed": s, "fingerprint": "x", "mDice": 0.8 + 0.01 * s - gap, "mIoU": 0.7 - gap,
             "MAE": 0.05, "steps": 1, "finished_utc": "2026-12-06T00:00:00Z"} for key, gap in (("msnet", 0.0), ("m2snet-nolf", 0.05)) for s in (0, 1, 2)]
    budget_folder(out, 1).mkdir()
    pd.DataFrame(rows).to_csv(budget_folder(out, 1) / "runs.csv", index=False)
    return out


def test_report_shows_the_budget_study(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setattr(report, "runs_path", lambda *parts: runs.joinpath(*parts))
    run_dir = tmp_path / "reproduce"
    run_dir.mkdir()
    assert report._budget_lines(run_dir) == []  # no budget study: nothing added
    out = _plant_budget_study(runs)
    (out / "budget.png").write_bytes(b"\x89PNG fake")
    text = "\n".join(report._budget_lines(run_dir))
    assert "budget study" in text and "-0.050 [-0.050, -0.050]" in text and "contradicted" in text
    assert "| pending" in text and "Only 1 steps can be read so far" in text and "teaching difficulty" in text
    assert (run_dir / "ablations_budget.png").read_bytes() == b"\x89PNG fake"
