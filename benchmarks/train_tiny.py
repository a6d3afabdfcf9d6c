"""Benchmark: the ``tiny`` profile on a synthetic polyp set — time, images/s and test Dice after every epoch.

    OMP_NUM_THREADS=2 python benchmarks/train_tiny.py                 # 400 train / 5 × 20 test images
    python benchmarks/train_tiny.py --epochs 4 optim.lr=0.1           # profile overrides as for `m2s train`

The data is generated once (``m2s_lib.data.synthetic``) under ``--data-dir``, at the profile's difficulty (``tiny``:
``teaching``; ``data.synthetic_difficulty=realistic`` measures the harder level, see docs/data.md). After each
epoch the model is scored on the five synthetic test sets at their original size: the PraNet protocol's mean Dice over 256 thresholds (the
paper's table metric, the one the target refers to), per set and over all test images, and the Dice of the
map thresholded at 0.5. Training time excludes that scoring (printed separately).
The issue's target: test Dice ≥ 0.85 within 6 minutes of training on 2 CPU cores.
Writes ``--out``/benchmark.csv and the run's usual files; prints one line per epoch and a verdict.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

TARGET_DICE = 0.85
TARGET_SECONDS = 360.0
SHORT = {"CVC-300": "C300", "CVC-ClinicDB": "Clinic", "CVC-ColonDB": "Colon", "ETIS-LaribPolypDB": "ETIS"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=400, help="synthetic training images (default 400)")
    parser.add_argument("--n-test", type=int, default=20, help="images per synthetic test set, 5 sets (default 20)")
    parser.add_argument("--data-dir", default="runs/data", help="where the synthetic set is generated")
    parser.add_argument("--out", default="runs/bench-train-tiny", help="run folder (overwritten)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the profile's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS)")
    parser.add_argument("--profile", default="tiny", help="configuration profile (default tiny)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from m2s_lib.config import load_config
    from m2s_lib.data import SegmentationFolder, find_test_sets, load_mask
    from m2s_lib.data.synthetic import ensure_synthetic
    from m2s_lib.engine.predict import predict_dataset
    from m2s_lib.engine.trainer import Trainer
    from m2s_lib.metrics import BinaryMetrics, PolypMetrics

    cfg = load_config(profile=args.profile, overrides=args.overrides)
    cfg = cfg.override({"data.synthetic_n": args.n_train, "data.synthetic_n_test": args.n_test})
    d = cfg.data
    root = d.synthetic_root(args.data_dir, task="polyp")
    t0 = time.perf_counter()
    ensure_synthetic("polyp", root, d.synthetic_n, seed=d.synthetic_seed, size=d.synthetic_size,
                     n_test=d.synthetic_n_test, progress=False, difficulty=d.synthetic_difficulty)  # fmt: skip
    gen_s = time.perf_counter() - t0
    overrides = {"data.root": str(root), "run.progress": False}
    if args.epochs:
        overrides["optim.epochs"] = args.epochs
    cfg = cfg.override(overrides)
    test_sets = find_test_sets(root)
    print(f"benchmark: profile {args.profile}, {torch.get_num_threads()} torch threads "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}; data {root} ({gen_s:.1f} s to generate or check)", flush=True)

    rows: list[dict] = []
    clock = {"train": 0.0, "scoring": 0.0}

    def score(model) -> dict[str, dict[str, float]]:
        """Per test set: PraNet mean Dice (256 thresholds) and Dice of p > 0.5, at the original image size."""
        out = {}
        for name, folder in test_sets.items():
            ds = SegmentationFolder(folder, size=cfg.data.eval_size)
            pranet, binary = PolypMetrics("pranet", measures=("mDice",)), BinaryMetrics()
            for i, _, prob in predict_dataset(model, ds, batch_size=16, progress=False):
                gt = load_mask(ds.mask_paths[i]).astype(bool)
                pranet.update(prob, gt)
                binary.update(prob, gt)
            out[name] = {"n": len(ds), "mDice": pranet.results()["mDice"], "dice05": binary.results()["Dice"]}
        return out

    def on_epoch_end(trainer, row):
        clock["train"] += row["time_s"]
        t = time.perf_counter()
        res = score(trainer.model)
        scoring = time.perf_counter() - t
        clock["scoring"] += scoring
        n = sum(r["n"] for r in res.values())
        pooled = sum(r["mDice"] * r["n"] for r in res.values()) / n
        pooled05 = sum(r["dice05"] * r["n"] for r in res.values()) / n
        entry = {"epoch": row["epoch"], "train_s": clock["train"], "images_per_s": row["images_per_s"],
                 "train_loss": row["train_loss"], "val_dice": row["val_dice"], "test_dice": pooled,
                 "test_dice05": pooled05, **{f"dice_{k}": r["mDice"] for k, r in res.items()},
                 "scoring_s": scoring}  # fmt: skip
        rows.append(entry)
        per_set = " ".join(f"{SHORT.get(k, k)} {r['mDice']:.3f}" for k, r in res.items())
        print(f"epoch {row['epoch']:2d} | {clock['train']:6.1f} s training | {row['images_per_s']:5.1f} img/s | "
              f"loss {row['train_loss']:.4f} | val Dice {row['val_dice']:.3f} | test Dice {pooled:.3f} "
              f"(Dice@0.5 {pooled05:.3f}; {per_set}) | scoring {scoring:.1f} s", flush=True)  # fmt: skip

    trainer = Trainer(cfg, args.out, overwrite=True, callbacks=[on_epoch_end], log=lambda m: None)
    trainer.fit()

    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(Path(args.out) / "benchmark.csv", index=False)
    hit = df[df["test_dice"] >= TARGET_DICE]
    final = df.iloc[-1]
    print(f"total: {final['train_s']:.1f} s training + {clock['scoring']:.1f} s scoring, final test Dice "
          f"{final['test_dice']:.3f} (PraNet protocol; Dice@0.5 {final['test_dice05']:.3f}) on "
          f"{int(len(test_sets) * args.n_test)} synthetic test images")
    if len(hit):
        first = hit.iloc[0]
        ok = first["train_s"] <= TARGET_SECONDS
        print(f"target Dice ≥ {TARGET_DICE} first reached at epoch {int(first['epoch'])} after {first['train_s']:.1f} s "
              f"of training: {'within' if ok else 'OVER'} the {TARGET_SECONDS:.0f} s budget")
    else:
        print(f"target Dice ≥ {TARGET_DICE} NOT reached (best {df['test_dice'].max():.3f})")
    if df.iloc[0]["test_dice"] > 0.97:
        print("warning: test Dice > 0.97 after one epoch — the synthetic task is too easy to be informative")
    return 0


if __name__ == "__main__":
    sys.exit(main())
