"""The ablation study: statistics against hand-computed values, verdicts, paired batches, resume, report."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from m2s_lib.engine import study as study_mod
from m2s_lib.engine.stats import (
    CONTRADICTED,
    NOT_RESOLVED,
    SUPPORTED,
    paired_difference,
    summarise,
    t_interval,
    verdict,
)
from m2s_lib.engine.study import COMPARISONS, VARIANTS, StudyError, read_results, run_study, study_spec

T_975_2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom (tables: 4.303)

# A fixed table of fake scores: three seeds of two variants.
FAKE = pd.DataFrame({
    "variant": ["m2snet"] * 3 + ["msnet"] * 3,
    "seed": [0, 1, 2, 0, 1, 2],
    "mDice": [0.80, 0.82, 0.84, 0.70, 0.75, 0.71],
    "MAE": [0.050, 0.040, 0.030, 0.060, 0.050, 0.040],
})


def test_t_interval_by_hand():
    # m2snet: mean 0.82; deviations −0.02, 0, +0.02 → var = 0.0008 / 2 = 0.0004, sd 0.02; se = 0.02/√3 = 0.0115470
    # half-width = 4.302653 × 0.0115470 = 0.0496828
    r = t_interval([0.80, 0.82, 0.84])
    assert r["n"] == 3
    assert r["mean"] == pytest.approx(0.82, abs=1e-12)
    assert r["sd"] == pytest.approx(0.02, abs=1e-12)
    assert r["lo"] == pytest.approx(0.82 - 0.0496828, abs=1e-6)
    assert r["hi"] == pytest.approx(0.82 + 0.0496828, abs=1e-6)


def test_summarise_fake_table():
    s = summarise(FAKE, ["mDice"]).set_index("variant")
    # msnet: mean 0.72; deviations −0.02, +0.03, −0.01 → var = 0.0014 / 2 = 0.0007, sd = 0.0264575
    assert s.loc["msnet", "mean"] == pytest.approx(0.72, abs=1e-12)
    assert s.loc["msnet", "sd"] == pytest.approx(math.sqrt(0.0007), abs=1e-12)
    half = T_975_2 * math.sqrt(0.0007) / math.sqrt(3)  # = 0.0657241
    assert half == pytest.approx(0.0657241, abs=1e-7)
    assert s.loc["msnet", "hi"] - s.loc["msnet", "mean"] == pytest.approx(half, abs=1e-9)


def test_paired_difference_by_hand():
    # m2snet − msnet per seed: +0.10, +0.07, +0.13 → mean 0.10, sd 0.03, se 0.0173205, half 0.0745241
    d = paired_difference(FAKE, "m2snet", "msnet", "mDice")
    assert d["seeds"] == [0, 1, 2]
    assert d["mean"] == pytest.approx(0.10, abs=1e-12)
    assert d["sd"] == pytest.approx(0.03, abs=1e-12)
    assert (d["lo"], d["hi"]) == pytest.approx((0.10 - 0.0745241, 0.10 + 0.0745241), abs=1e-6)
    assert verdict(d["lo"], d["hi"], +1) == SUPPORTED
    # The paired interval is narrower than the unpaired spreads suggest: sd of the differences 0.03 vs the two
    # variants' own sds 0.02 and 0.026 would give a Welch-type se of sqrt(0.0004/3 + 0.0007/3) = 0.0191.
    # MAE: m2snet − msnet = −0.01 at every seed → sd 0, interval [−0.01, −0.01]: lower MAE is the paper's side.
    m = paired_difference(FAKE, "m2snet", "msnet", "MAE")
    assert m["mean"] == pytest.approx(-0.01, abs=1e-12) and m["sd"] == pytest.approx(0.0, abs=1e-12)
    assert verdict(m["lo"], m["hi"], +1, metric="MAE") == SUPPORTED


def test_paired_difference_uses_shared_seeds_only():
    partial = FAKE[~((FAKE["variant"] == "msnet") & (FAKE["seed"] == 2))]
    d = paired_difference(partial, "m2snet", "msnet", "mDice")
    # seeds 0 and 1: +0.10, +0.07 → mean 0.085, sd = 0.03/√2 = 0.0212132, t(0.975, 1) = 12.7062
    assert d["seeds"] == [0, 1] and d["n"] == 2
    assert d["mean"] == pytest.approx(0.085, abs=1e-12)
    assert d["hi"] - d["mean"] == pytest.approx(12.706204736 * (0.03 / math.sqrt(2)) / math.sqrt(2), abs=1e-6)


def test_one_seed_has_no_interval_and_no_verdict():
    r = t_interval([0.5])
    assert r["n"] == 1 and math.isnan(r["sd"]) and math.isnan(r["lo"])
    assert verdict(r["lo"], r["hi"], +1) == NOT_RESOLVED


@pytest.mark.parametrize("lo, hi, direction, metric, expected", [
    (0.01, 0.05, +1, "mDice", SUPPORTED),
    (-0.05, -0.01, +1, "mDice", CONTRADICTED),
    (-0.01, 0.05, +1, "mDice", NOT_RESOLVED),
    (-0.05, -0.01, -1, "mDice", SUPPORTED),
    (0.01, 0.05, +1, "MAE", CONTRADICTED),  # a higher MAE is worse: the paper's "better" means lower MAE
    (-0.004, 0.006, 0, "mDice", SUPPORTED),  # "close": inside ±0.01
    (-0.02, 0.006, 0, "mDice", NOT_RESOLVED),
    (0.002, 0.006, 0, "mDice", CONTRADICTED),
])
def test_verdict_words(lo, hi, direction, metric, expected):
    assert verdict(lo, hi, direction, metric) == expected


def test_variants_are_faithful_rows():
    assert VARIANTS["m2snet"].overrides["loss.lossnet_weight"] == 0.1  # the reference row trains with L_f
    assert VARIANTS["m2snet-nolf"].overrides["loss.lossnet_weight"] == 0.0
    lf_alone = VARIANTS["m2snet-lfonly"]
    assert lf_alone.overrides["loss.structure_weight"] == 0.0 and lf_alone.overrides["loss.lossnet_weight"] == 0.1
    keys = set(VARIANTS)
    for c in COMPARISONS:
        assert {c.variant, c.baseline} <= keys, c
    spec = study_spec("cpu")
    assert {"fpn", "msnet", "au", "m2snet", "m2snet-nolf"} <= set(spec.variants) and len(spec.seeds) >= 3


def test_bad_study_settings_are_one_clear_line():
    with pytest.raises(StudyError, match="unknown variant"):
        study_spec("cpu", variants=["m2snet", "m3snet"])
    with pytest.raises(StudyError, match="unknown study preset 'gpu'"):
        study_spec("gpu")
    with pytest.raises(StudyError, match="repeat"):
        study_spec("cpu", seeds=[0, 0])


def _tiny_spec(tmp_path, variants=("msnet", "m2snet"), seeds=(0, 1)):
    return study_spec("smoke", variants=list(variants), seeds=list(seeds),
                      overrides={"data.synthetic_dir": str(tmp_path / "data")})


def test_resume_never_retrains_a_finished_run(tmp_path, monkeypatch):
    """An interrupted study continues at its first unfinished run; finished runs are never trained again."""
    calls: list[tuple[str, int]] = []

    def fake(key, seed, cfg, spec, out):
        if len(calls) == 2 and not getattr(fake, "interrupted", False):
            fake.interrupted = True
            raise KeyboardInterrupt  # the third run is interrupted
        calls.append((key, seed))
        return {"variant": key, "seed": seed, "mDice": 0.5 + 0.01 * len(calls), "mIoU": 0.4, "MAE": 0.1,
                "steps": 1, "train_s": 0.0, "eval_s": 0.0, "load_1min": 0.0, "finished_utc": "2026-12-06T00:00:00Z"}

    monkeypatch.setattr(study_mod, "train_and_score", fake)
    spec = _tiny_spec(tmp_path)
    out = tmp_path / "study"
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, out, progress=False, log=lambda m: None)
    first = read_results(out)
    # variant by variant, all seeds each: a study stopped early holds complete paired comparisons
    assert list(zip(first["variant"], first["seed"])) == [("msnet", 0), ("msnet", 1)]
    assert not list((out / "claims").glob("*.pid"))  # the interrupted run's claim was released
    run_study(_tiny_spec(tmp_path), out, progress=False, log=lambda m: None)
    assert calls == [("msnet", 0), ("msnet", 1), ("m2snet", 0), ("m2snet", 1)]
    final = read_results(out)
    pd.testing.assert_frame_equal(final.iloc[:2], first)  # rows of finished runs are kept as they were
    run_study(_tiny_spec(tmp_path), out, progress=False, log=lambda m: None)
    assert len(calls) == 4  # nothing left to train


def test_a_run_of_an_older_fingerprint_is_replaced_not_doubled(tmp_path, monkeypatch):
    """A row trained under another fingerprint (earlier code or seeding) is retrained; its old row moves to
    superseded.csv, so runs.csv keeps one row per (variant, seed) and the report still works."""
    from m2s_lib.engine.study_report import study_tables

    def fake(key, seed, cfg, spec, out):
        return {"variant": key, "seed": seed, "mDice": 0.6, "mIoU": 0.4, "MAE": 0.1, "steps": 1, "train_s": 0.0,
                "eval_s": 0.0, "load_1min": 0.0, "finished_utc": "2026-12-06T00:00:00Z"}

    monkeypatch.setattr(study_mod, "train_and_score", fake)
    out = tmp_path / "study"
    run_study(_tiny_spec(tmp_path), out, progress=False, log=lambda m: None)
    stale = read_results(out)
    stale.loc[0, "fingerprint"], stale.loc[0, "mDice"] = "0123456789ab", 0.1  # msnet seed 0, an older scheme
    (out / "runs.csv").write_text(stale.to_csv(index=False))
    run_study(_tiny_spec(tmp_path), out, progress=False, log=lambda m: None)
    now = read_results(out)
    assert len(now) == 4 and not now.duplicated(["variant", "seed"]).any()
    assert now.set_index(["variant", "seed"]).loc[("msnet", 0), "mDice"] == 0.6
    assert list(pd.read_csv(out / "superseded.csv")["fingerprint"]) == ["0123456789ab"]
    study_tables(now)


def test_other_settings_in_the_same_folder_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(study_mod, "train_and_score", lambda *a: pytest.fail("must not train"))
    out = tmp_path / "study"
    spec = _tiny_spec(tmp_path)
    study_mod._prepare_folder(out.resolve() if out.exists() else (out.mkdir() or out), spec)
    other = study_spec("smoke", variants=["msnet"], seeds=[0], overrides={"optim.epochs": 2})
    with pytest.raises(StudyError, match=r"other settings \(optim.epochs\).*another --out"):
        run_study(other, out, progress=False, log=lambda m: None)


def test_same_seed_same_batches_across_variants(tmp_path):
    """The trainer seeds each epoch's order, augmentations and sizes itself: two different networks (whose builds
    leave the global RNG in different states) see identical batches for the same seed, other batches for another."""
    import torch

    from m2s_lib.engine.trainer import Trainer

    spec = _tiny_spec(tmp_path)

    def first_batch(key, seed, epoch=0):
        cfg = study_mod.variant_config(spec, key, seed)
        trainer = Trainer(cfg, None, log=lambda m: None)
        torch.rand(1000)  # whatever ran in between (plots, evaluation) must not change the batches
        return next(iter(trainer.train_loader(epoch)))["image"]

    reference = first_batch("m2snet", 3)
    assert torch.equal(first_batch("fpn", 3), reference)
    assert not torch.equal(first_batch("fpn", 4), reference)
    assert not torch.equal(first_batch("m2snet", 3, epoch=1), reference)


def test_fingerprint_names_the_data_scheme(tmp_path, monkeypatch):
    """Runs trained under another seeding scheme are not reused: the scheme is part of the fingerprint."""
    from m2s_lib.engine import trainer as trainer_mod
    from m2s_lib.engine.study import fingerprint, variant_config

    cfg = variant_config(_tiny_spec(tmp_path), "m2snet", 0)
    before = fingerprint(cfg)
    monkeypatch.setattr(trainer_mod, "DATA_SCHEME", trainer_mod.DATA_SCHEME + " (changed)")
    assert fingerprint(cfg) != before


def test_tiny_real_study_and_report(tmp_path):
    """One real run at 32 px (a few seconds): scores, per-step probe and the report files."""
    from m2s_lib.engine.study_report import write_report

    out = tmp_path / "study"
    df = run_study(_tiny_spec(tmp_path, variants=("m2snet",), seeds=(0,)), out, progress=False, log=lambda m: None)
    assert list(df["variant"]) == ["m2snet"] and df["steps"].iloc[0] == 1
    assert 0.0 <= df["mDice"].iloc[0] <= 1.0 and df["n_test"].iloc[0] == 10
    steps = pd.read_csv(out / "steps" / "m2snet-s0.csv")
    assert list(steps["step"]) == [0, 1]
    assert {"dice_eval", "dice_batch", "term1_batch", "term3_batch", "term5_batch"} <= set(steps.columns)
    paths = write_report(out)
    text = paths["markdown"].read_text()
    assert "PARTIAL" not in text and "RANDOM frozen VGG-16" in text and "seeds" in text
    assert paths["figure"].stat().st_size > 1000


def test_cut_runs_have_their_own_fingerprint_and_are_not_the_latest_study(tmp_path):
    from m2s_lib.engine.study import _prepare_folder, fingerprint, variant_config
    from m2s_lib.engine.study_report import latest_study

    full, early = study_spec("cpu"), study_spec("early")
    cfg = variant_config(full, "msnet", 0)
    assert variant_config(early, "msnet", 0).to_dict() == cfg.to_dict()  # same run, cut after epoch 2
    assert fingerprint(cfg) != fingerprint(cfg, stop_after_epoch=early.stop_after_epoch)
    for name, spec in (("cpu", full), ("early", early), ("smoke", study_spec("smoke"))):
        (tmp_path / name).mkdir()
        _prepare_folder(tmp_path / name, spec)
        (tmp_path / name / "runs.csv").write_text("variant,seed,fingerprint\n")
    assert latest_study(tmp_path) == tmp_path / "cpu"  # the early and smoke studies are newer but skipped


def test_early_tables_keep_the_longest_run(tmp_path):
    from m2s_lib.engine.study_report import early_tables

    for folder, steps in (("a", [0, 1, 2]), ("b", [0, 1, 2, 3, 4])):
        (tmp_path / folder / "steps").mkdir(parents=True)
        pd.DataFrame({"step": steps, "loss": [float(s) for s in steps]}).to_csv(
            tmp_path / folder / "steps" / "msnet-s0.csv", index=False)
    both = early_tables([tmp_path / "a", None, tmp_path / "b"])
    assert list(both["step"]) == [0, 1, 2, 3, 4] and set(both["variant"]) == {"msnet"}


def test_worker_processes_get_the_same_variants_seeds_and_overrides():
    """`--jobs 2` starts workers with the same study: overrides after `--` are not swallowed by --variants."""
    from m2s_lib.cli import build_parser
    from m2s_lib.cli.ablations import _worker_argv

    args = build_parser().parse_args(["ablations", "run", "--preset", "early", "model.kernel_sizes=[1,3]",
                                      "--variants", "m2snet-nolf", "msnet", "--seeds", "0", "2"])
    worker = build_parser().parse_args(_worker_argv(args, "runs/x", 1)[3:])
    assert (worker.variants, worker.seeds, worker.overrides) == (["m2snet-nolf", "msnet"], [0, 2],
                                                                 ["model.kernel_sizes=[1,3]"])
    assert worker.worker and worker.out == "runs/x"


def test_override_typed_among_variants_is_named(capsys):
    from m2s_lib.cli import main

    assert main(["ablations", "run", "--preset", "smoke", "--variants", "msnet", "model.kernel_sizes=[1,3]"]) == 2
    assert "looks like a KEY=VALUE override" in capsys.readouterr().err


def test_lf_alone_is_a_loss_setting_that_reaches_the_trainer(tmp_path):
    """Table 10's last row is `loss.structure_weight: 0` in the config: the trainer's criterion gets it, and the
    fingerprint tells it from the full loss."""
    from m2s_lib.engine.study import fingerprint
    from m2s_lib.engine.trainer import Trainer

    spec = _tiny_spec(tmp_path, variants=("m2snet", "m2snet-lfonly"))
    alone = study_mod.variant_config(spec, "m2snet-lfonly", 0)
    full = study_mod.variant_config(spec, "m2snet", 0)
    assert (alone.loss.structure_weight, full.loss.structure_weight) == (0.0, 1.0)
    assert Trainer(alone, None, log=lambda m: None).criterion.structure_weight == 0.0
    assert fingerprint(alone) != fingerprint(full)


# ---------------------------------------------------------------------------------------------------------------
# The budget study: one comparison at several training budgets
# ---------------------------------------------------------------------------------------------------------------
def _budget_specs(tmp_path, seeds=(0, 1)):
    from m2s_lib.engine.study_budget import budget_specs

    return budget_specs("budget-smoke", seeds=list(seeds), overrides={"data.synthetic_dir": str(tmp_path / "data")})


def test_budget_preset_is_the_cpu_recipe_with_more_epochs():
    """300/600/1200/2400 steps = 6/12/24/48 epochs of the cpu study; the 300-step runs ARE the cpu study's runs
    (same fingerprint: reusable), the longer ones differ only in optim.epochs."""
    from m2s_lib.engine.study import fingerprint, variant_config
    from m2s_lib.engine.study_budget import budget_specs

    specs = dict(budget_specs("budget"))
    assert {s: spec.overrides["optim.epochs"] for s, spec in specs.items()} == {300: 6, 600: 12, 1200: 24, 2400: 48}
    cpu = study_spec("cpu")
    for key in ("msnet", "m2snet-nolf"):
        assert fingerprint(variant_config(specs[300], key, 1)) == fingerprint(variant_config(cpu, key, 1))
        long = variant_config(specs[2400], key, 1).to_dict()
        short = variant_config(cpu, key, 1).to_dict()
        assert long["optim"].pop("epochs") == 48 and short["optim"].pop("epochs") == 6 and long == short
    with pytest.raises(StudyError, match="not a whole number of epochs of 50 steps"):
        budget_specs("budget", steps=[300, 310])
    realistic = dict(budget_specs("budget-realistic"))  # the same runs on the realistic level
    assert sorted(realistic) == [1200, 2400]
    other = variant_config(realistic[1200], "msnet", 1).to_dict()
    assert other["data"].pop("synthetic_difficulty") == "realistic"
    same = variant_config(specs[1200], "msnet", 1).to_dict()
    assert same["data"].pop("synthetic_difficulty") == "teaching" and other == same


@pytest.mark.parametrize("n, batch, cap", [(8, 8, 1), (9, 4, 0), (10, 4, 0)])
def test_budget_steps_per_epoch_is_the_trainers(tmp_path, n, batch, cap):
    """The budget's epochs come from the configuration alone: the same count as the trainer's (a trailing batch of
    one image dropped, the per-epoch cap)."""
    from m2s_lib.engine.study_budget import steps_per_epoch
    from m2s_lib.engine.trainer import Trainer

    cfg = study_mod.variant_config(_tiny_spec(tmp_path), "msnet", 0).override(
        {"data.synthetic_n": n, "optim.batch_size": batch, "run.max_steps_per_epoch": cap})
    assert steps_per_epoch(cfg) == Trainer(cfg, None, log=lambda m: None).steps_per_epoch


def test_each_budget_is_exactly_paired(tmp_path):
    """At every budget both variants of a seed see the same batches, every step of the run; another seed sees
    other batches; a longer budget starts with the shorter budget's batches (same seed, same epochs)."""
    import torch

    from m2s_lib.engine.trainer import Trainer

    def batches(spec, key, seed):
        trainer = Trainer(study_mod.variant_config(spec, key, seed), None, log=lambda m: None)
        torch.rand(1000)  # whatever ran in between must not change the batches
        out = [b["image"] for e in range(trainer.config.optim.epochs) for b in trainer.train_loader(e)]
        assert len(out) == trainer.steps_per_epoch * trainer.config.optim.epochs
        return out

    seen = {}
    for steps, spec in _budget_specs(tmp_path):
        for seed in spec.seeds:
            ref = batches(spec, "msnet", seed)
            assert len(ref) == steps
            other = batches(spec, "m2snet-nolf", seed)
            assert all(torch.equal(a, b) for a, b in zip(ref, other, strict=True)), (steps, seed)
            for earlier in seen.get(seed, []):
                assert all(torch.equal(a, b) for a, b in zip(earlier, ref))
            seen.setdefault(seed, []).append(ref)
        assert not torch.equal(seen[0][-1][0], seen[1][-1][0])


def _fake_budget_run(calls):
    """A fake train_and_score: MSNet 0.80 (+0.01 per seed); M2SNet w/o L_f below it by 0.09 at 1 step, 0.02 at 2
    steps (± 0.005 per seed); the same gaps in mIoU."""
    def fake(key, seed, cfg, spec, out):
        calls.append((cfg.optim.epochs, key, seed))
        gap = {1: 0.09, 2: 0.02}[cfg.optim.epochs] - 0.005 * (seed - 1) if key == "m2snet-nolf" else 0.0
        base = 0.80 + 0.01 * seed
        return {"variant": key, "seed": seed, "mDice": base - gap, "mIoU": base - 0.1 - gap, "MAE": 0.05,
                "steps": cfg.optim.epochs, "train_s": 10.0, "eval_s": 1.0, "cpu_s": 11.0, "load_1min": 1.0,
                "finished_utc": "2026-12-06T00:00:00Z"}
    return fake


def test_budget_study_reuses_runs_of_the_same_fingerprint(tmp_path, monkeypatch):
    """A budget whose runs exist in another study folder with the same fingerprint copies them (rows and step
    logs) instead of training them; the other budgets are trained, smaller budget first."""
    from m2s_lib.engine.study_budget import budget_folder, run_budget_study

    calls: list = []
    monkeypatch.setattr(study_mod, "train_and_score", _fake_budget_run(calls))
    specs = _budget_specs(tmp_path)
    source = tmp_path / "cpu"
    run_study(specs[0][1], source, progress=False, log=lambda m: None)
    (source / "steps").mkdir(exist_ok=True)
    (source / "steps" / "msnet-s0.csv").write_text("step,loss\n0,1.0\n")
    calls.clear()
    out = tmp_path / "budget"
    run_budget_study("budget-smoke", out, specs=specs, reuse=[source, tmp_path / "absent"], progress=False,
                     log=lambda m: None)
    assert [c[0] for c in calls] == [2, 2, 2, 2]  # budget 1 copied, budget 2 trained
    copied = read_results(budget_folder(out, 1))
    assert len(copied) == 4 and set(copied["reused_from"]) == {str(source)}
    assert (budget_folder(out, 1) / "steps" / "msnet-s0.csv").read_text() == "step,loss\n0,1.0\n"
    assert len(read_results(budget_folder(out, 2))) == 4


def test_budget_report_partial_then_complete(tmp_path, monkeypatch):
    """The report of a budget study still running shows the unfinished budget as pending; once complete, the
    differences, verdicts and the trend sentence follow the numbers (hand-computed below)."""
    from m2s_lib.engine.study_budget import run_budget_study
    from m2s_lib.engine.study_budget_report import budget_tables, trend_sentence, write_budget_report

    calls: list = []
    fake = _fake_budget_run(calls)

    def stop_after_six(*args):
        if len(calls) == 6:
            raise KeyboardInterrupt
        return fake(*args)

    monkeypatch.setattr(study_mod, "train_and_score", stop_after_six)
    out = tmp_path / "budget"
    specs = _budget_specs(tmp_path, seeds=(0, 1, 2))
    with pytest.raises(KeyboardInterrupt):
        run_budget_study("budget-smoke", out, specs=specs, progress=False, log=lambda m: None)
    text = write_budget_report(out)["markdown"].read_text()
    assert "PARTIAL: 6 of 12 runs" in text and "| pending" in text
    assert "Only 1 steps can be read so far" in text and "Budgets not complete yet: 2 steps" in text
    monkeypatch.setattr(study_mod, "train_and_score", fake)
    run_budget_study("budget-smoke", out, specs=specs, progress=False, log=lambda m: None)
    t = budget_tables(out)
    d = t.diffs[t.diffs["metric"] == "mDice"].set_index("steps")
    # 1 step: −0.095, −0.090, −0.085 → mean −0.09, sd 0.005, half-width 4.3027 × 0.005/√3 = 0.01242
    assert d.loc[1, "mean"] == pytest.approx(-0.09) and d.loc[1, "hi"] == pytest.approx(-0.09 + 0.012421, abs=1e-5)
    assert list(d["verdict"]) == ["contradicted", "contradicted"]
    assert trend_sentence(t) == ("From 1 to 2 steps the mean paired gap in mDice shrinks (-0.090, -0.020 by budget); "
                                 "the claim is contradicted at every budget: the deficit persists up to 2 steps; the "
                                 "two intervals do not overlap.")
    paths = write_budget_report(out)
    text = paths["markdown"].read_text()
    assert "PARTIAL" not in text and "teaching difficulty" in text and "s0: -0.095" in text
    assert paths["figure"].stat().st_size > 1000 and len(pd.read_csv(paths["seeds"])) == 12
    assert paths["snippet"].read_text().startswith("|   steps |") and trend_sentence(t) in paths["snippet"].read_text()


def test_budget_preset_from_the_command_line(tmp_path):
    """`m2s ablations run --preset budget-smoke` trains each budget's runs into its folder and writes the budget
    report; `m2s ablations report` on the folder rewrites it; workers get the same --reuse folders."""
    from m2s_lib.cli import build_parser, main
    from m2s_lib.cli.ablations import _worker_argv

    out = tmp_path / "budget"
    argv = ["ablations", "run", "--preset", "budget-smoke", "--seeds", "0", "--out", str(out), "--no-progress",
            "--reuse", str(tmp_path / "none"), "--", f"data.synthetic_dir={tmp_path / 'data'}"]
    assert main(argv) == 0
    assert [len(read_results(out / f"steps-0000{s}")) for s in (1, 2)] == [2, 2]
    assert "Budget study: m2snet-nolf − msnet at 1, 2 steps" in (out / "REPORT.md").read_text()
    assert main(["ablations", "report", str(out)]) == 0
    worker = build_parser().parse_args(_worker_argv(build_parser().parse_args(argv), str(out), 1)[3:])
    assert worker.reuse == [str(tmp_path / "none")] and worker.preset == "budget-smoke"
