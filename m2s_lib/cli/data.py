"""``m2s data``: synthesise, download, verify and list datasets.

    m2s data synth --task polyp --n 1000 --out data/synth_polyp [--seed 0 --size 352 --n-test N]
    m2s data download polyp --root data/polyp [--force] [--source ARCHIVE_OR_FOLDER]
    m2s data verify polyp --root data/polyp [--deep]
    m2s data list
"""
from __future__ import annotations

import argparse
import time

from ..constants import TASKS

__all__ = ["register", "run_download", "run_list", "run_synth", "run_verify"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="synthesise, download, verify or list datasets",
        description="Datasets of the paper's four tasks: synthetic stand-ins (offline default) and the real ones.",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")

    s = dsub.add_parser(
        "synth",
        help="write a synthetic dataset in the real dataset's layout",
        description="Write a procedural dataset (deterministic by --seed) in the layout of the real one. Does "
                    "nothing when --out already holds the same dataset; refuses to touch a folder holding anything "
                    "else.",
    )
    s.add_argument("--task", required=True, choices=TASKS,
                   help="polyp (colonoscopy, PraNet layout with five test sets), busi (breast ultrasound, "
                        "labels.csv for 4-fold CV), covid (lung CT infection), oct (GOALS-like layer labels)")
    s.add_argument("--n", type=int, default=1000, help="training images (busi: all images) (default 1000)")
    s.add_argument("--out", required=True, help="dataset folder to create (must not exist or be empty)")
    s.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files (default 0)")
    s.add_argument("--size", type=int, default=352, help="image width in pixels, 32 to 2048 (default 352)")
    s.add_argument("--n-test", type=int, default=None, dest="n_test",
                   help="images per test set (default n // 5, at least 1; ignored for busi)")
    s.add_argument("--difficulty", default="realistic", choices=["realistic", "teaching"],
                   help="polyp only: realistic (default) or teaching (polyps stand out more; the tiny profile's data)")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default 2 for large sets)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_synth)

    d = dsub.add_parser(
        "download",
        help="download, verify, unpack and lay out a real dataset",
        description="Download a dataset from the authors' Google-Drive links (gdown, resumable), verify it, unpack "
                    "it and lay it out as the library reads it. A second run only verifies. Nothing is deleted or "
                    "overwritten without --force. Offline: use --source with a file downloaded by hand.",
    )
    d.add_argument("name", help="dataset or part: polyp, polyp-train, polyp-test, video-polyp, covid, busi, goals "
                                "(`m2s data list`)")
    d.add_argument("--root", required=True, help="dataset folder (e.g. data/polyp)")
    d.add_argument("--force", action="store_true",
                   help="download again and replace what is already in --root")
    d.add_argument("--source", default=None,
                   help="use this archive or unpacked folder instead of downloading (manual route; required for "
                        "goals); one part at a time")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=run_download)

    v = dsub.add_parser(
        "verify",
        help="check a dataset folder (layout, counts, pairing)",
        description="Check that a dataset folder has the expected layout, image/mask pairs and file counts "
                    "(published counts for real data, the manifest's for synthetic data).",
    )
    v.add_argument("name", help="dataset or part (polyp, polyp-test, covid, busi, goals/oct, ...)")
    v.add_argument("--root", required=True, help="dataset folder")
    v.add_argument("--deep", action="store_true", help="also decode every image and mask (slow)")
    v.set_defaults(func=run_verify)

    ls = dsub.add_parser("list", help="list the datasets, links, counts and licences",
                         description="The real datasets: Google-Drive ids, mirrors, expected counts, citations.")
    ls.set_defaults(func=run_list)


def run_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.synthetic import MANIFEST, ensure_synthetic

    t0 = time.perf_counter()
    existed = (Path(args.out) / MANIFEST).is_file()
    root = ensure_synthetic(args.task, args.out, n=args.n, seed=args.seed, size=args.size, n_test=args.n_test,
                            progress=not args.quiet, workers=args.workers, difficulty=args.difficulty)
    dt = time.perf_counter() - t0
    if existed:
        print(f"{root} already holds this synthetic {args.task} dataset; nothing to do")
    else:
        print(f"wrote synthetic {args.task} dataset to {root} in {dt:.1f} s")
    return 0


def run_download(args: argparse.Namespace) -> int:
    import warnings

    from ..data.download import CountMismatchWarning, download

    with warnings.catch_warnings():  # count mismatches are printed by download() itself
        warnings.simplefilter("ignore", CountMismatchWarning)
        reports = download(args.name, args.root, force=args.force, source=args.source, progress=not args.quiet)
    return 0 if reports else 1


def run_verify(args: argparse.Namespace) -> int:
    from ..data.download import verify

    report = verify(args.name, args.root, deep=args.deep)
    return 0 if report["ok"] else 1


def run_list(args: argparse.Namespace) -> int:
    from ..data.download import list_datasets

    print(list_datasets(), end="")
    return 0
