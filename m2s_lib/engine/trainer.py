"""Training: the paper's recipe (DESIGN.md §2) in a :class:`Trainer` that runs on a laptop CPU or several GPUs.

Recipe
    SGD (momentum 0.9, weight decay 5e-4, Nesterov as in the authors' script) with two parameter groups: the
    encoder at ``encoder_lr_ratio × lr`` (0.005) and everything else at ``lr`` (0.05) — the paper's setting, which
    the authors' script misses (its group filter matches nothing, so their encoder trains at 0.05). Warm-up and
    linear decay with the authors' triangle ``lr · (1 − |2(e+1)/(E+1) − 1|)`` per epoch ``e`` of ``E``, or the same
    triangle per optimiser step (``optim.schedule_unit=step``). Batch 16, one of {224, …, 352} per batch, random
    flips and ±10° rotations (``m2s_lib.data``), loss ``structure_loss + 0.1 · LossNet`` (``m2s_lib.losses``).

Machinery
    device auto-selection (CUDA, then CPU); AMP and ``channels_last`` on CUDA; gradient clipping; checkpoints
    written atomically (``last.pt`` every epoch, ``best.pt`` on the best validation Dice) holding the config, epoch,
    step, model, optimiser, scheduler, AMP scaler and RNG states; ``resume=True`` continues from ``last.pt`` —
    on CPU with the same seed the weights are bitwise identical to an uninterrupted run (the data order of epoch
    ``e`` comes from a generator seeded with ``(seed, e)``, every other random draw from the restored RNG states);
    nothing is overwritten without ``overwrite=True``; a non-finite loss stops with the step, the batch's files and
    the last good checkpoint; ``metrics.csv`` gets one row per epoch (:data:`METRICS_COLUMNS`); ``tqdm.auto``
    progress plus one plain summary line per epoch (readable in papermill logs); callbacks for live plots.

Several GPUs
    ``torchrun --nproc_per_node N -m m2s_lib.cli train ...``: each process finds ``RANK`` / ``WORLD_SIZE`` /
    ``LOCAL_RANK``, joins the process group (NCCL on GPUs, gloo on CPU), wraps the model in
    ``DistributedDataParallel`` and reads its shard through a ``DistributedSampler``; ``optim.batch_size`` stays the
    *global* batch (16 = 4 GPUs × 4). Only rank 0 validates, prints, writes checkpoints and ``metrics.csv``.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from .atomic import atomic_path, copy_file
from .config import Config, get_profile

__all__ = [
    "METRICS_COLUMNS",
    "CHECKPOINT_FORMAT",
    "RUN_FILES",
    "NonFiniteLossError",
    "RunExistsError",
    "TriangularSchedule",
    "lr_factor",
    "select_device",
    "seed_everything",
    "distributed_info",
    "build_optimizer",
    "build_scheduler",
    "build_datasets",
    "load_checkpoint",
    "model_from_checkpoint",
    "Trainer",
    "train",
]

METRICS_COLUMNS = (
    "epoch", "step", "lr_encoder", "lr_head", "train_loss", "train_structure", "train_lossnet",
    "val_dice", "val_iou", "val_mae", "time_s", "images_per_s",
)  # fmt: skip
CHECKPOINT_FORMAT = "m2s-checkpoint/1"
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "config.yaml")
# Settings a resumed run may change; anything else must match the checkpoint's config.
RESUME_MAY_CHANGE = ("run.", "optim.epochs", "data.num_workers", "data.root", "data.val_root", "data.synthetic_dir")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step, the batch's files and the last checkpoint."""


class RunExistsError(RuntimeError):
    """The output folder already holds a run and neither ``resume`` nor ``overwrite`` was asked for."""


# ---------------------------------------------------------------------------------------------------------------
# Schedule, optimiser, devices, seeds
# ---------------------------------------------------------------------------------------------------------------
def lr_factor(index: int, total: int, peak: float = 0.5) -> float:
    """The authors' triangle ``1 − |2(i+1)/(T+1) − 1|`` for period ``i`` of ``T`` (0-based; never below 0).

    ``peak`` moves the top of the triangle to the fraction ``x = (i+1)/(T+1) = peak`` of the run (rising ``x/peak``,
    then falling ``(1−x)/(1−peak)``); the default 0.5 is the authors' formula exactly.
    """
    x = (index + 1) / (total + 1)
    if peak == 0.5:
        return max(0.0, 1.0 - abs(2.0 * x - 1.0))
    return max(0.0, min(x / peak, (1.0 - x) / (1.0 - peak)))


class TriangularSchedule:
    """Picklable multiplier for ``LambdaLR``: ``lr_factor(k, total, peak)`` (``total`` epochs or optimiser steps)."""

    def __init__(self, total: int, peak: float = 0.5):
        self.total = int(total)
        self.peak = float(peak)

    def __call__(self, k: int) -> float:
        return lr_factor(k, self.total, self.peak)


class ConstantSchedule:
    def __call__(self, k: int) -> float:
        return 1.0


def select_device(spec: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """``auto``: ``cuda:<local_rank>`` when CUDA is available, else CPU; otherwise ``torch.device(spec)``."""
    if spec is None or str(spec) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank or 0)
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} was asked for but CUDA is not available: use run.device=cpu")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def distributed_info() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` in a single process)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, world, int(os.environ.get("LOCAL_RANK", 0))


def _rng_state() -> dict[str, Any]:
    """Every global RNG state, in types that ``torch.load(weights_only=True)`` accepts (no pickled numpy)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):  # a different number of GPUs: keep what is there
            torch.cuda.set_rng_state_all(state["cuda"])


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD (or AdamW) with group 0 = the encoder (``encoder_lr``) and group 1 = everything else (``lr``)."""
    model = model.module if isinstance(model, DistributedDataParallel) else model
    encoder = getattr(model, "encoder", None)
    enc_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    enc = [p for p in model.parameters() if id(p) in enc_ids and p.requires_grad]
    head = [p for p in model.parameters() if id(p) not in enc_ids and p.requires_grad]
    o = cfg.optim
    groups = [
        {"params": enc, "lr": o.encoder_lr, "name": "encoder"},
        {"params": head, "lr": o.lr, "name": "head"},
    ]
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                           nesterov=o.nesterov and o.momentum > 0)  # fmt: skip


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int):
    """``LambdaLR`` with the triangle over epochs (stepped once per epoch) or over all steps (once per step)."""
    o = cfg.optim
    if o.schedule == "constant":
        fn: Callable[[int], float] = ConstantSchedule()
    else:
        total = o.epochs if o.schedule_unit == "epoch" else o.epochs * max(1, steps_per_epoch)
        fn = TriangularSchedule(total, o.warmup_fraction)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=[fn, fn])


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def _resolve_data_root(cfg: Config, log: Callable[[str], None] = print) -> Path:
    """The dataset root: ``data.root``, or synthetic data of ``data.task`` generated once under ``synthetic_dir``."""
    d = cfg.data
    if d.root is not None:
        root = Path(d.root).expanduser()
        if not root.exists():
            raise FileNotFoundError(
                f"data root {str(root)!r} does not exist: download a dataset with `m2s data download ...`, point "
                "--data-root at it, or leave --data-root out to train on synthetic data"
            )
        return root
    from .synthetic import dataset_name, ensure_synthetic

    n_test = d.synthetic_n_test if d.task != "busi" else None
    name = dataset_name(d.task, d.synthetic_n, d.synthetic_n_test, d.synthetic_seed, d.synthetic_size,
                        d.synthetic_difficulty)
    root = Path(d.synthetic_dir).expanduser() / name
    rank, _, _ = distributed_info()
    if rank == 0:
        log(f"no data root given: using synthetic {d.task} data in {root}")
        ensure_synthetic(d.task, root, d.synthetic_n, seed=d.synthetic_seed, size=d.synthetic_size,
                         n_test=n_test, progress=False, difficulty=d.synthetic_difficulty)  # fmt: skip
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return root


def _folder(root, cfg: Config, size: int, train: bool, names=None):
    from .data import SegmentationFolder

    d = cfg.data
    kw = dict(size=size, train=train, classes=cfg.model.classes, class_values=d.class_values, names=names)
    if train:
        kw.update(rotation=d.rotation, hflip=d.hflip)
    return SegmentationFolder(root, **kw)


def build_datasets(cfg: Config, log: Callable[[str], None] = print):
    """``(train_set, val_set or None, data_root)`` from the config (see :class:`m2s_lib.config.DataConfig`).

    Validation: ``data.val_root``; else for BUSI with ``data.fold`` the held-out fold; else a held-out
    ``data.val_fraction`` of the training folder chosen with ``run.seed``; else none.
    """
    from torch.utils.data import Subset

    from .data import resolve_train_root

    d = cfg.data
    root = _resolve_data_root(cfg, log)
    if d.task == "busi" and d.fold is not None:
        from .data import busi_folds

        train_names, val_names = busi_folds(root, k=d.n_folds, seed=cfg.run.seed)[d.fold]
        return (_folder(root, cfg, d.size, True, names=train_names),
                _folder(root, cfg, d.eval_size, False, names=val_names), root)  # fmt: skip
    train_root = resolve_train_root(root)
    train_set = _folder(train_root, cfg, d.size, True)
    if d.val_root is not None:
        val_root = Path(d.val_root).expanduser()
        if not val_root.exists():
            raise FileNotFoundError(f"validation folder {str(val_root)!r} does not exist (data.val_root)")
        return train_set, _folder(val_root, cfg, d.eval_size, False), root
    if d.val_fraction > 0:
        n = len(train_set)
        n_val = max(1, int(round(d.val_fraction * n)))
        if n_val >= n:
            raise ValueError(f"data.val_fraction={d.val_fraction} leaves no training images out of {n}")
        order = np.random.default_rng(cfg.run.seed).permutation(n)
        val_idx, train_idx = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
        val_set = Subset(_folder(train_root, cfg, d.eval_size, False), val_idx)
        return Subset(train_set, train_idx), val_set, root
    return train_set, None, root


def _names(batch: dict, limit: int = 16) -> list[str]:
    names = batch.get("name") if isinstance(batch, dict) else None
    return list(names)[:limit] if names is not None else []


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------
def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :class:`Trainer` (anything else raises ``CheckpointMismatchError``)."""
    from .backbones import CheckpointMismatchError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)  # tensors and plain types only
    except Exception as err:
        raise CheckpointMismatchError(f"could not read checkpoint {str(path)!r}: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{str(path)!r} is not an m2s training checkpoint (no {CHECKPOINT_FORMAT!r} format entry). The authors' "
            "released weights load with `m2s evaluate --official ...` / m2s_lib.backbones.load_official_checkpoint"
        )
    return ckpt


def _load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a readable account of what does not fit."""
    from .backbones import CheckpointMismatchError, state_dict_mismatch

    lines = state_dict_mismatch(model.state_dict(), state, limit=8)
    if lines:
        raise CheckpointMismatchError(f"{source} does not fit the model: " + " | ".join(lines))
    model.load_state_dict(state, strict=True)


def _model_mismatch(expected: Config, found: Config) -> dict[str, tuple[Any, Any]]:
    return {k: v for k, v in found.diff(expected).items() if k.startswith("model.") and k != "model.encoder_weights"}


def model_from_checkpoint(
    checkpoint: str | os.PathLike | dict, device: str | torch.device = "cpu", expect: Config | None = None
) -> tuple[nn.Module, Config]:
    """Build the network a checkpoint was trained with and load its weights: ``(model in eval mode, config)``.

    ``expect``: a config whose ``model`` section the checkpoint must match (else ``CheckpointMismatchError``
    naming the differing settings, e.g. ``model.name: checkpoint 'msnet', expected 'm2snet'``).
    """
    from .backbones import CheckpointMismatchError
    from .model import build_model

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    source = "the checkpoint" if isinstance(checkpoint, dict) else f"checkpoint {str(checkpoint)!r}"
    cfg = Config.from_dict(ckpt["config"], base=Config(profile=ckpt["config"].get("profile", "custom")))
    if expect is not None:
        diff = _model_mismatch(expect, cfg)
        if diff:
            text = "; ".join(f"{k}: checkpoint {a!r}, expected {b!r}" for k, (a, b) in diff.items())
            raise CheckpointMismatchError(f"{source} holds another architecture — {text}")
    model = build_model(cfg.model.name, **cfg.model.build_kwargs(weights=False))
    _load_model_state(model, ckpt["model"], source)
    return model.to(device).eval(), cfg


# ---------------------------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------------------------
class Trainer:
    """Train a model with a :class:`~m2s_lib.config.Config` and write ``last.pt``, ``best.pt``, ``metrics.csv``
    and ``config.yaml`` into ``out``.

    Args:
        config: the run's configuration (or a profile name).
        out: output folder (default ``config.run.out``; ``None`` there too: nothing is written).
        train_set, val_set: datasets to use instead of the ones the config describes (items as
            ``m2s_lib.data.SegmentationFolder``'s: ``image``, ``mask``, ``name``; ``val_set=None`` with
            ``train_set`` given means no validation).
        model: a network to train instead of ``build_model(config.model...)``.
        callbacks: objects with any of ``on_train_begin(trainer)``, ``on_step_end(trainer, info)``,
            ``on_epoch_end(trainer, row)``, ``on_train_end(trainer)``, or plain callables ``f(trainer, row)``
            called at each epoch's end (rank 0 only). Setting ``trainer.stop_training = True`` ends the run after
            the current epoch.
        resume: continue the run in ``out`` from ``last.pt``.
        overwrite: delete a previous run's files in ``out`` (``last.pt``, ``best.pt``, ``metrics.csv``,
            ``config.yaml``) and start again.
        log: where the one-line messages go (default ``print``).

    ``fit()`` runs the remaining epochs and returns the history as a DataFrame (the rows of ``metrics.csv``).
    """

    def __init__(
        self,
        config: Config | str,
        out: str | os.PathLike | None = None,
        *,
        train_set=None,
        val_set=None,
        model: nn.Module | None = None,
        callbacks: Sequence[Any] = (),
        resume: bool = False,
        overwrite: bool = False,
        log: Callable[[str], None] | None = None,
    ):
        cfg = get_profile(config) if isinstance(config, str) else config
        cfg.validate()
        out = out if out is not None else cfg.run.out
        self.out = Path(out).expanduser() if out is not None else None
        self.callbacks = list(callbacks)
        self.stop_training = False
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # epochs completed
        self.global_step = 0
        self.best_score = -math.inf
        self.best_epoch: int | None = None
        self.rank, self.world_size, self.local_rank = distributed_info()
        self.is_main = self.rank == 0
        self._log = log or (lambda msg: print(msg, flush=True))
        self.last_good_checkpoint: Path | None = None

        # -- distributed + device ----------------------------------------------------------------------------
        self.device = select_device(cfg.run.device, self.local_rank if self.world_size > 1 else None)
        if self.world_size > 1 and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend=backend)
        if cfg.optim.batch_size % self.world_size:
            raise ValueError(
                f"optim.batch_size={cfg.optim.batch_size} (the global batch) is not divisible by {self.world_size} "
                "processes: choose a batch size that is"
            )
        self.batch_per_process = cfg.optim.batch_size // self.world_size

        # -- output folder ------------------------------------------------------------------------------------
        ckpt = None
        if resume:
            if self.out is None:
                raise ValueError("resume needs an output folder (out=... / --out)")
            last = self.out / "last.pt"
            if not last.is_file():
                raise FileNotFoundError(f"nothing to resume in {self.out}: it holds no last.pt")
            ckpt = load_checkpoint(last, map_location="cpu")
            saved = Config.from_dict(ckpt["config"], base=Config(profile=ckpt["config"].get("profile", "custom")))
            diff = {k: v for k, v in saved.diff(cfg).items() if not k.startswith(RESUME_MAY_CHANGE)}
            if diff:
                from .backbones import CheckpointMismatchError

                text = "; ".join(f"{k}: run {a!r}, asked {b!r}" for k, (a, b) in list(diff.items())[:8])
                err = CheckpointMismatchError if any(k.startswith("model.") for k in diff) else ValueError
                raise err(
                    f"cannot resume {last}: its settings differ — {text}. Resume with the run's own settings "
                    "(`m2s train --out DIR --resume` reads them from the checkpoint) or start a new run elsewhere"
                )
            if saved.optim.epochs != cfg.optim.epochs and self.is_main:
                self._log(f"note: epochs changed from {saved.optim.epochs} to {cfg.optim.epochs}; the learning-rate "
                          "triangle is recomputed for the new length")  # fmt: skip
        elif self.out is not None and self.out.exists():
            present = [f for f in RUN_FILES if (self.out / f).exists()]
            if present and not overwrite:
                raise RunExistsError(
                    f"{self.out} already holds a run ({', '.join(present)}): pass --resume to continue it, "
                    "--overwrite to delete those files and start again, or choose another --out folder"
                )
            if present and self.is_main:
                for f in present:
                    (self.out / f).unlink()
        if self.world_size > 1:
            dist.barrier()
        self.config = cfg

        # -- determinism --------------------------------------------------------------------------------------
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.run.deterministic
        seed_everything(cfg.run.seed)

        # -- data ---------------------------------------------------------------------------------------------
        if train_set is None:
            train_set, built_val, self.data_root = build_datasets(cfg, self._main_log)
            if val_set is None:
                val_set = built_val
        else:
            self.data_root = None
        if len(train_set) == 0:
            raise ValueError("the training set is empty")
        self.train_set, self.val_set = train_set, val_set

        # -- model, loss, optimiser ---------------------------------------------------------------------------
        from .losses import M2SNetLoss
        from .model import build_model

        if model is None:
            weights = ckpt is None  # a resumed run takes its weights from the checkpoint
            model = build_model(cfg.model.name, **cfg.model.build_kwargs(weights=weights))
        self.amp = bool(cfg.run.amp and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if cfg.run.amp_dtype == "bfloat16" else torch.float16
        self.channels_last = bool(cfg.run.channels_last and self.device.type == "cuda")
        if self.world_size > 1 and cfg.run.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model  # the plain module (checkpoints, validation)
        self.ddp_model = (
            DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.world_size > 1 else model
        )  # fmt: skip
        if self.rank > 0:
            seed_everything(cfg.run.seed + 1000003 * self.rank)  # different augmentations per process
        self.criterion = M2SNetLoss(
            lossnet_weight=cfg.loss.lossnet_weight, lossnet_weights=cfg.loss.lossnet_weights,
            lossnet_input_size=cfg.loss.lossnet_input_size,
            reproduce_authors_bce_slip=cfg.loss.reproduce_authors_bce_slip,
        ).to(self.device)  # fmt: skip
        self.optimizer = build_optimizer(self.model, cfg)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

        if ckpt is not None:
            self._restore(ckpt)
        elif self.out is not None and self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(self.out / "config.yaml")

    # -- small helpers ------------------------------------------------------------------------------------------
    def _main_log(self, msg: str) -> None:
        if self.is_main:
            self._log(msg)

    def log(self, msg: str) -> None:
        """Print a line (rank 0 only)."""
        self._main_log(msg)

    def _per_process_images(self) -> int:
        n = len(self.train_set)
        return math.ceil(n / self.world_size) if self.world_size > 1 else n

    def _drop_last(self) -> bool:
        """Drop a trailing batch of one image (BatchNorm cannot train on a single value per channel)."""
        return self.batch_per_process > 1 and self._per_process_images() % self.batch_per_process == 1

    def _steps_per_epoch(self) -> int:
        per_process = self._per_process_images()
        steps = per_process // self.batch_per_process if self._drop_last() else math.ceil(per_process / self.batch_per_process)
        cap = self.config.run.max_steps_per_epoch
        return min(steps, cap) if cap > 0 else steps

    def _num_workers(self) -> int:
        n = self.config.data.num_workers
        if n >= 0:
            return n
        cpus = os.cpu_count() or 1
        if self.device.type == "cuda":
            return max(1, min(8, cpus // max(1, self.world_size) - 1))
        return 0 if cpus <= 4 else 2

    def _data_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.run.seed * 100_003 + epoch)

    def train_loader(self, epoch: int):
        """The loader of epoch ``epoch`` (0-based): its order and batch sizes depend only on ``(seed, epoch)``."""
        from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

        from .data import MultiScaleCollate

        d = self.config.data
        gen = self._data_generator(epoch)
        if self.world_size > 1:
            sampler = DistributedSampler(self.train_set, num_replicas=self.world_size, rank=self.rank,
                                         shuffle=True, seed=self.config.run.seed, drop_last=False)  # fmt: skip
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(self.train_set, generator=gen)
        sizes = list(d.train_sizes) or [d.size]
        collate = MultiScaleCollate(sizes=sizes, seed=self.config.run.seed * 100_003 + epoch)
        workers = self._num_workers()
        return DataLoader(
            self.train_set, batch_size=self.batch_per_process, sampler=sampler, collate_fn=collate,
            num_workers=workers, pin_memory=self.device.type == "cuda", generator=gen,
            persistent_workers=False, drop_last=self._drop_last(),
        )  # fmt: skip

    def val_loader(self):
        from torch.utils.data import DataLoader

        from .data import collate

        return DataLoader(self.val_set, batch_size=self.batch_per_process, shuffle=False, collate_fn=collate,
                          num_workers=self._num_workers(), pin_memory=self.device.type == "cuda")  # fmt: skip

    def _callbacks(self, hook: str, *args) -> None:
        if not self.is_main:
            return
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is None and hook == "on_epoch_end" and callable(cb):
                fn = cb
            if fn is not None:
                fn(self, *args)

    @property
    def lrs(self) -> tuple[float, float]:
        """Current ``(encoder, head)`` learning rates."""
        return self.optimizer.param_groups[0]["lr"], self.optimizer.param_groups[1]["lr"]

    # -- checkpoints --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "model_name": self.config.model.name,
            "model_config": getattr(self.model, "config", None),
            "epoch": self.epoch,
            "step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "data_order": {"scheme": "torch.Generator seeded with seed*100003 + epoch", "seed": self.config.run.seed},
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": list(self.history),
            "world_size": self.world_size,
            "torch_version": str(torch.__version__),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write the full training state atomically (rank 0 only; other ranks return the path)."""
        path = Path(path)
        if self.is_main:
            _atomic_save(self.state_dict(), path)  # creates the folder if needed
        return path

    def _restore(self, ckpt: dict[str, Any]) -> None:
        _load_model_state(self.model, ckpt["model"], f"checkpoint {self.out / 'last.pt'}")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        epochs_changed = ckpt["config"]["optim"]["epochs"] != self.config.optim.epochs
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if epochs_changed:
            fresh = build_scheduler(self.optimizer, self.config, self.steps_per_epoch).lr_lambdas
            self.scheduler.lr_lambdas = fresh
            last = self.scheduler.last_epoch
            for group, base, fn in zip(self.optimizer.param_groups, self.scheduler.base_lrs, fresh):
                group["lr"] = base * fn(last)
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.global_step = int(ckpt["epoch"]), int(ckpt["step"])
        self.best_score = float(ckpt.get("best_score", -math.inf))
        self.best_epoch = ckpt.get("best_epoch")
        self.history = list(ckpt.get("history", []))
        _set_rng_state(ckpt["rng"])
        if self.world_size > 1 and self.rank > 0:
            seed_everything(self.config.run.seed + 1000003 * self.rank + self.epoch)
        self.last_good_checkpoint = self.out / "last.pt"
        if self.is_main:
            self._write_metrics_csv(rewrite=True)
            self.config.to_yaml(self.out / "config.yaml")  # the settings the run continues with
            self._log(f"resumed {self.out / 'last.pt'}: {self.epoch} of {self.config.optim.epochs} epochs done, "
                      f"step {self.global_step}")  # fmt: skip

    # -- metrics.csv --------------------------------------------------------------------------------------------
    def _write_metrics_csv(self, rewrite: bool = False) -> None:
        if self.out is None:
            return
        import csv

        path = self.out / "metrics.csv"
        rows = self.history if rewrite else self.history[-1:]
        if rewrite or not path.exists():
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
                writer.writeheader()
                for row in self.history if rewrite else rows:
                    writer.writerow(_csv_row(row))
            return
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
            for row in rows:
                writer.writerow(_csv_row(row))

    # -- one epoch ----------------------------------------------------------------------------------------------
    def _forward_loss(self, batch: dict) -> tuple[dict[str, torch.Tensor], int]:
        images = batch["image"].to(self.device, non_blocking=True)
        masks = batch["mask"].to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            logits = self.ddp_model(images)
            parts = self.criterion(logits, masks)
        return parts, images.shape[0]

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int, batch: dict) -> None:
        bad = ~torch.isfinite(loss.detach())
        if self.world_size > 1:
            flag = bad.float().reshape(1)
            dist.all_reduce(flag)
            bad = flag > 0
        if bool(bad.item()):
            where = (f"last good checkpoint: {self.last_good_checkpoint} (epoch {self.epoch})"
                     if self.last_good_checkpoint is not None else "no checkpoint was written yet")  # fmt: skip
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1} of {self.steps_per_epoch} "
                f"(global step {self.global_step + 1}) on batch files {_names(batch)}; {where}. Lower optim.lr, set "
                "optim.grad_clip, or check these images and masks"
            )

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns mean losses, images/s and the mean lr of each group."""
        from tqdm.auto import tqdm

        self.ddp_model.train()
        loader = self.train_loader(epoch)
        cfg = self.config
        sums = torch.zeros(3, dtype=torch.float64)
        seen = 0
        lr_sums = [0.0, 0.0]
        bar = tqdm(
            total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", unit="batch",
            mininterval=cfg.run.progress_interval, disable=not (cfg.run.progress and self.is_main),
            leave=False, dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip
        start = time.perf_counter()
        done = 0
        for step, batch in enumerate(loader):
            if step >= self.steps_per_epoch:
                break
            lr_sums[0] += self.lrs[0]
            lr_sums[1] += self.lrs[1]
            parts, n = self._forward_loss(batch)
            loss = parts["loss"]
            self._check_finite(loss, epoch, step, batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.optim.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if cfg.optim.schedule_unit == "step":
                self.scheduler.step()
            self.global_step += 1
            done += 1
            values = torch.stack([parts["loss"].detach(), parts["structure"].detach(), parts["lossnet"].detach()])
            sums += values.double().cpu() * n
            seen += n
            elapsed = time.perf_counter() - start
            if self.is_main:
                bar.update(1)
                bar.set_postfix(loss=f"{sums[0].item() / seen:.4f}", lr=f"{self.lrs[1]:.2e}",
                                img_s=f"{seen * self.world_size / max(elapsed, 1e-9):.1f}", refresh=False)  # fmt: skip
                self._callbacks("on_step_end", {"epoch": epoch, "step": step, "global_step": self.global_step,
                                                "loss": float(values[0]), "images": n})  # fmt: skip
        bar.close()
        train_time = time.perf_counter() - start
        if cfg.optim.schedule_unit == "epoch":
            self.scheduler.step()
        totals = torch.cat([sums, torch.tensor([float(seen)], dtype=torch.float64)])
        if self.world_size > 1:
            totals = totals.to(self.device) if self.device.type == "cuda" else totals
            dist.all_reduce(totals)
            totals = totals.cpu()
        count = max(totals[3].item(), 1.0)
        steps = max(1, done)
        return {
            "lr_encoder": lr_sums[0] / steps, "lr_head": lr_sums[1] / steps,
            "train_loss": totals[0].item() / count, "train_structure": totals[1].item() / count,
            "train_lossnet": totals[2].item() / count,
            "images": int(totals[3].item()), "train_time_s": train_time,
            "images_per_s": totals[3].item() / max(train_time, 1e-9),
        }  # fmt: skip

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Dice, IoU and MAE on the validation set at ``data.eval_size`` (protocol ``run.eval_protocol``).

        One class: the PraNet (or authors') polyp measures of the sigmoid maps. Several classes: the mean over
        foreground classes of the arg-max Dice and IoU, and the MAE of the softmax against the one-hot mask.
        """
        from .metrics import PolypMetrics

        if self.val_set is None or len(self.val_set) == 0:
            return {}
        model = self.model
        was_training = model.training
        model.eval()
        classes = self.config.model.classes
        polyp = PolypMetrics(self.config.run.eval_protocol, measures=("mDice", "mIoU", "MAE")) if classes == 1 else None
        inter = torch.zeros(classes, dtype=torch.float64)
        psum = torch.zeros(classes, dtype=torch.float64)
        gsum = torch.zeros(classes, dtype=torch.float64)
        mae_sum, n_img = 0.0, 0
        try:
            for batch in self.val_loader():
                images = batch["image"].to(self.device)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    logits = model(images)
                logits = logits.float()
                if classes == 1:
                    probs = torch.sigmoid(logits)[:, 0].cpu().numpy()
                    masks = batch["mask"].reshape(probs.shape).cpu().numpy()
                    for i in range(probs.shape[0]):
                        polyp.update(probs[i], masks[i] > 0.5, name=str(batch["name"][i]))
                else:
                    target = batch["mask"].to(self.device).long().reshape(logits.shape[0], *logits.shape[2:])
                    probs = torch.softmax(logits, 1)
                    onehot = torch.nn.functional.one_hot(target, classes).permute(0, 3, 1, 2).float()
                    pred = torch.nn.functional.one_hot(probs.argmax(1), classes).permute(0, 3, 1, 2).float()
                    inter += (pred * onehot).sum((0, 2, 3)).double().cpu()
                    psum += pred.sum((0, 2, 3)).double().cpu()
                    gsum += onehot.sum((0, 2, 3)).double().cpu()
                    mae_sum += (probs - onehot).abs().mean((1, 2, 3)).sum().item()
                    n_img += probs.shape[0]
        finally:
            model.train(was_training)
        if classes == 1:
            res = polyp.results()
            return {"val_dice": res["mDice"], "val_iou": res["mIoU"], "val_mae": res["MAE"]}
        fg = slice(1, classes)
        dice = (2 * inter[fg] / (psum[fg] + gsum[fg]).clamp_min(1)).mean().item()
        iou = (inter[fg] / (psum[fg] + gsum[fg] - inter[fg]).clamp_min(1)).mean().item()
        return {"val_dice": dice, "val_iou": iou, "val_mae": mae_sum / max(n_img, 1)}

    # -- the run ------------------------------------------------------------------------------------------------
    def fit(self, stop_after_epoch: int | None = None):
        """Train from the current epoch to ``optim.epochs`` (or until epoch ``stop_after_epoch``, 1-based, to
        pause a run that ``resume`` continues later). Returns the history as a pandas DataFrame."""
        import pandas as pd

        cfg = self.config
        end = cfg.optim.epochs if stop_after_epoch is None else min(cfg.optim.epochs, int(stop_after_epoch))
        self.stop_training = False
        if self.epoch == 0 and self.is_main:
            n_val = len(self.val_set) if self.val_set is not None else 0
            self._log(
                f"training {cfg.model.name} ({cfg.model.encoder_name}) on {self.device}"
                f"{f' x{self.world_size} processes' if self.world_size > 1 else ''}: {len(self.train_set)} train / "
                f"{n_val} val images, {cfg.optim.epochs} epochs of {self.steps_per_epoch} steps, batch "
                f"{cfg.optim.batch_size}, sizes {list(cfg.data.train_sizes) or [cfg.data.size]}, lr "
                f"{cfg.optim.encoder_lr:g}/{cfg.optim.lr:g} ({cfg.optim.schedule}/{cfg.optim.schedule_unit}), "
                f"LossNet weight {cfg.loss.lossnet_weight:g}, AMP {'on' if self.amp else 'off'}"
                + (f" -> {self.out}" if self.out else "")
            )
        self._callbacks("on_train_begin")
        det_before = torch.are_deterministic_algorithms_enabled()
        if cfg.run.deterministic and self.device.type == "cpu":
            torch.use_deterministic_algorithms(True)  # restored when fit() returns
        try:
            while self.epoch < end and not self.stop_training:
                epoch = self.epoch
                t0 = time.perf_counter()
                stats = self.train_one_epoch(epoch)
                validate = self.val_set is not None and (
                    (epoch + 1) % max(1, cfg.run.val_every) == 0 or epoch + 1 == cfg.optim.epochs
                )
                val: dict[str, float] = {}
                if validate and self.is_main:
                    val = self.validate()
                if self.world_size > 1:
                    dist.barrier()
                self.epoch = epoch + 1
                row = {
                    "epoch": self.epoch, "step": self.global_step,
                    "lr_encoder": stats["lr_encoder"], "lr_head": stats["lr_head"],
                    "train_loss": stats["train_loss"], "train_structure": stats["train_structure"],
                    "train_lossnet": stats["train_lossnet"],
                    "val_dice": val.get("val_dice", float("nan")), "val_iou": val.get("val_iou", float("nan")),
                    "val_mae": val.get("val_mae", float("nan")),
                    "time_s": time.perf_counter() - t0, "images_per_s": stats["images_per_s"],
                }  # fmt: skip
                self.history.append(row)
                improved = self._is_best(row)
                if improved:
                    self.best_epoch = self.epoch
                if self.out is not None:
                    last = self.save_checkpoint(self.out / "last.pt")
                    if improved and self.is_main:
                        copy_file(last, self.out / "best.pt")
                    self.last_good_checkpoint = last
                    if self.is_main:
                        self._write_metrics_csv()
                self._main_log(self._summary(row, improved))
                self._callbacks("on_epoch_end", row)
                if self.world_size > 1:
                    flag = torch.tensor([1.0 if self.stop_training else 0.0])
                    dist.broadcast(flag.to(self.device) if self.device.type == "cuda" else flag, 0)
                    self.stop_training = bool(flag.item())
        finally:
            torch.use_deterministic_algorithms(det_before)
        self._callbacks("on_train_end")
        return pd.DataFrame(self.history, columns=list(METRICS_COLUMNS))

    def _is_best(self, row: dict[str, Any]) -> bool:
        score = row["val_dice"] if not math.isnan(row["val_dice"]) else -row["train_loss"]
        if self.val_set is not None and math.isnan(row["val_dice"]):
            return False  # an epoch without validation cannot be compared
        if score > self.best_score:
            self.best_score = score
            return True
        return False

    def _summary(self, row: dict[str, Any], improved: bool) -> str:
        val = (f" | val Dice {row['val_dice']:.4f} IoU {row['val_iou']:.4f} MAE {row['val_mae']:.4f}"
               if not math.isnan(row["val_dice"]) else "")  # fmt: skip
        parts = f"structure {row['train_structure']:.4f}"
        if self.config.loss.lossnet_weight > 0:
            parts += f", lossnet {row['train_lossnet']:.4f}"
        saved = ""
        if self.out is not None:
            saved = " | saved last.pt" + (" + best.pt" if improved else "")
        return (
            f"epoch {row['epoch']}/{self.config.optim.epochs} | step {row['step']} | loss {row['train_loss']:.4f} "
            f"({parts}) | lr {row['lr_encoder']:.2e}/{row['lr_head']:.2e}{val} | {row['time_s']:.1f} s, "
            f"{row['images_per_s']:.1f} img/s{saved}"
        )

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in METRICS_COLUMNS:
        value = row.get(key)
        if isinstance(value, float):
            out[key] = "" if math.isnan(value) else f"{value:.6g}" if key.startswith(("lr_",)) else f"{value:.6f}"
        else:
            out[key] = value
    return out


def train(
    config: Config | str,
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Iterable[Any] = (),
    stop_after_epoch: int | None = None,
):
    """Build a :class:`Trainer` and run it: ``(trainer, history DataFrame)``."""
    trainer = Trainer(config, out, resume=resume, overwrite=overwrite, callbacks=list(callbacks))
    history = trainer.fit(stop_after_epoch=stop_after_epoch)
    return trainer, history
