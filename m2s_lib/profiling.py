"""Parameters, multiply-adds (fvcore) and forward latency: the efficiency side of Table 6 / Table 12."""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

__all__ = [
    "count_parameters",
    "count_macs",
    "measure_latency",
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


def count_macs(model: nn.Module, size: int | tuple[int, int] = 352, in_channels: int = 3, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass, counted by fvcore (module and functional convolutions alike)."""
    from fvcore.nn import FlopCountAnalysis

    h, w = (size, size) if isinstance(size, int) else size
    device = next(model.parameters()).device
    x = torch.zeros(batch, in_channels, h, w, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # fvcore traces with torch.jit, which newer torch versions flag as deprecated (FutureWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        model.train(was_training)


def measure_latency(
    model: nn.Module, size: int | tuple[int, int] = 352, in_channels: int = 3, batch: int = 1,
    repeats: int = 10, warmup: int = 2,
) -> dict[str, float]:  # fmt: skip
    """Forward latency in seconds (median, min, and all runs) in eval mode without gradients."""
    h, w = (size, size) if isinstance(size, int) else size
    device = next(model.parameters()).device
    x = torch.randn(batch, in_channels, h, w, device=device)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for step in range(warmup + repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
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

    def as_dict(self) -> dict:
        return asdict(self)


def profile_model(
    model: nn.Module, name: str = "model", size: int = 352, latency: bool = True, repeats: int = 5
) -> ModelProfile:
    """Params (M), GMACs and (optionally) median forward latency (ms) of ``model`` at ``size``×``size``."""
    in_channels = getattr(model, "config", {}).get("in_channels", 3)
    prof = ModelProfile(name, count_parameters(model) / 1e6, count_macs(model, size, in_channels) / 1e9)
    if latency:
        prof.latency_ms = 1000 * measure_latency(model, size, in_channels, repeats=repeats)["median_s"]
    return prof
