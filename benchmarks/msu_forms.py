"""Dense vs fast full-one filters in the whole M2SNet (Res2Net-50), MSNet for reference.

Prints parameters, GMACs (fvcore) and median CPU forward latency at 352×352 in one run, plus the ratios.
    python benchmarks/msu_forms.py [--size 352] [--threads 2] [--repeats 5] [--device cpu]
"""
from __future__ import annotations

import argparse

import torch

from m2s_lib.model import M2SNet, MSNet
from m2s_lib.profiling import profile_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    fast = M2SNet(msu_impl="fast")
    dense = M2SNet(msu_impl="dense")
    dense.load_state_dict(fast.state_dict())
    models = {"M2SNet fast": fast, "M2SNet dense": dense, "MSNet": MSNet()}
    print(f"{args.size}x{args.size}, batch 1, {args.threads} threads, device {args.device}, torch {torch.__version__}")
    print(f"{'model':<14}{'params (M)':>12}{'GMACs':>10}{'latency (ms)':>15}")
    profiles = {}
    for name, model in models.items():
        prof = profile_model(model.to(args.device), name, args.size, repeats=args.repeats)
        profiles[name] = prof
        print(f"{name:<14}{prof.params_m:>12.2f}{prof.gmacs:>10.2f}{prof.latency_ms:>15.1f}")
    f, d, m = profiles["M2SNet fast"], profiles["M2SNet dense"], profiles["MSNet"]
    print(f"dense / fast: {d.gmacs / f.gmacs:.2f}x GMACs, {d.latency_ms / f.latency_ms:.2f}x latency (fast is faster)")
    print(f"fast M2SNet vs MSNet: GMACs {100 * (f.gmacs / m.gmacs - 1):+.2f} %, latency {f.latency_ms / m.latency_ms:.2f}x")


if __name__ == "__main__":
    main()
