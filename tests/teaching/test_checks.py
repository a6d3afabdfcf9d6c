"""The teaching notebooks' hand-written checks can fail.

A notebook that builds something by hand and compares it with the library must break when the library changes.
These tests execute the relevant cells of the committed notebooks *in this process* (so that the library can be
patched) on small inputs, once as they are (the check passes) and once with one thing in the library changed (the
check must fail, with its own message):

* 07: the PraNet protocol by hand (cells tagged ``metrics-by-hand``) vs ``m2s_lib.metrics``; the library is made
  to binarise at 128 thresholds instead of 256.
* 06: one training step by hand (cells tagged ``train-step-by-hand``) vs ``engine.step.train_step``; the profile's
  encoder learning-rate ratio or λ, or the trainer's weight decay, is changed.

Also: ``resolve_profile`` ("auto"), and ``m2s profile`` printing Table 6's 256×256 next to 352×352.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
NB07 = ROOT / "notebooks" / "07_evaluation.ipynb"


def _cells(path: Path, ids: tuple[str, ...] = (), tag: str | None = None) -> list[tuple[str, str]]:
    """``(cell id, source)`` of the code cells with the given ids and/or tag, in notebook order."""
    nb = nbformat.read(path, as_version=4)
    picked = [(c.get("id"), c.source) for c in nb.cells if c.cell_type == "code"
              and (c.get("id") in ids or (tag is not None and tag in c.metadata.get("tags", [])))]  # fmt: skip
    wanted = set(ids)
    missing = wanted - {cid for cid, _ in picked}
    assert not missing, f"{path.name} has no code cells with ids {sorted(missing)}"
    return picked


def _run(cells: list[tuple[str, str]], namespace: dict, path: Path) -> dict:
    for cid, source in cells:
        exec(compile(source, f"<{path.name} cell {cid}>", "exec"), namespace)
    return namespace


# ---------------------------------------------------------------------------------------------------------------
# 07: the metrics by hand
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored_maps(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    """Two small test sets (images + masks) and 8-bit prediction maps for them, written like notebook 07's."""
    base = tmp_path_factory.mktemp("nb07")
    rng = np.random.default_rng(0)
    test_sets, pred_dir = {}, base / "predictions"
    yy, xx = np.mgrid[:48, :56]
    for s, name in enumerate(("SetA", "SetB")):
        folder = base / "data" / name
        for sub in ("images", "masks"):
            (folder / sub).mkdir(parents=True)
        (pred_dir / name).mkdir(parents=True)
        for i in range(3):
            stem = f"{i:04d}"
            gt = (yy - 20 - 3 * i) ** 2 + (xx - 28 + 4 * s) ** 2 < (9 + 2 * i) ** 2
            Image.fromarray(rng.integers(0, 255, (48, 56, 3), dtype=np.uint8)).save(folder / "images" / f"{stem}.png")
            Image.fromarray(gt.astype(np.uint8) * 255).save(folder / "masks" / f"{stem}.png")
            prob = np.clip(0.55 * gt + rng.normal(0.25, 0.15, gt.shape), 0, 1)  # hesitant inside, noisy halo outside
            Image.fromarray(np.rint(prob * 255).astype(np.uint8)).save(pred_dir / name / f"{stem}.png")
        test_sets[name] = folder
    return test_sets, pred_dir


def _run_07_checks(test_sets: dict[str, Path], pred_dir: Path) -> dict:
    ns: dict = {}
    _run(_cells(NB07, ids=("2", "3")), ns, NB07)  # parameters, imports
    ns.update(test_sets=test_sets, pred_dir=pred_dir, needs=lambda *grade_ids: True)  # exercises' test cells not run
    cells = _cells(NB07, tag="metrics-by-hand")
    assert [cid for cid, _ in cells][-1] == "hand-check", "the tagged cells must end with the comparison"
    return _run(cells, ns, NB07)


def _binarize_at(levels: int):
    """A replacement for pysodmetrics' dynamic binarisation with ``levels`` thresholds instead of 256."""

    def dynamically_binarizing(self, pred, gt, FG, BG):
        q = (pred * (levels - 1)).astype(np.int64)
        bins = np.arange(levels + 1)
        tps = np.cumsum(np.flip(np.histogram(q[gt], bins=bins)[0]))
        fps = np.cumsum(np.flip(np.histogram(q[~gt], bins=bins)[0]))
        return {"tp": tps, "fp": fps, "tn": BG - fps, "fn": FG - tps}

    return dynamically_binarizing


def test_07_metrics_by_hand_match_the_library(scored_maps):
    ns = _run_07_checks(*scored_maps)
    assert ns["NUM_THRESHOLDS"] == 256 and len(ns["hand_images"]) == 6
    assert set(ns["hand_sets"].index) == {"SetA", "SetB"}


def test_07_check_fails_when_the_library_uses_another_threshold_count(scored_maps, monkeypatch):
    import py_sod_metrics

    monkeypatch.setattr(py_sod_metrics.FmeasureV2, "dynamically_binarizing", _binarize_at(128))
    with pytest.raises(AssertionError, match="per-image mDice: hand-written and library values differ"):
        _run_07_checks(*scored_maps)


def test_07_patch_with_256_levels_changes_nothing(scored_maps, monkeypatch):
    """The replacement itself is faithful: with 256 levels the check passes (so the failure above is the count)."""
    import py_sod_metrics

    monkeypatch.setattr(py_sod_metrics.FmeasureV2, "dynamically_binarizing", _binarize_at(256))
    _run_07_checks(*scored_maps)


# ---------------------------------------------------------------------------------------------------------------
# profile "auto" and Table 6's size
# ---------------------------------------------------------------------------------------------------------------
def test_resolve_profile_auto():
    import torch

    from m2s_lib.config import ConfigError, resolve_profile

    assert resolve_profile("auto", torch.device("cpu"))[0] == "tiny"
    assert resolve_profile("auto", "mps")[0] == "tiny"
    name, why = resolve_profile("auto", "cuda:1", task="covid")
    assert name == "paper-covid" and "CUDA" in why
    assert resolve_profile("paper-polyp", "cpu") == ("paper-polyp", "asked for explicitly")
    with pytest.raises(ConfigError, match="Did you mean 'tiny'"):
        resolve_profile("tinny", "cpu")


def test_profile_command_shows_table6_size_next_to_352(capsys):
    from m2s_lib.cli import main as m2s

    assert m2s(["profile", "--model", "msnet", "--encoder", "resnet18d", "--no-latency"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "GMACs" in line]
    assert [line.split(" at ")[1].split(" ")[0] for line in lines] == ["256x256", "352x352"], lines


# ---------------------------------------------------------------------------------------------------------------
# 06: one training step by hand vs the library's train_step (what Trainer runs)
# ---------------------------------------------------------------------------------------------------------------
NB06 = ROOT / "notebooks" / "06_training.ipynb"


@pytest.fixture(scope="module")
def polyp_root(tmp_path_factory) -> Path:
    from m2s_lib.data.synthetic import ensure_synthetic

    return ensure_synthetic("polyp", tmp_path_factory.mktemp("nb06") / "polyp", 8, seed=0, size=64, n_test=2,
                            progress=False)  # fmt: skip


def _run_06_check(root: Path) -> dict:
    ns: dict = {}
    _run(_cells(NB06, ids=("2", "3")), ns, NB06)  # parameters, imports
    ns.update(root=root, check_steps=2, needs=lambda *grade_ids: True)  # the exercises' test cells are not run here
    cells = _cells(NB06, tag="train-step-by-hand")
    assert [cid for cid, _ in cells][-1] == "step-check", "the tagged cells must end with the comparison"
    return _run(cells, ns, NB06)


def test_06_hand_written_step_equals_train_step(polyp_root):
    ns = _run_06_check(polyp_root)
    assert len(ns["rows"]) == 2 and ns["moved"] > 0


def test_06_check_fails_when_the_encoder_lr_ratio_changes(polyp_root, monkeypatch):
    from m2s_lib import config

    monkeypatch.setitem(config.PROFILES["paper-polyp"], "optim.encoder_lr_ratio", 1.0)  # the authors' slip
    with pytest.raises(AssertionError, match=r"step 0: learning rates \(encoder, head\) differ"):
        _run_06_check(polyp_root)


def test_06_check_fails_when_lambda_changes(polyp_root, monkeypatch):
    from m2s_lib import config

    monkeypatch.setitem(config.PROFILES["paper-polyp"], "loss.lossnet_weight", 1.0)  # Eq. 4 as printed
    with pytest.raises(AssertionError, match="step 0: Eq. 4 losses differ"):
        _run_06_check(polyp_root)


@pytest.mark.parametrize("weight_decay", [0.0, 4.5e-4])
def test_06_check_fails_when_the_trainer_changes_weight_decay(polyp_root, monkeypatch, weight_decay):
    """A change inside the trainer's optimiser (not in the config) is caught by the weights after the steps, even a
    10 % change of the weight decay (the comparison runs in float64, so rounding noise stays far below it)."""
    from m2s_lib.engine import trainer

    original = trainer.build_optimizer

    def other_weight_decay(model, cfg):
        opt = original(model, cfg)
        for group in opt.param_groups:
            group["weight_decay"] = weight_decay
        return opt

    monkeypatch.setattr(trainer, "build_optimizer", other_weight_decay)
    with pytest.raises(AssertionError, match="differ"):
        _run_06_check(polyp_root)


# ---------------------------------------------------------------------------------------------------------------
# Student versions: no teacher words, no broken relative links (issue 26)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stem", ["01_subtraction_unit", "02_multiscale_subtraction_unit", "03_mmsm"])
def test_student_text_of_01_to_03_is_clean(stem):
    from m2s_lib.teaching import course_cells, nbcheck

    nb = nbcheck.load_notebook(ROOT / "notebooks" / f"{stem}.ipynb")
    assert course_cells.student_text_problems(nb, released=[f"{stem}.ipynb"]) == []


def test_student_text_check_names_words_and_links():
    from m2s_lib.teaching import course_cells

    def md(text):
        return {"cell_type": "markdown", "metadata": {}, "source": text}

    nb = {"cells": [md("run by papermill (`tests/notebook_overrides.yaml`)"), md("image_size = 128  # the paper's input size"),
                    md("[next](02_x.ipynb) and [site](https://example.org) and [here](#top)")]}
    problems = course_cells.student_text_problems(nb, released=["01_x.ipynb"])
    assert any("'papermill'" in p for p in problems) and any("'tests/'" in p for p in problems)
    assert any("the paper's input size" in p for p in problems)
    assert [p for p in problems if "link" in p] == ["cell 3: link to '02_x.ipynb', which is not in the release"]
    assert not any("paper's input size" in p for p in course_cells.student_text_problems(nb, paper_preset=True))


@pytest.mark.parametrize("stem", ["01_subtraction_unit", "02_multiscale_subtraction_unit", "03_mmsm", "04_m2snet",
                                  "05_lossnet", "06_training", "07_evaluation"])
def test_test_cells_match_their_registered_exercises(stem):
    """Points of a test cell = the sum of its exercise's checks; the cell is a short check(...) call."""
    from m2s_lib.teaching import course_cells, nbcheck

    nb = nbcheck.load_notebook(ROOT / "notebooks" / f"{stem}.ipynb")
    assert course_cells.exercise_problems(nb, stem) == []


def test_exercise_problems_names_a_points_mismatch():
    from m2s_lib.teaching import course_cells, nbcheck

    nb = nbcheck.load_notebook(ROOT / "notebooks" / "01_subtraction_unit.ipynb")
    cell = next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "su_forward_tests")
    cell["metadata"]["nbgrader"]["points"] = 9
    assert course_cells.exercise_problems(nb, "01_subtraction_unit") == [
        "su_forward_tests: the cell is worth 9 points, its checks 8"]
