"""``m2s predict``: segment image files with a checkpoint (registered into ``m2s_lib.cli``)."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from . import image_side

__all__ = ["register", "run_predict"]

_FORMATTER = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images with a checkpoint: masks and overlays",
        formatter_class=_FORMATTER,
        description=textwrap.dedent(
            """\
            Segment image files or folders (a folder's images/ subfolder is used when present). For each image:
            OUT/masks/<name>.png (0/255 at --threshold, or the label values for several classes),
            OUT/probs/<name>.png (8-bit probability), OUT/overlays/<name>.png, and OUT/predictions.csv.
            Unreadable images are skipped and listed in OUT/skipped.csv (exit status 1); the others are written.
            An OUT holding earlier predictions is refused unless --overwrite, which deletes them (nothing else).
            """
        ),
        epilog="example: m2s predict --checkpoint runs/tiny/best.pt photo.jpg more_images/ --out runs/pred",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="last.pt / best.pt, or the authors' .pth")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder")
    p.add_argument("--size", type=image_side, default=None, help="test size (default: the checkpoint's)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the masks (default 0.5)")
    p.add_argument("--model", default=None, choices=["m2snet", "msnet", "fpn"], help="architecture (authors' weights)")
    p.add_argument("--encoder", default="res2net50d", help="encoder of the authors' weights (default res2net50d)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda")
    p.add_argument("--overwrite", action="store_true",
                   help="replace earlier predictions in OUT (their own files only); without it such a folder is refused")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from ..engine.checkpoint import load_model
    from ..engine.folder_lock import lock_folder
    from ..engine.predict import predict_files
    from ..engine.run_folder import checkpoint_in

    model, cfg = load_model(checkpoint_in(args.checkpoint), device=args.device, model=args.model,
                            encoder_name=args.encoder)  # fmt: skip
    with lock_folder(args.out, "m2s predict"):  # one writer per output folder
        df = predict_files(
            model, args.inputs, args.out, size=args.size or cfg.data.eval_size, threshold=args.threshold,
            class_values=cfg.data.class_values, progress=not args.no_progress, overwrite=args.overwrite,
        )  # fmt: skip
    print(f"wrote masks and overlays of {len(df)} images to {args.out}")
    skipped = df.attrs.get("skipped", [])
    if skipped:
        names = ", ".join(Path(s["input"]).name for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(f"m2s predict: error: skipped {len(skipped)} unreadable file(s): {names} (reasons in "
              f"{Path(args.out) / 'skipped.csv'}); replace or remove them and predict them again", file=sys.stderr)
        return 1
    return 0
