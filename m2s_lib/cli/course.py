"""``m2s course release|grade|points``: the notebooks as nbgrader assignments (docs/teaching.md)."""
from __future__ import annotations

import argparse
import sys

from . import positive_int

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "course",
        help="classroom: release the notebooks as nbgrader assignments, grade submissions",
        description="Release the course (nbgrader source/ and release/ folders with classroom presets) and grade "
                    "submissions (autograde, feedback, grades.csv). Offline. See docs/teaching.md.",
    )  # fmt: skip
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    r = actions.add_parser("release", help="make the course folder: student versions of the notebooks",
                           description="One nbgrader assignment per notebook 01-09, with the classroom presets "
                                       "(the tiny profile's `make reproduce` parameters) in a locked parameters cell.")
    r.add_argument("--out", required=True, metavar="DIR", help="course folder (created; nbgrader's course root)")
    r.add_argument("--assignments", nargs="+", default=None, metavar="A",
                   help="only these, by number or name (e.g. 01 05_lossnet; default: 01 to 09)")
    r.add_argument("--profile", default=None, help="profile the presets derive from (default tiny)")
    r.add_argument("-p", "--parameter", action="append", default=[], metavar="NB:NAME=VALUE",
                   help="change a preset (YAML value, repeatable), e.g. -p 06:epochs=2")
    r.add_argument("--overrides", default=None, metavar="YAML",
                   help="{notebook file: {name: value}} applied last (e.g. tests/notebook_overrides.yaml)")
    r.add_argument("--overwrite", action="store_true", help="generate assignments already in DIR again")
    r.add_argument("--package-url", default=None, metavar="URL",
                   help="where the install cell fetches the student package when no wheel lies beside the notebook "
                        "(e.g. the wheel's URL for Colab)")
    r.add_argument("--no-package", action="store_true", help="skip the student package (DIR/student/, the wheel)")
    r.set_defaults(func=run_release)

    g = actions.add_parser("grade", help="autograde submissions, write feedback and grades.csv",
                           description="Submissions as nbgrader collects them: DIR/<student>/<assignment>/"
                                       "<assignment>.ipynb. Malformed ones are reported; the rest are graded.")
    g.add_argument("--course", required=True, metavar="DIR", help="the folder made by `m2s course release`")
    g.add_argument("--submissions", required=True, metavar="DIR", help="<student>/<assignment>/<notebook> folders")
    g.add_argument("--out", default=None, metavar="DIR", help="where grades.csv and problems.csv go (default: --course)")
    g.add_argument("--timeout", type=positive_int, default=None, metavar="S",
                   help="seconds per cell (default: per assignment, 3x the master's time; docs/teaching.md)")
    g.add_argument("--submission-timeout", type=positive_int, default=None, metavar="S",
                   help="seconds per submission (default: per assignment)")
    g.add_argument("--memory", type=float, default=None, metavar="GIB",
                   help="address-space cap per submission in GiB (default 8; 0: none)")
    g.add_argument("--jobs", type=positive_int, default=1, metavar="N", help="submissions graded at once (default 1)")
    g.add_argument("--regrade", action="store_true", help="grade every submission again (default: new or changed only)")
    g.add_argument("--unsandboxed", action="store_true",
                   help="run without bubblewrap even where it exists (the student's code gets your rights)")
    g.set_defaults(func=run_grade)

    x = actions.add_parser("export", help="grades.csv as an LMS import file (Canvas, Moodle, or one row per student)",
                           description="One row per student, one column per assignment (layouts in docs/teaching.md).")
    x.add_argument("--course", required=True, metavar="DIR", help="the course folder (reads its grades.csv)")
    x.add_argument("--format", required=True, choices=("canvas", "moodle", "wide"))
    x.add_argument("--out", default=None, metavar="CSV", help="default: <course>/export-<format>.csv")
    x.set_defaults(func=run_export)

    t = actions.add_parser("points", help="print the points table (Markdown) of the assignments")
    t.add_argument("--update", default=None, metavar="MD",
                   help="replace the table between <!-- points-table:start/end --> in this file (docs/teaching.md)")
    t.set_defaults(func=run_points)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _parameters(args: argparse.Namespace) -> dict:
    from ..teaching import nbcheck, reproduce
    from ..teaching.course import assignment_notebooks

    notebooks = assignment_notebooks()
    extra = reproduce.parse_parameter_options(args.parameter, notebooks)
    if args.overrides:
        overrides = nbcheck.load_overrides(args.overrides)
        extra = reproduce._merge(extra, {k: v for k, v in overrides.items() if k in {p.name for p in notebooks}})
    return extra


def run_release(args: argparse.Namespace) -> int:
    from ..teaching.course import CLASSROOM_PROFILE, release

    try:
        release(args.out, args.assignments, args.profile or CLASSROOM_PROFILE, _parameters(args), args.overwrite,
                package=not args.no_package, package_url=args.package_url)
    except FileExistsError as err:
        print(f"m2s course release: {err}", file=sys.stderr)
        return 1
    return 0


def run_grade(args: argparse.Namespace) -> int:
    from ..engine.folder_lock import FolderBusyError
    from ..teaching.course import grade

    try:
        grade(args.course, args.submissions, args.out, args.timeout, submission_timeout=args.submission_timeout,
              jobs=args.jobs, regrade=args.regrade, sandbox=False if args.unsandboxed else None,
              memory_gib=args.memory)  # fmt: skip
    except (FileNotFoundError, FolderBusyError) as err:
        print(f"m2s course grade: {err}", file=sys.stderr)
        return 1
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..teaching.grading.results import export_grades

    course = Path(args.course)
    out = Path(args.out) if args.out else course / f"export-{args.format}.csv"
    try:
        export_grades(course / "grades.csv", args.format, out)
    except (FileNotFoundError, ValueError) as err:
        print(f"m2s course export: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def run_points(args: argparse.Namespace) -> int:
    import re
    from pathlib import Path

    from ..atomic import write_text
    from ..teaching.course import points_table

    table = points_table()
    if not args.update:
        print(table)
        return 0
    path = Path(args.update)
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(r"(<!-- points-table:start -->\n).*?(\n<!-- points-table:end -->)", re.S)
    if not pattern.search(text):
        print(f"m2s course points: {path} has no <!-- points-table:start --> ... <!-- points-table:end --> block",
              file=sys.stderr)
        return 1
    write_text(path, pattern.sub(lambda m: m.group(1) + table + m.group(2), text))
    print(f"updated the points table in {path}")
    return 0
