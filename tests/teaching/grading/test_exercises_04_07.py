"""Fair grades (issue 21) for notebooks 04-07: the exercise specs, run and judged in this process.

The answers are the masters' solution cells, executed in a namespace with the notebook's imports, or the same cells
with one solution region replaced. ``check`` records their outputs in grading mode (as in the student's kernel) and
the trusted judge scores them (the verdict only depends on the recorded arrays). A grading folder per answer
variant; a "submission" is the correct outputs with one exercise's outputs taken from a wrong variant, which is what
the kernel writes when only that exercise is wrong (every exercise runs on its own cases).

* every exercise: exactly that exercise wrong loses exactly its own points, nothing elsewhere;
* partial credit: failing one check loses that check's share only;
* correct alternatives (other torch calls, loops or einsum, float64 inside, deprecated calls that warn) get full
  marks;
* student mode: a stub prints one line, a wrong answer shows the check's message first;
* the presets: every name is a parameter of its notebook;
* one notebook executed in grading mode at its grading preset (slow): full marks.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import exercise_support as es  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
ASSIGNMENTS = {"04": "04_m2snet", "05": "05_lossnet", "06": "06_training", "07": "07_evaluation"}
CHECK_ARGS = {
    "04": {"encode_tests": "encode_by_hand", "decode_tests": "decode_by_hand"},
    "05": {"boundary_weight_tests": "weight_by_hand", "structure_loss_tests": "structure_by_hand",
           "vgg_levels_tests": "vgg_levels", "lossnet_term_tests": "lossnet_term"},
    "06": {"param_groups_tests": "param_groups", "triangle_factor_tests": "triangle_factor",
           "sgd_update_tests": "sgd_update"},
    "07": {"pranet_curves_tests": "pranet_curves", "mae_tests": "mae"},
}  # fmt: skip
PREAMBLES = {  # what the solution cells use from the notebook's earlier cells
    "04": "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nfrom m2s_lib.model import M2SNet",
    "05": "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
          "from m2s_lib.constants import IMAGENET_MEAN, IMAGENET_STD\nfrom m2s_lib.losses import boundary_weight\n"
          "TAPS = (3, 8, 15, 22)\nmean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)\n"
          "std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)",
    "06": "import torch",
    "07": "import numpy as np\nimport torch",
}
HELPER_CELLS = {"07": ("hand-normalise",)}  # master cells run before the solutions (by cell id)


def master(key: str) -> dict:
    return json.loads((ROOT / "notebooks" / f"{ASSIGNMENTS[key]}.ipynb").read_text(encoding="utf-8"))


def namespace(key: str, answers: dict[str, str] | None = None) -> dict:
    """The master's solution cells (``answers`` in their regions) executed after the notebook's imports."""
    ns: dict = {}
    exec(PREAMBLES[key], ns)
    answers = answers or {}
    for cell in master(key)["cells"]:
        meta = es._meta(cell)
        source = es._src(cell)
        if cell.get("id") in HELPER_CELLS.get(key, ()):
            exec(compile(source, f"<{cell['id']}>", "exec"), ns)
        elif cell["cell_type"] == "code" and meta.get("solution"):
            if meta.get("grade_id") in answers:
                source = es.fill(source, answers[meta["grade_id"]])
            exec(compile(source, f"<{meta.get('grade_id')}>", "exec"), ns)
    return ns


def record(key: str, ns: dict, folder: Path, grade_ids=None) -> Path:
    """``check`` in grading mode on the answers of ``ns``; returns the grading folder."""
    from m2s_lib.teaching.exercises import student
    from m2s_lib.teaching.grading import judge

    grading = folder / "grading"
    judge.prepare_inputs(ASSIGNMENTS[key], grading)
    saved = os.environ.get("M2S_GRADING_DIR")
    os.environ["M2S_GRADING_DIR"] = str(grading)
    try:
        for grade_id, name in CHECK_ARGS[key].items():
            if grade_ids is None or grade_id in grade_ids:
                student.check(grade_id, ns[name])
    finally:
        if saved is None:
            os.environ.pop("M2S_GRADING_DIR", None)
        else:
            os.environ["M2S_GRADING_DIR"] = saved
    return grading


def judged(key: str, grading: Path):
    from m2s_lib.teaching.grading import judge

    return judge.judge_assignment(ASSIGNMENTS[key], grading, master(key))


def points(verdict) -> dict[str, float]:
    return {e.grade_id: e.points for e in verdict.exercises}


def full(key: str) -> dict[str, float]:
    from m2s_lib.teaching.exercises import registry

    return {e.grade_id: e.max_points for e in registry.exercises(ASSIGNMENTS[key])}


@pytest.fixture(scope="module")
def correct(tmp_path_factory) -> dict[str, Path]:
    """The grading folder of the masters' own answers, per assignment (recorded once)."""
    base = tmp_path_factory.mktemp("correct")
    return {key: record(key, namespace(key), base / key) for key in ASSIGNMENTS}


# -------------------------------------------------------------------------------------------------------------
# Every exercise: exactly that one wrong
# -------------------------------------------------------------------------------------------------------------
WRONG = {  # solution grade_id -> (wrong region, the points that exercise then earns, the mistake named)
    "04": {
        "encode": ("""
            feats = model.encoder(x)  # forgets the stem's max-pool
            ms1 = [model.reduce[f"E{i}"](feats[i - 1]) if f"E{i}" in model.reduce else feats[i - 1] for i in range(1, 6)]
            return list(feats), ms1
        """, 0.0, "before the max-pool"),
        "decode": ("""
            r["CE^5"] = e5  # forgets reduce_top: the stages get 512 channels
            for k, i in (("D4", 4), ("D3", 3), ("D2", 2)):
                r[k] = dec.stages[k](up(r["CE^5" if k == "D4" else f"D{i + 1}"], ce[f"CE^{i}"]) + ce[f"CE^{i}"])
            r["D1"] = dec.head(up(r["D2"], ce["CE^1"]) + ce["CE^1"])
            r["logits"] = F.interpolate(r["D1"], size=tuple(size), mode="bilinear", align_corners=False)
        """, 0.0, "your code raised RuntimeError"),
    },
    "05": {
        "boundary_weight": ("return 1 + 5 * (F.avg_pool2d(mask, 31, stride=1, padding=15) - mask)", 0.0,
                            "the absolute value is missing"),
        "structure_loss": ("""
            bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
            return ((w * bce).sum(dim=(2, 3)) / w.sum(dim=(2, 3))).mean()
        """, 0.0, "the IoU term is missing"),
        "vgg_levels": ("""
            x = F.interpolate(maps.repeat(1, 3, 1, 1), size=(size, size), mode="bilinear", align_corners=False)
            levels = []
            for index, layer in enumerate(vgg):
                x = layer(x)
                if index in TAPS:
                    levels.append(x)
            return levels
        """, 0.0, "without the ImageNet normalisation"),
        # every formula gives 0 for a perfect prediction: that check keeps its point
        "lossnet_term": ("return sum(((fp - fg) ** 2).mean() for fp, fg in zip(levels_p, levels_g)) / 4", 1.0,
                         "the mean over the levels instead of their sum"),
    },
    "06": {
        # the head group holds every parameter: only its own check fails
        "param_groups": ("""
            encoder = list(model.encoder.parameters())
            return [{"name": "encoder", "params": encoder, "base_lr": encoder_lr, "buffers": {}},
                    {"name": "head", "params": list(model.parameters()), "base_lr": head_lr, "buffers": {}}]
        """, 2.0, "non-encoder parameters and"),
        "triangle_factor": ("""
            x = period / periods
            return max(0.0, min(x / peak, (1 - x) / (1 - peak)))
        """, 0.0, "e / E instead of (e + 1) / (E + 1)"),
        # no momentum at all: the frozen-parameter check still holds
        "sgd_update": ("""
            for group in groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad + weight_decay * p, alpha=-group["base_lr"] * factor)
        """, 1.0, "an update without momentum"),
    },
    "07": {
        "pranet_curves": ("""
            levels = np.floor(normalise_map(pred8) * 255).astype(np.int64)
            thresholds = np.arange(NUM_THRESHOLDS - 1, -1, -1)
            tp = (levels[gt][None, :] > thresholds[:, None]).sum(1)
            fp = (levels[~gt][None, :] > thresholds[:, None]).sum(1)
            fn = gt.sum() - tp
            dice_den, iou_den = (2 * tp + fp + fn).astype(np.float64), (tp + fp + fn).astype(np.float64)
            dice = np.divide(2 * tp, dice_den, out=np.zeros_like(dice_den), where=dice_den > 0)
            iou = np.divide(tp, iou_den, out=np.zeros_like(iou_den), where=iou_den > 0)
            return dice, iou
        """, 0.0, "'level > t' instead of 'level ≥ t'"),
        # a flat map is not stretched by normalise_map either: that check keeps its point
        "mae": ("return float(np.abs(pred8 / 255.0 - gt).mean())", 1.0, "without the min–max stretch"),
    },
}
TEST_OF = {sol: sol + "_tests" for key in WRONG for sol in WRONG[key]}  # solution cell -> test cell
CASES = [(key, sol) for key in WRONG for sol in WRONG[key]]


@pytest.mark.parametrize(("key", "solution"), CASES, ids=[s for _, s in CASES])
def test_one_wrong_exercise_costs_only_its_own_points(key, solution, correct, tmp_path):
    code, expected, mistake = WRONG[key][solution]
    grade_id = TEST_OF[solution]
    wrong = record(key, namespace(key, {solution: code}), tmp_path, grade_ids=(grade_id,))
    submission = tmp_path / "submission"
    shutil.copytree(correct[key], submission)  # the other exercises' outputs: right
    for suffix in (".npz", ".json"):
        shutil.copy(wrong / "outputs" / f"{grade_id}{suffix}", submission / "outputs" / f"{grade_id}{suffix}")
    verdict = judged(key, submission)
    got, want = points(verdict), full(key)
    assert got[grade_id] == expected, verdict.to_dict()
    assert {k: v for k, v in got.items() if k != grade_id} == {k: v for k, v in want.items() if k != grade_id}
    assert verdict.points == sum(want.values()) - want[grade_id] + expected
    exercise = next(e for e in verdict.exercises if e.grade_id == grade_id)
    assert exercise.status == "graded" and not exercise.flags
    assert any(mistake in (c.mistake or "") for c in exercise.checks if not c.passed), exercise.to_dict()


def test_the_masters_answers_get_full_marks(correct):
    for key, grading in correct.items():
        verdict = judged(key, grading)
        assert points(verdict) == full(key), (key, verdict.to_dict())
        assert all(e.status == "graded" and not e.flags and not e.warnings for e in verdict.exercises)


# -------------------------------------------------------------------------------------------------------------
# Partial credit: one check of an exercise
# -------------------------------------------------------------------------------------------------------------
PARTIAL = [  # (key, solution, region, failed check, its share)
    ("05", "structure_loss", """
        logits, mask, w = logits.float(), mask.float(), w.float()  # float32 inside: a float64 batch comes back float32
        bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
        wbce = (w * bce).sum(dim=(2, 3)) / w.sum(dim=(2, 3))
        p = torch.sigmoid(logits)
        inter, union = (w * p * mask).sum(dim=(2, 3)), (w * (p + mask)).sum(dim=(2, 3))
        return (wbce + 1 - (inter + 1) / (union - inter + 1)).mean()
    """, "a batch of three float64 images", 2.0),
    ("06", "sgd_update", """
        for group in groups:  # always plain momentum: nesterov is ignored
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + weight_decay * p
                buf = group["buffers"].get(p)
                buf = g.clone() if buf is None else buf.mul_(momentum).add_(g)
                group["buffers"][p] = buf
                p.add_(buf, alpha=-group["base_lr"] * factor)
    """, "Nesterov momentum (the paper's recipe)", 3.0),
    ("06", "triangle_factor", """
        x = (period + 1) / (periods + 1)
        return max(0.0, 1.0 - abs(2 * x - 1))  # the peak argument is ignored
    """, "the top moved to another peak", 1.0),
    ("04", "decode", """
        r["CE^5"] = dec.reduce_top(e5)
        r["D4"] = dec.stages["D4"](up(r["CE^5"], ce["CE^4"]) + ce["CE^4"])
        r["D3"] = dec.stages["D3"](up(r["D4"], ce["CE^3"]) + ce["CE^3"])
        r["D2"] = dec.stages["D2"](up(r["D3"], ce["CE^2"]) + ce["CE^2"])
        r["D1"] = dec.head(up(r["D2"], ce["CE^1"]) + ce["CE^1"])
        r["logits"] = F.interpolate(r["D1"], size=tuple(size), mode="nearest")
    """, "logits at the input's size", 1.0 + 2.0),  # the logits check, and the variety check that also reads them
]


@pytest.mark.parametrize(("key", "solution", "region", "check", "share"), PARTIAL,
                         ids=[f"{p[1]}-{p[3][:20]}" for p in PARTIAL])
def test_failing_one_check_costs_its_share(key, solution, region, check, share, tmp_path):
    grade_id = TEST_OF[solution]
    verdict = judged(key, record(key, namespace(key, {solution: region}), tmp_path, grade_ids=(grade_id,)))
    exercise = next(e for e in verdict.exercises if e.grade_id == grade_id)
    assert exercise.points == exercise.max_points - share, exercise.to_dict()
    failed = [c for c in exercise.checks if not c.passed]
    assert failed and failed[0].name == check and failed[0].mistake and failed[0].hint, exercise.to_dict()


# -------------------------------------------------------------------------------------------------------------
# Correct alternatives: full marks
# -------------------------------------------------------------------------------------------------------------
ALTERNATIVES = [
    ("04", "encode", """
        e = []  # a loop over the levels, the functional max-pool, a dict of reductions
        for i, f in enumerate(model.encoder(x), 1):
            e.append(F.max_pool2d(f, kernel_size=3, stride=2, padding=1) if i == 1 else f)
        reduce = dict(model.reduce.items())
        return e, [reduce[f"E{i}"](level) if f"E{i}" in reduce else level for i, level in enumerate(e, 1)]
    """),
    ("04", "decode", """
        def upsample(t, ref):  # the authors' deprecated F.upsample: a warning, no points lost
            return F.upsample(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)
        r["CE^5"] = x = dec.reduce_top(e5)
        for i in (4, 3, 2):
            x = r[f"D{i}"] = dec.stages[f"D{i}"](upsample(x, ce[f"CE^{i}"]) + ce[f"CE^{i}"])
        r["D1"] = dec.head(upsample(x, ce["CE^1"]) + ce["CE^1"])
        r["logits"] = F.interpolate(r["D1"], scale_factor=(size[0] / r["D1"].shape[-2], size[1] / r["D1"].shape[-1]),
                                    mode="bilinear", align_corners=False)
        if r["logits"].shape[-2:] != tuple(size):
            r["logits"] = F.interpolate(r["D1"], size=tuple(size), mode="bilinear")
    """),
    ("05", "boundary_weight", """
        k = torch.ones(1, 1, 31, 31, dtype=mask.dtype) / 961  # a box filter by convolution
        return 1 + 5 * (F.conv2d(mask, k, padding=15) - mask).abs()
    """),
    ("05", "boundary_weight", """
        p = F.pad(mask, (16, 15, 16, 15)).cumsum(-1).cumsum(-2)  # box sums by cumsum (an integral image)
        box = p[..., 31:, 31:] - p[..., :-31, 31:] - p[..., 31:, :-31] + p[..., :-31, :-31]
        return torch.abs(box / 31 ** 2 - mask) * 5 + 1
    """),
    ("05", "structure_loss", """
        m = mask.double()  # float64 inside, einsum sums, the input's dtype back
        p, lg, wd = torch.sigmoid(logits.double()), logits.double(), w.double()
        bce = torch.clamp(lg, min=0) - lg * m + torch.log1p(torch.exp(-lg.abs()))
        wbce = torch.einsum("nchw,nchw->nc", wd, bce) / torch.einsum("nchw->nc", wd)
        inter = torch.einsum("nchw,nchw,nchw->nc", wd, p, m)
        union = torch.einsum("nchw,nchw->nc", wd, p + m)
        return (wbce + 1 - (inter + 1) / (union - inter + 1)).mean().to(logits.dtype)
    """),
    ("05", "vgg_levels", """
        x = F.interpolate((maps.expand(-1, 3, -1, -1) - mean) / std, size=(size, size), mode="bilinear")
        levels = []
        for a, b in ((0, 4), (4, 9), (9, 16), (16, 23)):  # the four slices, as LossNet keeps them
            x = vgg[a:b](x)
            levels.append(x)
        return levels
    """),
    ("05", "lossnet_term", """
        total = 0.0
        for fp, fg in zip(levels_p, levels_g):  # a loop, einsum
            d = fp - fg
            total = total + torch.einsum("...,...->", d, d) / d.numel()
        return total
    """),
    ("05", "lossnet_term", "return torch.stack([F.mse_loss(a, b) for a, b in zip(levels_p, levels_g)]).sum()"),
    ("06", "param_groups", """
        named = dict(model.named_parameters())  # by name instead of by identity
        encoder = [p for n, p in named.items() if n.startswith("encoder.")]
        head = [p for n, p in named.items() if not n.startswith("encoder.")]
        return [dict(name="head", params=head, base_lr=head_lr, buffers={}),
                dict(name="encoder", params=encoder, base_lr=encoder_lr, buffers={})]
    """),
    ("06", "triangle_factor", """
        x = torch.tensor((period + 1) / (periods + 1), dtype=torch.float64)  # a tensor of one element
        return torch.clamp(torch.minimum(x / peak, (1 - x) / (1 - peak)), min=0)
    """),
    ("06", "sgd_update", """
        for group in groups:  # buffers start at zero: b = μ·0 + g = g on the first step
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad.add(p, alpha=weight_decay)
                buf = group["buffers"].setdefault(p, torch.zeros_like(p))
                buf.mul_(momentum).add_(d_p)
                p.data.add_(d_p.add(buf, alpha=momentum) if nesterov else buf, alpha=-group["base_lr"] * factor)
    """),
    ("07", "pranet_curves", """
        levels = np.floor(normalise_map(pred8) * 255)
        dice, iou = [], []
        for t in range(NUM_THRESHOLDS - 1, -1, -1):  # a loop over the thresholds, plain Python lists
            hit = levels >= t
            tp, fp, fn = (hit & gt).sum(), (hit & ~gt).sum(), (~hit & gt).sum()
            dice.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0)
            iou.append(tp / (tp + fp + fn) if tp + fp + fn else 0.0)
        return dice, iou
    """),
    ("07", "pranet_curves", """
        lv = torch.from_numpy(np.floor(normalise_map(pred8) * 255)).long()  # histograms and cumulative sums
        g = torch.from_numpy(gt)
        tp = torch.bincount(lv[g], minlength=256).flip(0).cumsum(0)
        fp = torch.bincount(lv[~g], minlength=256).flip(0).cumsum(0)
        fn = g.sum() - tp
        dice = torch.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.zeros(()))
        iou = torch.where(tp + fp + fn > 0, tp / (tp + fp + fn).clamp(min=1), torch.zeros(()))
        return dice, iou
    """),
    ("07", "mae", "return torch.nn.functional.l1_loss(torch.from_numpy(normalise_map(pred8)), torch.from_numpy(gt).double())"),
]


@pytest.mark.parametrize(("key", "solution", "region"), ALTERNATIVES,
                         ids=[f"{a[1]}-{i}" for i, a in enumerate(ALTERNATIVES)])
def test_correct_alternatives_get_full_marks(key, solution, region, tmp_path):
    grade_id = TEST_OF[solution]
    verdict = judged(key, record(key, namespace(key, {solution: region}), tmp_path, grade_ids=(grade_id,)))
    exercise = next(e for e in verdict.exercises if e.grade_id == grade_id)
    assert exercise.points == exercise.max_points, exercise.to_dict()
    if "F.upsample" in region:  # the warning is kept as a note and costs nothing
        assert exercise.warnings, exercise.to_dict()


# -------------------------------------------------------------------------------------------------------------
# Student mode
# -------------------------------------------------------------------------------------------------------------
def test_student_mode_stub_one_line_and_wrong_answer_message_first(capsys):
    from m2s_lib.teaching.exercises import check, needs
    from m2s_lib.teaching.exercises.student import CheckFailed

    ns = namespace("07", {"mae": "raise NotImplementedError()"})
    check("mae_tests", ns["mae"])
    assert capsys.readouterr().out.strip().splitlines() == [
        "Exercise 2 (`mae`) is not done yet: write it in the cell above, then run this cell."]
    assert not needs("mae_tests") and "not done yet" in capsys.readouterr().out
    ns = namespace("05", {"vgg_levels": WRONG["05"]["vgg_levels"][0]})
    with pytest.raises(CheckFailed) as err:
        check("vgg_levels_tests", ns["vgg_levels"])
    lines = err.value._render_traceback_()
    assert "check 'the toy masks' failed: level 1: your output equals the features of the map without the ImageNet" \
        in lines[0] and lines[1].startswith("  hint: ") and len(lines) <= 4, lines  # fmt: skip
    check("vgg_levels_tests", namespace("05")["vgg_levels"])
    out = capsys.readouterr().out
    assert "✓ Exercise 3, the toy masks" in out and "more checks run when your notebook is graded" in out


def test_visible_cases_are_part_of_the_graded_ones():
    """The grader's cases of every exercise include the visible ones, and every check is fed by some case."""
    from m2s_lib.teaching.exercises import registry
    from m2s_lib.teaching.grading.judge import all_cases

    for key, assignment in ASSIGNMENTS.items():
        cell_points = {es._meta(c).get("grade_id"): es._meta(c).get("points") for c in master(key)["cells"]}
        for exercise in registry.exercises(assignment):
            cases = all_cases(exercise)
            names = [c.name for c in cases]
            assert len(names) == len(set(names))
            assert names[: len(exercise.visible)] == [spec["name"] for spec in exercise.visible]
            assert {c.name for c in exercise.checks} == {f for c in cases for f in c.feeds}, exercise.grade_id
            assert exercise.max_points == cell_points[exercise.grade_id], exercise.grade_id  # the test cell's points


# -------------------------------------------------------------------------------------------------------------
# The grading presets
# -------------------------------------------------------------------------------------------------------------
def test_grading_presets_name_parameters_of_their_notebooks():
    from m2s_lib.teaching import nbcheck
    from m2s_lib.teaching.grading.presets import GRADING_PARAMETERS, grading_parameters

    for assignment, values in GRADING_PARAMETERS.items():
        params = nbcheck.parameter_names(ROOT / "notebooks" / f"{assignment}.ipynb")
        assert set(values) <= set(params), (assignment, sorted(set(values) - set(params)))
    assert grading_parameters("06")["steps_per_epoch"] == 1 and grading_parameters("09_ablations") == {}
    assert grading_parameters("07_evaluation")["data_root"].startswith("runs/")  # into the scratch folder


@pytest.mark.slow
def test_notebook_07_graded_at_its_preset_gets_full_marks(tmp_path):
    """The master, executed as the runner does (grading parameters, M2S_GRADING_DIR, the monitor first, errors
    allowed) and judged: full marks, no flags; and within a minute of kernel time on two cores."""
    import time

    import nbformat
    from nbclient import NotebookClient

    from m2s_lib import constants
    from m2s_lib.teaching import course_cells
    from m2s_lib.teaching.grading import judge
    from m2s_lib.teaching.grading.presets import grading_parameters

    nb = master("07")
    values = {k: (str(tmp_path / v) if isinstance(v, str) and v.startswith("runs/") else v)
              for k, v in grading_parameters("07").items()}  # what the runner's scratch_values does
    course_cells.set_parameters(nb, {**values, "run_dir": str(tmp_path / "runs")})
    grading = tmp_path / "grading"
    judge.prepare_inputs(ASSIGNMENTS["07"], grading)
    run = json.loads(json.dumps(nb))
    run["cells"].insert(0, es.code_cell(es.PREAMBLE))
    run["cells"][0]["id"] = "monitor"
    node = nbformat.reads(json.dumps(run), as_version=4)
    env = {"M2S_GRADING_DIR": str(grading), "MPLBACKEND": "Agg", "PYTHONPATH": str(constants.repo_root())}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    began = time.perf_counter()
    try:
        NotebookClient(node, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()  # fmt: skip
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    seconds = time.perf_counter() - began
    errors = [o for c in node.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors[0]
    verdict = judge.judge_assignment(ASSIGNMENTS["07"], grading, nb)
    assert points(verdict) == full("07") and not any(e.flags for e in verdict.exercises), verdict.to_dict()
    assert all(f.startswith("manual answer") for f in verdict.flags)  # the master holds the model answers
    assert seconds < 240, f"grading 07 at its preset took {seconds:.0f} s"
