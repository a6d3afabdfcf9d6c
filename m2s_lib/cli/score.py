"""``m2s score``: score anyone's prediction maps, several methods side by side (registered into ``m2s_lib.cli``)."""
from __future__ import annotations

import argparse
import textwrap

from . import positive_int

__all__ = ["register", "run_score"]


def _pred(text: str):
    from ..engine.score import parse_pred

    try:
        return parse_pred(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score prediction maps of any method(s): Table 1, per-image scores, paired differences",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(
            """\
            Score the prediction maps of one or more methods against the masks of every test set under DATA
            (DATA/TestDataset/<set>/, the TestDataset folder, or one set folder). Each method's maps lie in
            DIR/<set>/<name>.png (as `m2s evaluate` writes them and as PraNet, Polyp-PVT and the M2SNet authors
            release them), or flat in DIR for a single set; PNG or JPG, 8- or 16-bit, any size (resized to the
            mask's size), matched to the masks by file name without extension.

            A missing map is an error, never silently left out of the mean; --allow-missing scores it as an
            all-zero map (counted in n). Extra maps, non-image files, resized, 16-bit, all-zero maps and maps with
            another extension than the masks are reported, one line each.

            Writes OUT/results.csv and OUT/results.md (the paper's Table 1 layout: one block per test set, one row
            per method: mDice mIoU wFm Sm maxEm MAE), OUT/per_image/<method>/<set>.csv, OUT/paired.csv (per-image
            Dice differences per test set, mean, 95 % t interval, verdict), OUT/input_report.csv and OUT/score.png.
            Conventions: docs/scoring.md.
            """
        ),
        epilog="example: m2s score --gt data/polyp --pred M2SNet=maps/M2SNet --pred PraNet=maps/PraNet "
               "--baseline PraNet --out runs/score",
    )
    p.add_argument("--gt", required=True, metavar="DATA", help="test data: DATA/TestDataset/<set>/masks, or one set")
    p.add_argument("--pred", required=True, action="append", type=_pred, metavar="NAME=DIR",
                   help="a method's name and its maps folder (repeat for several methods)")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (new or empty, unless --overwrite)")
    p.add_argument("--protocol", default="pranet", choices=["pranet", "authors"],
                   help="pranet (256 thresholds, default) or authors (soft Dice)")
    p.add_argument("--baseline", default=None, metavar="NAME",
                   help="compare every other method with this one (default: every pair, in the order given)")
    p.add_argument("--sets", nargs="+", default=None, metavar="SET", help="only these test sets (folder names)")
    p.add_argument("--allow-missing", action="store_true", help="score a missing map as an all-zero map")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier `m2s score` in OUT (its own files only); without it a non-empty OUT is refused")
    p.add_argument("--jobs", type=positive_int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> int:
    from ..engine.score import score_maps
    from ..engine.score_report import paired_lines, table1_blocks

    names = [name for name, _ in args.pred]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--pred names must differ: {', '.join(twice)} given twice")
    result = score_maps(
        args.gt, dict(args.pred), args.out, protocol=args.protocol, baseline=args.baseline, sets=args.sets,
        allow_missing=args.allow_missing, overwrite=args.overwrite, workers=args.jobs, progress=not args.no_progress,
    )  # fmt: skip
    print(f"protocol {result.protocol}")
    print("\n".join([*table1_blocks(result.results), *paired_lines(result.paired)]).rstrip())
    print(f"wrote {args.out}/results.csv, results.md, paired.csv, per_image/, input_report.csv and score.png")
    return 0
