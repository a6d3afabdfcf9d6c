"""Benchmark: a class of 30 submitting 01–07, graded with ``m2s course grade --jobs 2`` (target: ≤ 60 min on 2 cores).

    OMP_NUM_THREADS=1 python benchmarks/grade_class.py --work runs/bench-grade            # 30 × 7 submissions
    python benchmarks/grade_class.py --work runs/bench-grade --students 3 --assignments 01 06   # a sample

The course is released once into ``<work>/course`` (the classroom presets; grading applies the grading presets of
``m2s_lib/teaching/grading/presets.py``). The submissions are made from the released student versions and the
masters' solutions, per assignment in the ratio 4 correct : 4 buggy : 2 blank:

* correct: every solution region filled with the master's solution;
* buggy: the same with one exercise wrong (a typical mistake from :data:`MISTAKES`, a different exercise for each
  buggy student in turn);
* blank: the released notebook untouched.

One student's name is hostile HTML (the class report must escape it). Each assignment is graded by its own
``m2s course grade --jobs N`` call, timed; the total is their sum. With ``--students`` below 30 the script also
prints the extrapolation to 30 students (per-assignment wall time × 30 / students; an extrapolation, not a
measurement). The class report is ``<work>/course/report.html``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASS_SIZE = 30
TARGET_MINUTES = 60.0
ASSIGNMENTS = ("01", "02", "03", "04", "05", "06", "07")
HOSTILE = 'Zoë <img src=x onerror=alert(1)> & "Co"'  # no slash: it is a folder name

# A typical mistake per solution cell: (text of the master's solution region, what the buggy student wrote).
MISTAKES = {
    "su_forward": ("torch.abs(a - b)", "(a + b)"),
    "su_param_count": (" + channels + 2 * channels", ""),
    "fusion_parts": ("torch.abs(a - b)", "a - b"),
    "full_one_dense": ("padding=k // 2", "padding=0"),
    "full_one_fast": ("x.sum(dim=1, keepdim=True)", "x.mean(dim=1, keepdim=True)"),
    "msu_forward": ("total = total + torch.abs(f(a) - f(b))", "total = total + f(a) - f(b)"),
    "pyramid_order": ("coarse = mmsm.top_input(coarse)", "pass"),
    "ce_sums": ('ce[4] = fuse["CE4"](ms[1, 4] + ms[2, 4])', "ce[4] = ms[2, 4]"),
    "encode": ("maxpool(feats[0]) if maxpool is not None else F.max_pool2d(feats[0], 3, 2, 1)", "feats[0]"),
    "decode": ('F.interpolate(r["D1"], size=tuple(size), mode="bilinear", align_corners=False)', 'r["D1"]'),
    "boundary_weight": ("padding=15)", "padding=15, count_include_pad=False)"),
    "structure_loss": ("return (wbce + wiou).mean()", "return wbce.mean()"),
    "vgg_levels": ("(maps.repeat(1, 3, 1, 1) - mean) / std", "maps.repeat(1, 3, 1, 1)"),
    "lossnet_term": ("** 2", ".abs()"),
    "param_groups": ('"base_lr": encoder_lr', '"base_lr": head_lr'),
    "triangle_factor": ("x = (period + 1) / (periods + 1)", "x = period / periods"),
    "sgd_update": ("g + momentum * buf if nesterov else buf", "buf"),
    "pranet_curves": ("return dice, iou", "return iou, dice"),
    "mae": ("normalise_map(pred8) - gt", "pred8 / 255 - gt"),
}
_REGION = re.compile(r"( *)### BEGIN SOLUTION\n(.*?) *### END SOLUTION\n?", re.S)  # code after the region keeps its indent


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _gid(cell: dict) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def answer(master_cell: dict, wrong: bool) -> str:
    """The master's solution cell as a student writes it (markers removed); ``wrong``: with its typical mistake."""
    text = _REGION.sub(lambda m: m.group(2), _source(master_cell))
    if wrong:
        old, new = MISTAKES[_gid(master_cell)]
        if old not in text:
            raise SystemExit(f"benchmarks/grade_class.py: the mistake of {_gid(master_cell)} no longer matches the "
                             f"master ({old!r} not found): update MISTAKES")  # fmt: skip
        text = text.replace(old, new, 1)
    return text


def make_submission(released: dict, master: dict, kind: str, wrong_cell: str | None = None) -> dict:
    """``kind``: correct, buggy (``wrong_cell`` wrong) or blank."""
    nb = json.loads(json.dumps(released))
    if kind == "blank":
        return nb
    answers = {_gid(c): c for c in master["cells"] if (c.get("metadata", {}).get("nbgrader") or {}).get("solution")
               and c["cell_type"] == "code"}  # fmt: skip
    for cell in nb["cells"]:
        gid = _gid(cell)
        if cell["cell_type"] == "code" and gid in answers and "BEGIN SOLUTION" in _source(answers[gid]):
            cell["source"] = answer(answers[gid], wrong=kind == "buggy" and gid == wrong_cell)
    return nb


def students(n: int) -> list[str]:
    names = [f"student{i + 1:02d}" for i in range(n)]
    if n >= 3:
        names[2] = HOSTILE
    return names


def kinds(n: int) -> list[str]:
    """4 correct : 4 buggy : 2 blank, interleaved (a sample of 3 has one of each)."""
    cycle = ("correct", "buggy", "blank", "correct", "buggy", "correct", "buggy", "blank", "correct", "buggy")
    return [cycle[i % len(cycle)] for i in range(n)]


def make_class(course: Path, subs: Path, assignment: str, n: int) -> dict[str, int]:
    from m2s_lib.teaching.exercises import registry

    released = json.loads((course / "release" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8"))
    master = json.loads((ROOT / "notebooks" / f"{assignment}.ipynb").read_text(encoding="utf-8"))
    cells = [s for e in registry.exercises(assignment[:2]) for s in e.solution_ids if s in MISTAKES]
    counts: dict[str, int] = {}
    buggy = 0
    for name, kind in zip(students(n), kinds(n)):
        wrong = cells[buggy % len(cells)] if kind == "buggy" and cells else None
        buggy += kind == "buggy"
        folder = subs / assignment / name / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nb = make_submission(released, master, kind, wrong)
        (folder / f"{assignment}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def m2s(*args: str, nice: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "m2s_lib.cli", *args]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MPLBACKEND": "Agg"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/bench-grade", help="folder for the course and the submissions")
    p.add_argument("--students", type=int, default=CLASS_SIZE, help="submissions per assignment (default 30)")
    p.add_argument("--assignments", nargs="+", default=list(ASSIGNMENTS), metavar="NN")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--nice", type=int, default=0, help="run the grading under nice -n N")
    args = p.parse_args(argv)
    work = (ROOT / args.work).resolve() if not Path(args.work).is_absolute() else Path(args.work)
    course, subs = work / "course", work / "submissions"
    if not (course / "course.json").is_file():
        start = time.perf_counter()
        done = m2s("course", "release", "--out", str(course), "--assignments", *args.assignments, "--no-package")
        if done.returncode:
            print(done.stdout + done.stderr, file=sys.stderr)
            return 1
        print(f"released {len(args.assignments)} assignment(s) in {time.perf_counter() - start:.0f} s")
    state = json.loads((course / "course.json").read_text(encoding="utf-8"))
    names = {a[:2]: a for a in state["assignments"]}
    missing = [a for a in args.assignments if a[:2] not in names]
    if missing:
        print(f"{course} lacks {missing}: delete {work} to release again", file=sys.stderr)
        return 1
    print(f"{platform.node()}: {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}; {args.students} "
          f"submission(s) per assignment, --jobs {args.jobs}")  # fmt: skip
    times = {}
    for key in args.assignments:
        assignment = names[key[:2]]
        counts = make_class(course, subs, assignment, args.students)
        start = time.perf_counter()
        done = m2s("course", "grade", "--course", str(course), "--submissions", str(subs / assignment), "--jobs",
                   str(args.jobs), "--regrade", nice=args.nice)  # fmt: skip
        times[assignment] = time.perf_counter() - start
        tail = [line for line in (done.stdout + done.stderr).splitlines() if "submission(s) graded" in line]
        print(f"{assignment:<32} {times[assignment]:7.0f} s wall for {args.students} ({counts}); "
              f"{times[assignment] / args.students:5.1f} s per submission; rc {done.returncode}; "
              f"{tail[0] if tail else (done.stderr.strip().splitlines() or ['?'])[-1]}")  # fmt: skip
    total = sum(times.values())
    print(f"total: {total / 60:.1f} min wall for {args.students} × {len(times)} submissions "
          f"(load {os.getloadavg()[0]:.1f})")  # fmt: skip
    if args.students != CLASS_SIZE:
        scaled = total * CLASS_SIZE / args.students
        print(f"extrapolated to {CLASS_SIZE} students (× {CLASS_SIZE}/{args.students}, not measured): {scaled / 60:.1f} "
              f"min: {'within' if scaled <= TARGET_MINUTES * 60 else 'over'} the {TARGET_MINUTES:.0f}-min target")
    else:
        print(f"{'within' if total <= TARGET_MINUTES * 60 else 'over'} the {TARGET_MINUTES:.0f}-min target")
    print(f"class report: {course / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
