"""``m2s evaluate``: score a checkpoint on every test set (registered into ``m2s_lib.cli``)."""
from __future__ import annotations

import argparse
import textwrap

from ..constants import TASKS
from . import image_side, positive_int

__all__ = ["register", "run_evaluate"]

_FORMATTER = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint on every test set (Table 1 for polyps)",
        formatter_class=_FORMATTER,
        description=textwrap.dedent(
            """\
            Predict every test set under DATA/TestDataset (or DATA itself) at the test size, upsample to each image's
            original size, and score with the task's metrics (polyp: mDice, mIoU, wFm, Sm, maxEm, MAE under the
            PraNet protocol). Writes OUT/<set>/<name>.png, OUT/results.csv (dataset, n, measures, protocol),
            OUT/results.md (with the paper's Table 1 layout) and OUT/per_image/<set>.csv. An OUT holding an earlier
            evaluation is refused unless --overwrite, which deletes that evaluation's files (nothing else). One process
            writes OUT at a time (a second one is refused, naming the first one's PID and start time).

            CHECKPOINT is an m2s training checkpoint (last.pt / best.pt) or the authors' released weights
            (then --model and --encoder say which network they belong to).
            """
        ),
        epilog="example: m2s evaluate --checkpoint runs/tiny/best.pt --data-root runs/data/synthetic-polyp --out runs/eval",
    )
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="last.pt / best.pt, or the authors' .pth; a run folder means its best.pt (else last.pt)")
    p.add_argument("--data-root", required=True, metavar="DATA", help="dataset root holding TestDataset/<set>/, or one set")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder for predictions and tables")
    p.add_argument("--sets", nargs="+", default=None, metavar="SET", help="only these test sets (folder names)")
    p.add_argument("--size", type=image_side, default=None, help="test size (default: the checkpoint's, 352 for the paper)")
    p.add_argument("--protocol", default=None, choices=["pranet", "authors"],
                   help="polyp protocol: pranet (256 thresholds, default) or authors (soft Dice)")
    p.add_argument("--task", default=None, choices=TASKS,
                   help="which metrics (default: the checkpoint's data.task)")
    p.add_argument("--model", default=None, choices=["m2snet", "msnet", "fpn"],
                   help="architecture the checkpoint must be (required for the authors' weights; default m2snet)")
    p.add_argument("--encoder", default="res2net50d", help="encoder of the authors' weights (default res2net50d)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier evaluation in OUT (its own files only); without it such a folder is refused")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..engine.evaluate import evaluate_checkpoint
    from ..engine.folder_lock import lock_folder
    from ..engine.run_folder import checkpoint_in
    from ..metrics import to_markdown

    checkpoint = checkpoint_in(args.checkpoint)
    with lock_folder(args.out, "m2s evaluate"):
        results = evaluate_checkpoint(
            checkpoint, args.data_root, args.out, size=args.size, protocol=args.protocol, sets=args.sets,
            device=args.device, batch_size=args.batch_size, model=args.model, encoder_name=args.encoder,
            task=args.task, progress=not args.no_progress, overwrite=args.overwrite,
        )  # fmt: skip
    print(to_markdown(results, floatfmt=".4f"))
    print(f"wrote {args.out}/results.csv, results.md and the predictions of {len(results)} test sets")
    return 0
