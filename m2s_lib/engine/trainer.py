"""Training: the paper's recipe in a :class:`Trainer` that runs on a laptop CPU or several GPUs.

Recipe
    The optimiser and schedule of :mod:`m2s_lib.engine.optim`; batch 16, one of {224, …, 352} per batch, random
    flips and ±10° rotations (:mod:`m2s_lib.data.folders`), loss ``structure_loss + 0.1 · LossNet``
    (:mod:`m2s_lib.losses`); each step is :func:`m2s_lib.engine.step.train_step`.

Machinery
    the device rule of :mod:`m2s_lib.engine.runtime`; AMP and ``channels_last`` on CUDA; gradient clipping;
    checkpoints written atomically (``last.pt`` every epoch, ``best.pt`` on the best validation Dice) holding the
    config, epoch, step, model, optimiser, scheduler, AMP scaler and RNG states; ``resume=True`` continues from
    ``last.pt`` — on CPU with the same seed the weights are bitwise identical to an uninterrupted run (epoch ``e``'s
    data order, augmentations and batch sizes come from generators seeded with ``(seed, e)``, see
    :data:`DATA_SCHEME`; every other random draw from the restored RNG states); nothing is overwritten without
    ``overwrite=True`` (:mod:`m2s_lib.engine.run_folder`); a non-finite loss stops with the step, the batch's files
    and the last good checkpoint; ``metrics.csv`` gets one row per epoch (:mod:`m2s_lib.engine.history`);
    validation scores with the task's metric (:func:`m2s_lib.metrics.task_metric`, as ``m2s evaluate`` does);
    a progress bar (``m2s_lib.progress``) plus one plain summary line per epoch; callbacks.

Several GPUs
    ``torchrun --nproc_per_node N -m m2s_lib.cli train ...``: each process finds ``RANK`` / ``WORLD_SIZE`` /
    ``LOCAL_RANK``, joins the process group (NCCL on GPUs, gloo on CPU), wraps the model in
    ``DistributedDataParallel`` and reads its shard through a ``DistributedSampler``; ``optim.batch_size`` stays the
    *global* batch (16 = 4 GPUs × 4). Only rank 0 validates, prints, writes checkpoints and ``metrics.csv``.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from ..atomic import copy_file
from ..config import Config, get_profile
from ..data.folders import MultiScaleCollate, collate
from ..losses import M2SNetLoss
from ..metrics import headline, task_metric
from ..model import build_model
from .checkpoint import CHECKPOINT_FORMAT, load_model_state, save_checkpoint
from .datasets import build_datasets, check_foreground
from .folder_lock import FolderLock, lock_folder
from .history import METRICS_COLUMNS, epoch_summary, write_metrics_csv
from .optim import build_optimizer, build_scheduler
from .run_folder import DiskFullError, absolute_paths, no_space_message, open_run_folder, out_of_space
from .runtime import distributed_info, get_rng_state, seed_everything, select_device, set_rng_state
from .step import NonFiniteLossError, train_step

__all__ = ["DATA_SCHEME", "DiskFullError", "Trainer", "train"]

#: How a training run's data randomness is seeded (stored in checkpoints; part of a study run's fingerprint).
DATA_SCHEME = ("epoch e: order from torch.Generator(seed*100003+e); item i's flip and angle from "
               "SeedSequence([seed*100003+e, i]); batch sizes from random.Random(seed*100003+e), in DataLoader "
               "worker w from random.Random('<that seed>:w')")


def _names(batch: dict, limit: int = 16) -> list[str]:
    names = batch.get("name") if isinstance(batch, dict) else None
    return list(names)[:limit] if names is not None else []


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
        cfg = absolute_paths(cfg.validate())
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
        self._setup_processes(cfg)
        self._lock: FolderLock | None = None
        if self.out is not None and self.is_main:  # one writer per folder (torchrun: rank 0 writes for all)
            self._lock = lock_folder(self.out, "m2s train", log=self._log)
        try:
            self._setup(cfg, model, train_set, val_set, resume, overwrite)
        except BaseException:
            self._release_lock()
            raise

    def _setup(self, cfg: Config, model, train_set, val_set, resume: bool, overwrite: bool) -> None:
        ckpt = open_run_folder(self.out, cfg, resume=resume, overwrite=overwrite, is_main=self.is_main, log=self._log)
        if self.world_size > 1:
            dist.barrier()
        self.config = cfg
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.run.deterministic
        seed_everything(cfg.run.seed)
        self._setup_data(train_set, val_set)
        self._setup_model(model, weights=ckpt is None)
        if ckpt is not None:
            self._restore(ckpt)
        elif self.out is not None and self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(self.out / "config.yaml")

    def _release_lock(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self._lock.release()

    # -- set-up -------------------------------------------------------------------------------------------------
    def _setup_processes(self, cfg: Config) -> None:
        """The device, the process group of a torchrun job, and the batch each process reads."""
        self.device = select_device(cfg.run.device, self.local_rank if self.world_size > 1 else None,
                                    fix="--device cpu (run.device=cpu in a config)")
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

    def _setup_data(self, train_set, val_set) -> None:
        if train_set is None:
            train_set, built_val, self.data_root = build_datasets(self.config, self._main_log)
            if val_set is None:
                val_set = built_val
        else:
            self.data_root = None
        if len(train_set) == 0:
            raise ValueError("the training set is empty")
        check_foreground(train_set)
        self.train_set, self.val_set = train_set, val_set
        if self._steps_per_epoch() == 0:
            n = len(train_set)
            raise ValueError(
                f"{n} training image{'s' if n != 1 else ''} with batch size {self.config.optim.batch_size} "
                "(optim.batch_size, --batch-size) make no training step: a last batch of one image is dropped "
                "(BatchNorm cannot train on it). Use more training images (data.val_fraction holds some out) or "
                "--batch-size 1")

    def _setup_model(self, model: nn.Module | None, weights: bool) -> None:
        """The network (pretrained encoder unless resuming), the loss, the optimiser, the schedule, the AMP scaler."""
        cfg = self.config
        if model is None:
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
            structure_weight=cfg.loss.structure_weight,
        ).to(self.device)  # fmt: skip
        self.optimizer = build_optimizer(self.model, cfg)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

    # -- small helpers ------------------------------------------------------------------------------------------
    def _main_log(self, msg: str) -> None:
        """Print a line (rank 0 only)."""
        if self.is_main:
            self._log(msg)

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

    def _epoch_seed(self, epoch: int) -> int:
        """The seed of epoch ``epoch``'s data randomness (:data:`DATA_SCHEME`)."""
        return self.config.run.seed * 100_003 + epoch

    def train_loader(self, epoch: int):
        """The loader of epoch ``epoch`` (0-based): its order, augmentations and batch sizes depend only on
        ``(seed, epoch)``, not on what else drew random numbers (evaluation, plotting, another model's build)."""
        d = self.config.data
        seed = self._epoch_seed(epoch)
        gen = torch.Generator().manual_seed(seed)
        folder = self.train_set
        while isinstance(folder, Subset):
            folder = folder.dataset
        if hasattr(folder, "set_augment_seed"):
            folder.set_augment_seed(seed)
        if self.world_size > 1:
            sampler = DistributedSampler(self.train_set, num_replicas=self.world_size, rank=self.rank,
                                         shuffle=True, seed=self.config.run.seed, drop_last=False)  # fmt: skip
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(self.train_set, generator=gen)
        sizes = list(d.train_sizes) or [d.size]
        collate = MultiScaleCollate(sizes=sizes, seed=seed)
        workers = self._num_workers()
        return DataLoader(
            self.train_set, batch_size=self.batch_per_process, sampler=sampler, collate_fn=collate,
            num_workers=workers, pin_memory=self.device.type == "cuda", generator=gen,
            persistent_workers=False, drop_last=self._drop_last(),
        )  # fmt: skip

    def val_loader(self):
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
            "rng": get_rng_state(),
            "data_order": {"scheme": DATA_SCHEME, "seed": self.config.run.seed},
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
            try:
                save_checkpoint(self.state_dict(), path)  # atomic; creates the folder if needed
            except (OSError, RuntimeError) as err:
                if out_of_space(err):
                    raise DiskFullError(no_space_message(path, self.out, self._checkpoint_mb())) from None
                raise
        return path

    def _checkpoint_mb(self) -> float:
        return 2 * sum(p.numel() * p.element_size() for p in self.model.parameters()) / 2**20  # weights + momentum

    def _restore(self, ckpt: dict[str, Any]) -> None:
        load_model_state(self.model, ckpt["model"], f"checkpoint {self.out / 'last.pt'}")
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
        set_rng_state(ckpt["rng"])
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
        if self.out is not None:
            write_metrics_csv(self.out / "metrics.csv", self.history, rewrite=rewrite)

    # -- one epoch ----------------------------------------------------------------------------------------------
    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int, batch: dict) -> None:
        bad = ~torch.isfinite(loss.detach())
        if self.world_size > 1:
            flag = bad.float().reshape(1)
            dist.all_reduce(flag)
            bad = flag > 0
        if bool(bad.item()):
            where = (f"last good checkpoint: {self.last_good_checkpoint} (epoch {self.epoch})"
                     if self.last_good_checkpoint is not None else "no checkpoint was written yet")  # fmt: skip
            again = ""
            if self.out is not None:
                again = (f"; `m2s train --out {self.out} --resume optim.grad_clip=1` "
                         + ("continues from it with gradient clipping" if self.last_good_checkpoint is not None else
                            "starts again with gradient clipping (a run with no checkpoint may also change optim.lr)"))
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1} of {self.steps_per_epoch} "
                f"(global step {self.global_step + 1}) on batch files {_names(batch)}; {where}. Lower optim.lr, set "
                f"optim.grad_clip, or check these images and masks{again}"
            )

    def _step(self, batch: dict, epoch: int, step: int) -> tuple[dict[str, torch.Tensor], int]:
        """Move one batch to the device and run :func:`train_step` on it."""
        images = batch["image"].to(self.device, non_blocking=True)
        masks = batch["mask"].to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        parts = train_step(
            self.ddp_model, self.criterion, self.optimizer, images, masks,
            scheduler=self.scheduler if self.config.optim.schedule_unit == "step" else None,
            scaler=self.scaler, grad_clip=self.config.optim.grad_clip, amp=self.amp, amp_dtype=self.amp_dtype,
            check_loss=lambda loss: self._check_finite(loss, epoch, step, batch),
        )  # fmt: skip
        return parts, images.shape[0]

    def _progress_bar(self, epoch: int):
        from ..progress import progress_bar as tqdm

        cfg = self.config
        return tqdm(
            total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", unit="batch",
            mininterval=cfg.run.progress_interval, disable=not (cfg.run.progress and self.is_main),
            leave=False, dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns mean losses, images/s and the mean lr of each group."""
        self.ddp_model.train()
        loader = self.train_loader(epoch)
        sums = torch.zeros(3, dtype=torch.float64)
        seen = 0
        lr_sums = [0.0, 0.0]
        bar = self._progress_bar(epoch)
        start = time.perf_counter()
        done = 0
        for step, batch in enumerate(loader):
            if step >= self.steps_per_epoch:
                break
            lr_sums[0] += self.lrs[0]
            lr_sums[1] += self.lrs[1]
            parts, n = self._step(batch, epoch, step)
            self.global_step += 1
            done += 1
            values = torch.stack([parts["loss"], parts["structure"], parts["lossnet"]])
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
        if self.config.optim.schedule_unit == "epoch":
            self.scheduler.step()
        return self._epoch_stats(sums, seen, lr_sums, done, train_time)

    def _epoch_stats(self, sums: torch.Tensor, seen: int, lr_sums: list[float], done: int,
                     train_time: float) -> dict[str, float]:
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
        """Dice, IoU and MAE on the validation set at ``data.eval_size``, scored image by image with the task's
        metric (:func:`m2s_lib.metrics.task_metric`, the one ``m2s evaluate`` uses): polyp under
        ``run.eval_protocol`` (mDice, mIoU, MAE of the sigmoid maps), COVID/BUSI ``binary@0.5``, OCT the mean over
        layers of the per-image Dice of the arg-max labels (no IoU or MAE in that protocol: NaN)."""
        if self.val_set is None or len(self.val_set) == 0:
            return {}
        cfg = self.config
        classes = cfg.model.classes
        metric = task_metric(cfg.data.task, classes, cfg.run.eval_protocol, measures=("mDice", "mIoU", "MAE"))
        model = self.model
        was_training = model.training
        model.eval()
        try:
            for batch in self.val_loader():
                images = batch["image"].to(self.device)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    logits = model(images)
                logits = logits.float()
                if classes == 1:
                    preds = torch.sigmoid(logits)[:, 0].cpu().numpy()
                    masks = batch["mask"].reshape(preds.shape).cpu().numpy()  # metric.update binarises
                else:
                    preds = logits.argmax(1).cpu().numpy()
                    masks = batch["mask"].long().reshape(preds.shape).cpu().numpy()
                for i in range(preds.shape[0]):
                    metric.update(preds[i], masks[i], name=str(batch["name"][i]))
        finally:
            model.train(was_training)
        scores = headline(metric, metric.results())
        return {"val_dice": scores["dice"], "val_iou": scores["iou"], "val_mae": scores["mae"]}

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
        if self._lock is not None and not self._lock.held:
            self._lock.acquire()
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
                self._main_log(epoch_summary(row, cfg.optim.epochs, cfg.loss.lossnet_weight > 0, self.out is not None,
                                             improved))
                self._callbacks("on_epoch_end", row)
                if self.world_size > 1:
                    flag = torch.tensor([1.0 if self.stop_training else 0.0])
                    dist.broadcast(flag.to(self.device) if self.device.type == "cuda" else flag, 0)
                    self.stop_training = bool(flag.item())
        finally:
            torch.use_deterministic_algorithms(det_before)
            self._release_lock()
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

    def close(self) -> None:
        """Give back the folder's lock; leave the process group if this trainer created it."""
        self._release_lock()
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


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
