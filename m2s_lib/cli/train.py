"""``m2s train`` (registered into ``m2s_lib.cli``)."""
from __future__ import annotations

import argparse
import sys
import textwrap

__all__ = ["register", "resolve_train_config", "run_train"]

_FORMATTER = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    from ..config import PROFILES

    # -- train ----------------------------------------------------------------------------------------------------
    p = sub.add_parser(
        "train",
        help="train M2SNet (or MSNet / the FPN baseline) with the paper's recipe",
        formatter_class=_FORMATTER,
        description=textwrap.dedent(
            f"""\
            Train with the paper's recipe and write OUT/last.pt, OUT/best.pt, OUT/metrics.csv and OUT/config.yaml.

            The configuration is built in layers: the profile, then --config FILE, then the options below, then
            KEY=VALUE overrides with dotted keys (e.g. optim.lr=0.01 data.train_sizes=[224,352]
            model.name=msnet loss.lossnet_weight=0). --print-config shows the result without training.

            Profiles: {", ".join(PROFILES)}.
              tiny         CPU teaching run: synthetic polyps, resnet18d from scratch, small images, minutes.
              paper-polyp  Res2Net-50 (ImageNet), 352 px, batch 16, multi-scale, LossNet 0.1, 50 epochs.
              paper-covid / paper-busi / paper-oct: the same recipe, 200 / 100 / 100 epochs.

            One process writes OUT at a time: a second command on the same OUT is refused, naming the first one's
            PID and start time (OUT/.m2s.lock; left by a killed process, it is taken over). After an interruption,
            `m2s train --out OUT --resume` continues in every state: from last.pt, or from config.yaml when no
            epoch was saved (the messages of Ctrl-C, a non-finite loss and a full disk name that command).

            Several GPUs: torchrun --nproc_per_node 4 -m m2s_lib.cli train --profile paper-polyp ...
            (optim.batch_size stays the global batch; only rank 0 writes files).
            """
        ),
        epilog="example: m2s train --profile tiny --out runs/tiny --epochs 3",
    )
    p.add_argument("--profile", default=None,
                   help="named settings (default: tiny, or the --config file's profile: entry; with --resume: the "
                   "run's own settings)")
    p.add_argument("--config", default=None, metavar="FILE", help="YAML file of settings (same sections as config.yaml)")
    p.add_argument("--data-root", default=None, metavar="DATA",
                   help="dataset root: DATA/TrainDataset or DATA/{images,masks} (default: synthetic data of the task)")
    p.add_argument("--out", default=None, metavar="OUT", help="output folder for checkpoints, metrics.csv, config.yaml")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="number of epochs (optim.epochs)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="global batch size (optim.batch_size)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1 (run.device)")
    p.add_argument("--seed", type=int, default=None, help="random seed (run.seed)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from OUT/last.pt (with its settings; --epochs may not go below the "
                   "epochs done). A run that saved no epoch (stopped in its first epoch) starts again from "
                   "OUT/config.yaml, and KEY=VALUE overrides may then change any setting")
    p.add_argument("--overwrite", action="store_true",
                   help="delete a previous run's last.pt/best.pt/metrics.csv/config.yaml in OUT and start again")
    p.add_argument("--stop-after", type=int, default=None, metavar="E",
                   help="pause after epoch E (continue later with --resume)")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.lr=0.01")
    p.set_defaults(func=run_train)


def resolve_train_config(args: argparse.Namespace):
    """The :class:`~m2s_lib.config.Config` that ``m2s train`` would use for these arguments."""
    from pathlib import Path

    from ..config import Config, load_config

    overrides = list(args.overrides or [])
    base_profile = args.profile
    cfg = None
    if args.resume and args.profile is None and args.config is None:
        if args.out is None:
            raise ValueError("--resume needs --out (the folder of the run to continue)")
        from ..config import read_yaml
        from ..engine.checkpoint import load_checkpoint

        last, saved_yaml = Path(args.out) / "last.pt", Path(args.out) / "config.yaml"
        if last.is_file():
            cfg = Config.from_saved(load_checkpoint(last)["config"])
        elif saved_yaml.is_file():  # a run that saved no epoch: its settings
            cfg = Config.from_saved(read_yaml(saved_yaml))
        else:
            raise FileNotFoundError(f"nothing to resume in {args.out}: it holds no run (no last.pt, no config.yaml)")
    if cfg is None:
        cfg = load_config(args.config, profile=base_profile, default_profile="tiny")
    direct = {
        "data.root": args.data_root,
        "run.out": args.out,
        "optim.epochs": args.epochs,
        "optim.batch_size": args.batch_size,
        "run.device": args.device,
        "run.seed": args.seed,
    }
    cfg = cfg.override({k: v for k, v in direct.items() if v is not None})
    return cfg.override(overrides)


def _resume_hint(trainer) -> str:
    """What to do after Ctrl-C: the exact command that continues the run (or why there is none)."""
    if trainer.out is not None and (trainer.out / "last.pt").is_file():
        return (f"interrupted after epoch {trainer.epoch}/{trainer.config.optim.epochs}; continue with "
                f"`m2s train --out {trainer.out} --resume`")
    if trainer.out is not None and (trainer.out / "config.yaml").is_file():
        return ("interrupted before the first epoch ended: no epoch was saved; start the run again with "
                f"`m2s train --out {trainer.out} --resume` (it reads {trainer.out / 'config.yaml'})")
    return "interrupted before the first epoch ended: nothing was saved; run the same command again to start"


def run_train(args: argparse.Namespace) -> int:
    from ..engine.trainer import Trainer

    cfg = resolve_train_config(args)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    if cfg.run.out is None:
        raise ValueError("--out is required: the folder for last.pt, best.pt, metrics.csv and config.yaml")
    trainer = Trainer(cfg, cfg.run.out, resume=args.resume, overwrite=args.overwrite)
    try:
        try:
            trainer.fit(stop_after_epoch=args.stop_after)
        except KeyboardInterrupt:
            if trainer.is_main:
                print(f"m2s train: {_resume_hint(trainer)}", file=sys.stderr, flush=True)
            return 130
        if trainer.is_main:
            best = ""
            if trainer.best_epoch is not None and trainer.val_set is not None:
                best = f", best.pt = epoch {trainer.best_epoch} (val Dice {trainer.best_score:.4f})"
            print(f"done: {trainer.epoch}/{cfg.optim.epochs} epochs in {trainer.out}{best}", flush=True)
    finally:
        trainer.close()
    return 0
