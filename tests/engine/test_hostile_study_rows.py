"""Damaged study tables (issue 22, round 3): a runs.csv row cut short (inside its mDice) was trusted, so
`m2s ablations run` said '0 to train' and REPORT.md used the cut value; a junk runs.csv gave a raw pandas error."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hostile_support import m2s

from m2s_lib.engine.study import StudyError, _pending, fingerprint, read_results, study_spec, variant_config


def _finished_study(out: Path) -> tuple:
    """runs.csv of the smoke preset with every run finished (fingerprints as the study computes them)."""
    spec = study_spec("smoke")
    rows = []
    for key in spec.variants:
        for seed in spec.seeds:
            fp = fingerprint(variant_config(spec, key, seed), spec.stop_after_epoch)
            rows.append({"variant": key, "seed": seed, "fingerprint": fp, "mDice": 0.0396 + seed / 1000, "mIoU": 0.02,
                         "MAE": 0.3, "n_test": 4, "Dice Kvasir": 0.04, "steps": 2, "train_s": 1.5, "eval_s": 0.5,
                         "cpu_s": 2.0, "threads": 1, "load_1min": 0.5, "finished_utc": "2026-12-06T04:00:00Z"})
    out.mkdir(parents=True)
    (out / "runs.csv").write_text(pd.DataFrame(rows).to_csv(index=False))
    return spec, rows


def test_a_row_cut_inside_its_mdice_is_moved_aside_and_trained_again(tmp_path, capsys):
    out = tmp_path / "study"
    spec, rows = _finished_study(out)
    text = (out / "runs.csv").read_text()
    cut = text.rindex(f"{rows[-1]['mDice']}") + 4  # '...,0.03' where the true value was 0.0406
    (out / "runs.csv").write_text(text[:cut])
    pending = [(k, s) for k, s, _, _ in _pending(spec, read_results(out), spec.variants, spec.seeds)]
    assert pending == [(rows[-1]["variant"], rows[-1]["seed"])]
    err = capsys.readouterr()
    said = [ln for ln in (err.out + err.err).splitlines() if "superseded.csv" in ln]
    assert len(said) == 1 and "damaged" in said[0] and f"{rows[-1]['variant']} seed {rows[-1]['seed']}" in said[0]
    assert len(read_results(out)) == len(rows) - 1
    moved = pd.read_csv(out / "superseded.csv")
    assert len(moved) == 1 and moved["variant"].iloc[0] == rows[-1]["variant"]


@pytest.mark.parametrize("damage", ["nan mDice", "inf MAE", "no finished_utc", "missing column value"])
def test_rows_with_missing_or_non_finite_values_are_not_trusted(damage, tmp_path, capsys):
    out = tmp_path / "study"
    spec, rows = _finished_study(out)
    df = pd.read_csv(out / "runs.csv")
    column = {"nan mDice": "mDice", "inf MAE": "MAE", "no finished_utc": "finished_utc", "missing column value": "steps"}
    df[column[damage]] = df[column[damage]].astype(object)
    df.loc[0, column[damage]] = {"nan mDice": float("nan"), "inf MAE": float("inf")}.get(damage, None)
    (out / "runs.csv").write_text(df.to_csv(index=False))
    pending = [(k, s) for k, s, _, _ in _pending(spec, read_results(out), spec.variants, spec.seeds)]
    assert pending == [(rows[0]["variant"], rows[0]["seed"])]


@pytest.mark.parametrize("junk", ["\x00\x01binary\xff", 'a,b\n1,2,3,4\n"unclosed', "variant;seed\nm2snet;0\n"])
def test_a_junk_runs_csv_is_one_clear_line(junk, tmp_path, capsys):
    from m2s_lib.engine.study import _prepare_folder

    out = tmp_path / "study"
    out.mkdir()
    _prepare_folder(out, study_spec("smoke"))  # study.yaml: a study folder whose table is junk
    (out / "runs.csv").write_bytes(junk.encode("latin-1"))
    with pytest.raises(StudyError, match="runs.csv"):
        read_results(out)
    code, _, err = m2s(capsys, "ablations", "report", out)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0 and len(lines) == 1 and "runs.csv" in lines[0] and "Tokeniz" not in lines[0], err


@pytest.mark.parametrize("fp", ["0922e9652208", "1234e5", "00012345678"])
def test_a_fingerprint_that_reads_as_a_number_stays_text(fp, tmp_path):
    """The budget study's msnet seed 0 at 1200 steps hashed to '0922e9652208'. A reader without dtype=str took it
    for 922·10^9652208, wrote 'inf' back, and the finished run no longer matched: it would have been trained again
    (40 CPU-minutes)."""
    from m2s_lib.engine.study import _append_row, _finished

    out = tmp_path / "study"
    out.mkdir()
    row = {"variant": "msnet", "seed": 0, "fingerprint": fp, "mDice": 0.9, "mIoU": 0.8, "MAE": 0.01, "n_test": 4,
           "steps": 2, "train_s": 1.0, "eval_s": 0.5, "cpu_s": 1.5, "threads": 1, "load_1min": 0.5,
           "finished_utc": "2026-12-06T04:00:00Z"}
    _append_row(out, row)
    _append_row(out, {**row, "seed": 1, "fingerprint": "04762fd3e9ce"})  # the second write re-reads the first row
    assert (out / "runs.csv").read_text().splitlines()[1].split(",")[2] == fp
    assert ("msnet", 0, fp) in _finished(read_results(out))
    _append_row(out, {**row, "fingerprint": "5feee3523ce9"})  # seed 0 trained again: its row is kept
    _append_row(out, {**row, "seed": 1, "fingerprint": "5feee3523ce8"})  # seed 1 too: superseded.csv is re-read
    assert pd.read_csv(out / "superseded.csv", dtype=str)["fingerprint"].tolist() == [fp, "04762fd3e9ce"]
