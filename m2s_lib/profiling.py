"""Parameters, multiply-adds (fvcore) and forward latency: the efficiency side of Table 6 / Table 12."""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = [
    "count_parameters",
    "count_macs",
    "example_inputs",
    "measure_latency",
    "synchronize",
    "ModelProfile",
    "profile_model",
    "TABLE6_SIZE",
    "TABLE6_GMACS",
]

# Table 6 prints "9.0 G FLOPs" for MSNet and M2SNet alike. fvcore's multiply-adds reproduce it at a 256×256 input
# (MSNet 8.96, fast M2SNet 8.97 GMACs; the literal all-ones form 17.60), not at the 352×352 of training (16.9):
# the paper's "FLOPs" are multiply-adds at 256×256. `m2s profile` prints this size next to 352.
TABLE6_SIZE = 256
TABLE6_GMACS = 9.0


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (fixed full-one kernels are buffers, so they never count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


Inputs = torch.Tensor | tuple  # what ``model(*inputs)`` takes: one tensor, or a tuple of positional arguments


def example_inputs(model: nn.Module, size: int | tuple[int, int] = 352, in_channels: int = 3, batch: int = 1,
                   inputs: Inputs | None = None) -> tuple:
    """``inputs`` as a tuple of positional arguments (moved to nothing: they are used as given), or one random
    ``batch``×``in_channels``×H×W image batch on the model's device when ``inputs`` is ``None``."""
    if inputs is not None:
        return inputs if isinstance(inputs, tuple) else (inputs,)
    h, w = (size, size) if isinstance(size, int) else size
    return (torch.randn(batch, in_channels, h, w, device=next(model.parameters()).device),)


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has finished its queued work (CUDA, Apple MPS, Intel XPU...); nothing on the CPU.
    Timing an accelerator without it measures the launch of the kernels, not their run."""
    device = torch.device(device)
    if device.type == "cpu":
        return
    backend = getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "synchronize"):
        raise ValueError(f"cannot synchronise device {device}: torch.{device.type}.synchronize does not exist")
    if device.type == "mps":
        backend.synchronize()  # torch.mps.synchronize takes no device
    else:
        backend.synchronize(device)


def count_macs(model: nn.Module, size: int | tuple[int, int] = 352, in_channels: int = 3, batch: int = 1,
               inputs: Inputs | None = None) -> int:
    """Multiply-accumulates of one forward pass ``model(*inputs)``, counted by fvcore (module and functional
    convolutions alike); without ``inputs``, of one ``batch`` of ``size``×``size`` images."""
    with warnings.catch_warnings():
        # fvcore scripts its focal loss with torch.jit.script when fvcore.nn is imported, and traces the model with
        # torch.jit.trace: newer torch versions flag both as deprecated. Only those two warnings are silenced, and
        # only here, where m2s_lib calls fvcore (nothing imports fvcore at module level).
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.(script|trace)", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis

        args = example_inputs(model, size, in_channels, batch, inputs)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                analysis = FlopCountAnalysis(model, args).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                return int(analysis.total())
        finally:
            model.train(was_training)


def measure_latency(
    model: nn.Module, size: int | tuple[int, int] = 352, in_channels: int = 3, batch: int = 1,
    repeats: int = 10, warmup: int = 2, inputs: Inputs | None = None,
) -> dict[str, float]:  # fmt: skip
    """Forward latency ``model(*inputs)`` in seconds (median, min, and all runs) in eval mode without gradients,
    the device synchronised around every run (:func:`synchronize`); without ``inputs``, one random ``batch`` of
    ``size``×``size`` images on the model's device."""
    args = example_inputs(model, size, in_channels, batch, inputs)
    tensors = [a for a in args if isinstance(a, torch.Tensor)] or [next(model.parameters())]
    device = tensors[0].device
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for step in range(warmup + repeats):
                synchronize(device)
                start = time.perf_counter()
                model(*args)
                synchronize(device)
                if step >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs_s": times}


@dataclass
class ModelProfile:
    name: str
    params_m: float
    gmacs: float
    latency_ms: float | None = None


def profile_model(
    model: nn.Module, name: str = "model", size: int = 352, latency: bool = True, repeats: int = 5
) -> ModelProfile:
    """Params (M), GMACs and (optionally) median forward latency (ms) of ``model`` at ``size``×``size``."""
    in_channels = getattr(model, "config", {}).get("in_channels", 3)
    prof = ModelProfile(name, count_parameters(model) / 1e6, count_macs(model, size, in_channels) / 1e9)
    if latency:
        prof.latency_ms = 1000 * measure_latency(model, size, in_channels, repeats=repeats)["median_s"]
    return prof
