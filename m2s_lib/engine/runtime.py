"""Where and how a run executes: the device rule, seeding, saving and restoring the RNG states, torchrun ranks.

The notebooks, the CLI, the trainer and the reproduction all use these, so that ``device="auto"`` and ``seed``
mean the same thing everywhere.
"""
from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DeviceError", "barrier", "distributed_info", "get_rng_state", "mps_available", "select_device", "seed_everything", "set_rng_state"]


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


class DeviceError(RuntimeError):
    """A device was asked for that this machine does not have (or no such device exists); the message ends with the
    option of the entry point that fixes it."""


def select_device(spec: str | torch.device | None = "auto", local_rank: int | None = None,
                  fix: str = "--device cpu") -> torch.device:
    """The device to run on. ``"auto"`` (or ``None``): ``cuda:<local_rank>`` when CUDA is available, else Apple
    MPS, else the CPU. Any other name (``cpu``, ``cuda``, ``cuda:1``, ``mps``) is checked to exist here, else
    :class:`DeviceError` ending in ``use <fix>`` (each entry point names its own option: ``--device cpu`` for the
    commands, ``device='cpu'`` in a notebook); a bare ``cuda`` in a torchrun process becomes ``cuda:<local_rank>``."""
    if spec is None or str(spec).strip().lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank or 0)
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(str(spec).strip().lower()) if isinstance(spec, str) else torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"device {str(spec)!r} is not a device name (auto, cpu, cuda, cuda:N or mps): use {fix}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(spec)!r} requested but CUDA is not available on this machine: use {fix}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(spec)!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s), numbered from 0: use cuda:0 or {fix}")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
    elif device.type == "mps":
        if not mps_available():
            raise DeviceError(f"device {str(spec)!r} requested but Apple's MPS is not available on this machine: "
                              f"use {fix}")
    elif device.type != "cpu":
        raise DeviceError(f"device {str(spec)!r} is not supported (auto, cpu, cuda, cuda:N or mps): use {fix}")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (the CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too


def distributed_info() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` in a single process)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, world, int(os.environ.get("LOCAL_RANK", 0))


def barrier() -> None:
    """Wait for every process of a torchrun job (nothing to wait for in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def get_rng_state() -> dict[str, Any]:
    """Every global RNG state, in types that ``torch.load(weights_only=True)`` accepts (no pickled numpy)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):  # a different number of GPUs: keep what is there
            torch.cuda.set_rng_state_all(state["cuda"])
