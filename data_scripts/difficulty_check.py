"""How hard is the synthetic polyp data? Train a small M2SNet from scratch and print Dice per test set per epoch.

A calibration tool for the synthetic generator (not a test): the target is that the tiny profile's network
(resnet18d encoder, random init, ~160 px, a few hundred images) ends near Dice 0.85-0.95 on the synthetic test sets,
and does not reach > 0.97 after one epoch. Minimal loop: the paper's SGD recipe (momentum 0.9, weight decay 5e-4,
the authors' warm-up/linear-decay epoch schedule), structure loss, random flip + rotation, multi-scale batches.

    python data_scripts/difficulty_check.py --root runs/data/difficulty --n 400 --n-test 100 --epochs 8
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from m2s_lib.data import (
    MultiScaleCollate,
    SegmentationFolder,
    collate,
    find_test_sets,
    train_sizes_for,
)
from m2s_lib.losses import structure_loss
from m2s_lib.model import build_model
from m2s_lib.synthetic import ensure_synthetic


def dice_at_half(model, loader, device) -> float:
    """Mean per-image Dice of the prediction thresholded at 0.5 (empty/empty counts as 1)."""
    model.eval()
    scores = []
    with torch.no_grad():
        for batch in loader:
            prob = torch.sigmoid(model(batch["image"].to(device, non_blocking=True)))
            pred = (prob > 0.5).float()
            gt = batch["mask"].to(device)
            inter = (pred * gt).flatten(1).sum(1)
            total = pred.flatten(1).sum(1) + gt.flatten(1).sum(1)
            d = torch.where(total > 0, 2 * inter / total.clamp_min(1e-9), torch.ones_like(total))
            scores += d.tolist()
    model.train()
    return float(sum(scores) / max(len(scores), 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs/data/difficulty", help="synthetic dataset folder (made if absent)")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--data-size", type=int, default=256, help="synthetic image width")
    ap.add_argument("--size", type=int, default=160, help="network input size")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None, help="default 0.05 (sgd), 1e-3 (adam)")
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                    help="sgd: the paper's recipe; adam: a check that the data is learnable at all")
    ap.add_argument("--encoder", default="resnet18d")
    ap.add_argument("--model", default="m2snet")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default=None, help="write the per-epoch table here")
    ap.add_argument("--contrast", type=float, default=None,
                    help="calibration only: multiply every polyp style's contrast (generates in this process)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    gen_workers = max(1, args.workers)
    if args.contrast is not None:  # patch the styles of this process (so generate in this process)
        import dataclasses

        from m2s_lib import synthetic

        for k, st in synthetic.POLYP_STYLES.items():
            synthetic.POLYP_STYLES[k] = dataclasses.replace(st, contrast=st.contrast * args.contrast)
        gen_workers = 1
    root = ensure_synthetic("polyp", args.root, n=args.n, n_test=args.n_test, size=args.data_size, seed=args.seed,
                            progress=False, workers=gen_workers)
    print(f"data ready in {time.perf_counter() - t0:.1f} s: {root}", flush=True)
    train = SegmentationFolder(root, "TrainDataset", size=args.size, train=True)
    sizes = train_sizes_for(args.size)[-2:]
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, collate_fn=MultiScaleCollate(sizes),
                                         persistent_workers=args.workers > 0, pin_memory=device.type == "cuda")
    tests = {name: torch.utils.data.DataLoader(SegmentationFolder(p, size=args.size), batch_size=32,
                                               num_workers=args.workers, collate_fn=collate)
             for name, p in find_test_sets(root).items()}
    model = build_model(args.model, encoder_name=args.encoder, encoder_weights=None).to(device)
    if args.lr is None:
        args.lr = 0.05 if args.optimizer == "sgd" else 1e-3
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    train_eval = torch.utils.data.DataLoader(
        SegmentationFolder(root, "TrainDataset", size=args.size, names=train.names[:100]), batch_size=32,
        num_workers=args.workers, collate_fn=collate)
    history = []
    for epoch in range(args.epochs):
        # the authors' schedule: warm up then decay linearly, one value per epoch
        lr = args.lr * (1 - abs(2 * (epoch + 1) / (args.epochs + 1) - 1))
        for g in opt.param_groups:
            g["lr"] = lr
        te = time.perf_counter()
        losses = []
        for batch in loader:
            logits = model(batch["image"].to(device, non_blocking=True))
            loss = structure_loss(logits, batch["mask"].to(device, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch + 1, "lr": round(lr, 5), "loss": round(sum(losses) / len(losses), 4),
               "seconds": round(time.perf_counter() - te, 1)}
        row.update({name: round(dice_at_half(model, dl, device), 4) for name, dl in tests.items()})
        row["mean"] = round(sum(row[n] for n in tests) / len(tests), 4)
        row["train100"] = round(dice_at_half(model, train_eval, device), 4)  # eval-mode Dice on training images
        history.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(history, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
