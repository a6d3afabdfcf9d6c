"""Fair grades (issue 21) for notebooks 01-03, judged without a kernel: ``check`` in grading mode in this process,
then the trusted judge (the verdict only depends on the recorded arrays).

* correct alternatives (other torch calls, other algorithms, float64 inside) get full marks;
* a correct answer that emits a DeprecationWarning / UserWarning gets full points (the warning is kept as a note);
* for every exercise, a submission with exactly that exercise wrong loses exactly that exercise's points;
* a submission failing one check loses exactly that check's share;
* student mode: an untouched stub prints one line; a wrong answer's display starts with the check's message.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import exercise_support as es  # noqa: E402

ALTERNATIVES = {
    "01": {
        "su_forward": """
            import warnings
            warnings.warn("F.upsample is deprecated", DeprecationWarning)  # what the authors' F.upsample emits
            up = F.interpolate(a, scale_factor=(b.shape[-2] / a.shape[-2], b.shape[-1] / a.shape[-1]),
                               mode="bilinear", align_corners=False)
            if up.shape[-2:] != b.shape[-2:]:
                up = F.interpolate(a, size=b.shape[-2:], mode="bilinear")
            return F.relu(self.bn(self.conv((up - b).abs())))
        """,
        "su_param_count": "return int(channels * (9 * channels + 1) + 2 * channels)",
        "fusion_parts": """
            import warnings
            warnings.warn("a user warning", UserWarning)
            d = (a.double() - b.double()).abs().to(a.dtype)
            return (a + b - d, d)
        """,
    },
    "02": {
        "full_one_dense": "return F.conv2d(x.double(), torch.ones(x.shape[1], x.shape[1], k, k, dtype=torch.float64), "
                          "padding=k // 2).to(x.dtype)",
        "full_one_fast": ["""
            return F.conv2d(s, torch.ones(1, 1, k, k, dtype=s.dtype), padding=k // 2)
        """, """
            total = x.sum(1, keepdim=True)
            box = F.avg_pool2d(total, k, stride=1, padding=k // 2, count_include_pad=True) * k * k
            return torch.cat([box] * x.shape[1], dim=1)
        """],
        "msu_forward": """
            up = F.upsample(a, size=b.shape[-2:], mode="bilinear")
            terms = [torch.abs(up - b) if k == 1 else torch.abs(self.filters[str(k)](up) - self.filters[str(k)](b))
                     for k in self.kernel_sizes]
            return torch.relu(self.bn(self.conv(torch.stack(terms).sum(0))))
        """,
    },
    "03": {
        "pyramid_order": """
            out = {}
            i = 1
            while i <= 6 - n:
                a = previous[i + 1] if n < 5 else mmsm.top_input(previous[i + 1])
                out[i] = mmsm.units[f"MS{n}_{i}"](a, previous[i])
                i += 1
            return out
        """,
        "ce_sums": """
            first = 1 if wiring == "paper" else 2
            for i in range(1, 5):
                total = torch.stack([ms[n, i] for n in range(first, 7 - i)]).sum(0)
                ce[i] = fuse[f"CE{i}"](total) if f"CE{i}" in fuse else total
        """,
    },
}

MORE_ALTERNATIVES = {  # a second correct answer per exercise: einsum, loops, other calls
    "01": {
        "su_forward": """
            h, w = b.shape[-2:]
            up = torch.nn.Upsample(size=(h, w), mode="bilinear", align_corners=False)(a)
            return self.bn(self.conv(torch.sub(up, b).abs_())).clamp(min=0)
        """,
        "su_param_count": """
            per_part = [channels * channels * 3 * 3, channels, channels, channels]
            total = 0
            for count in per_part:
                total += count
            return total
        """,
        "fusion_parts": "return 2 * torch.where(a < b, a, b), torch.where(a > b, a - b, b - a)",
    },
    "02": {
        "full_one_dense": """
            p = k // 2
            cols = F.unfold(F.pad(x, (p, p, p, p)), k)  # N × C·k² × H·W
            total = torch.einsum("nlp->np", cols).reshape(x.shape[0], 1, *x.shape[-2:])
            return total.repeat(1, x.shape[1], 1, 1)
        """,
        "full_one_fast": ["""
            p = k // 2
            padded = F.pad(s, (p, p, p, p))
            out = torch.zeros_like(s)
            for dy in range(k):
                for dx in range(k):
                    out = out + padded[..., dy:dy + s.shape[-2], dx:dx + s.shape[-1]]
            return out
        """, "return box_sum(torch.einsum('nchw->nhw', x)[:, None], k).expand_as(x)"],
        "msu_forward": """
            up = F.interpolate(a, size=tuple(b.shape[-2:]), mode="bilinear", align_corners=False)
            total = 0
            for k in self.kernel_sizes:
                f = (lambda t: t) if k == 1 else self.filters[str(k)]
                total = total + (f(up) - f(b)).abs()
            return F.relu(self.bn(self.conv(total)))
        """,
    },
}

WRONG = {  # exactly one exercise wrong
    "su_forward": "return torch.relu(self.bn(self.conv(F.interpolate(a, size=b.shape[-2:], mode='bilinear') + b)))",
    "su_param_count": "return 9 * channels**2 + 2 * channels",
    "fusion_parts": "return torch.minimum(a, b), torch.abs(a - b)",
    "full_one_dense": "return F.avg_pool2d(x, k, stride=1, padding=k // 2)",
    "full_one_fast": [None, "return F.avg_pool2d(x, k, stride=1, padding=k // 2) * k * k"],
    "msu_forward": "return torch.relu(self.bn(self.conv(torch.abs(F.interpolate(a, size=b.shape[-2:], mode='bilinear') - b))))",
    "pyramid_order": "return {i: mmsm.units[unit_name(n, i)](previous[i + 1], previous[i]) for i in range(1, 7 - n)}",
    "ce_sums": "ce.update({i: sum(ms[n, i] for n in range(1, 7 - i)) for i in range(1, 5)})",
}
KEY_OF = {"su_forward": "01", "su_param_count": "01", "fusion_parts": "01", "full_one_dense": "02",
          "full_one_fast": "02", "msu_forward": "02", "pyramid_order": "03", "ce_sums": "03"}  # fmt: skip
TEST_OF = {"su_forward": "su_forward_tests", "su_param_count": "su_param_count_tests",
           "fusion_parts": "fusion_parts_tests", "full_one_dense": "full_one_dense_tests",
           "full_one_fast": "full_one_fast_tests", "msu_forward": "msu_forward_tests",
           "pyramid_order": "pyramid_order_tests", "ce_sums": "ce_sums_tests"}  # fmt: skip


@pytest.mark.parametrize("key", ["01", "02"])
def test_more_correct_alternatives_get_full_marks(key, tmp_path):
    ns = es.namespace(key, MORE_ALTERNATIVES[key])
    verdict = es.record(key, es.answers_of(key, ns), tmp_path)
    assert es.points(verdict) == es.full(key), [(e.grade_id, [c.mistake for c in e.checks if not c.passed])
                                                for e in verdict.exercises]  # fmt: skip


@pytest.mark.parametrize("key", ["01", "02", "03"])
def test_correct_alternatives_get_full_marks(key, tmp_path):
    ns = es.namespace(key, ALTERNATIVES[key])
    verdict = es.record(key, es.answers_of(key, ns), tmp_path)
    assert es.points(verdict) == es.full(key), [(e.grade_id, [c.mistake for c in e.checks if not c.passed])
                                                for e in verdict.exercises]  # fmt: skip
    from m2s_lib.teaching.exercises import registry
    from m2s_lib.teaching.grading import scan

    exercises = registry.exercises(es.ASSIGNMENTS[key])
    for notebook in (es.master(key), es.submission(key, ALTERNATIVES[key], full=True)):  # no false flags
        assert scan.scan_notebook(notebook, exercises, es.master(key)) == {e.grade_id: [] for e in exercises}
    if key == "01":  # warnings are free, and kept as notes
        by_id = {e.grade_id: e for e in verdict.exercises}
        assert any("DeprecationWarning" in w for w in by_id["su_forward_tests"].warnings)
        assert any("UserWarning" in w for w in by_id["fusion_parts_tests"].warnings)


@pytest.mark.parametrize("solution", list(WRONG))
def test_one_wrong_exercise_costs_only_its_points(solution, tmp_path):
    key = KEY_OF[solution]
    ns = es.namespace(key, {solution: WRONG[solution]})
    got = es.points(es.record(key, es.answers_of(key, ns), tmp_path))
    full = es.full(key)
    wrong = TEST_OF[solution]
    assert {k: v for k, v in got.items() if k != wrong} == {k: v for k, v in full.items() if k != wrong}
    assert got[wrong] < full[wrong]  # its value checks fail; a separate dtype check may still pass


def test_failing_one_check_costs_that_share(tmp_path):
    """An SU that returns float32 for float64 inputs fails only the dtype check (1 of 8 points); its message
    names the check and the mistake first."""
    ns = es.namespace("01", {"su_forward": """
        a = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
        return torch.relu(self.bn(self.conv(torch.abs(a - b)))).float()
    """})
    verdict = es.record("01", es.answers_of("01", ns), tmp_path)
    su = next(e for e in verdict.exercises if e.grade_id == "su_forward_tests")
    assert su.points == su.max_points - 1
    (failed,) = [c for c in su.checks if not c.passed]
    assert failed.name == "dtype" and failed.mistake.startswith("dtype torch.float32 for a torch.float64 input")


def test_stub_prints_one_line_and_wrong_answer_shows_message_first(capsys):
    from m2s_lib.teaching.exercises import CheckFailed, check

    ns = es.namespace("01", {"su_forward": "raise NotImplementedError()", "fusion_parts": "return a + b, a - b"})
    check("su_forward_tests", ns["ScratchSU"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["Exercise 1 (`ScratchSU`) is not done yet: write it in the cell above, then run this cell."]
    with pytest.raises(CheckFailed) as info:
        check("fusion_parts_tests", ns["fusion_parts"])
    lines = info.value._render_traceback_()
    assert "check 'difference' failed: your output equals a − b" in lines[0] and len(lines) <= 4
    assert info.value.__suppress_context__  # no chained second traceback


def test_subclass_results_are_refused_without_a_kernel(tmp_path):
    """Patching comparisons inside the recording process changes nothing: the judge compares plain arrays."""
    import torch

    class Yes(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.allclose, torch.equal):
                return True
            return super().__torch_function__(func, types, args, kwargs or {})

    ns = es.namespace("02")
    answers = es.answers_of("02", ns)
    answers["full_one_dense_tests"] = (lambda x, k: torch.zeros_like(x).as_subclass(Yes),)
    verdict = es.record("02", answers, tmp_path)
    dense = next(e for e in verdict.exercises if e.grade_id == "full_one_dense_tests")
    assert dense.points == 0 and any("fools comparisons" in f for f in dense.flags)


@pytest.mark.parametrize("key", ["01", "03"])  # 02 has no cell that uses an answer; test_notebooks runs it
def test_untouched_stubs_run_to_the_end_in_student_mode(key, tmp_path):
    """Issue 26: the whole notebook with every stub untouched (01: one exercise wrong instead) runs to the end;
    each not-done test cell prints its one line, the wrong one's error output starts with the check's message,
    and no output holds a traceback of more than 5 lines."""
    import json
    import os

    import nbformat
    from nbclient import NotebookClient

    answers = {"fusion_parts": "return a + b, a - b"} if key == "01" else {}
    nb = es.submission(key, answers=answers, stubs=True, full=True)
    for index, cell in enumerate(nb["cells"]):
        cell.setdefault("id", f"cell-{index}")
    node = nbformat.reads(json.dumps(nb), as_version=4)
    saved = {k: os.environ.get(k) for k in ("MPLBACKEND", "OMP_NUM_THREADS", "M2S_GRADING_DIR")}
    os.environ.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    os.environ.pop("M2S_GRADING_DIR", None)
    try:
        NotebookClient(node, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(es.NOTEBOOKS)}}).execute()  # fmt: skip
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    outputs = {c.metadata.get("nbgrader", {}).get("grade_id"): c.outputs for c in node.cells if c.cell_type == "code"}
    errors = [(gid, o) for gid, outs in outputs.items() for o in outs if o.output_type == "error"]
    from m2s_lib.teaching.exercises import registry

    for exercise in registry.exercises(es.ASSIGNMENTS[key]):
        text = "".join(o.get("text", "") for o in outputs[exercise.grade_id] if o.output_type == "stream")
        if key == "01" and exercise.grade_id == "fusion_parts_tests":
            (error,) = [o for gid, o in errors if gid == exercise.grade_id]
            assert "check 'difference' failed: your output equals a − b" in error.traceback[0]
        else:
            assert text.strip() == f"{exercise.title} is not done yet: write it in the cell above, then run this cell."
    assert [gid for gid, _ in errors] == (["fusion_parts_tests"] if key == "01" else [])  # ran to the end
    assert all(len(o.traceback) <= 5 for _, o in errors)
