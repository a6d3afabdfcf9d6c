"""Dense vs fast full-one filters in the whole M2SNet (Res2Net-50), MSNet for reference, at Table 6's 256×256 and
the paper's 352×352.

Prints parameters, GMACs (fvcore) and median CPU forward latency per size, then the ratios. Table 6 prints "9.0 G
FLOPs" for MSNet and M2SNet: that is the multiply-add count at 256×256 (MSNet 8.96, fast M2SNet 8.97 GMACs); the
authors' literal all-ones convolutions cost about twice as much (17.60), and only the fast box-sum form makes
"M2SNet costs what MSNet costs" true.
    python benchmarks/msu_forms.py [--sizes 256 352] [--threads 2] [--repeats 5] [--device cpu] [--no-latency]
"""

from __future__ import annotations

import argparse

import torch

from m2s_lib.constants import TEST_SIZE
from m2s_lib.model import M2SNet, MSNet
from m2s_lib.profiling import TABLE6_GMACS, TABLE6_SIZE, profile_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[TABLE6_SIZE, TEST_SIZE])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-latency", action="store_true", help="count parameters and GMACs only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    fast = M2SNet(msu_impl="fast")
    dense = M2SNet(msu_impl="dense")
    dense.load_state_dict(fast.state_dict())
    models = {
        "M2SNet fast": fast.to(args.device),
        "M2SNet dense": dense.to(args.device),
        "MSNet": MSNet().to(args.device),
    }
    timed = not args.no_latency
    print(f"batch 1, {args.threads} threads, device {args.device}, torch {torch.__version__}")
    for size in args.sizes:
        note = (
            f" (Table 6's input size: the paper prints {TABLE6_GMACS} G for MSNet and M2SNet)"
            if size == TABLE6_SIZE
            else ""
        )
        print(f"\n{size}x{size}{note}")
        print(f"{'model':<14}{'params (M)':>12}{'GMACs':>10}{'latency (ms)':>15}")
        prof = {
            name: profile_model(model, name, size, latency=timed, repeats=args.repeats)
            for name, model in models.items()
        }
        for name, p in prof.items():
            print(f"{name:<14}{p.params_m:>12.2f}{p.gmacs:>10.2f}{p.latency_ms if timed else float('nan'):>15.1f}")
        f, d, m = prof["M2SNet fast"], prof["M2SNet dense"], prof["MSNet"]
        lat = f", {d.latency_ms / f.latency_ms:.2f}x latency" if timed else ""
        print(f"dense / fast: {d.gmacs / f.gmacs:.2f}x GMACs{lat}")
        lat = f", latency {f.latency_ms / m.latency_ms:.2f}x" if timed else ""
        print(f"fast M2SNet vs MSNet: GMACs {100 * (f.gmacs / m.gmacs - 1):+.2f} %{lat}")


if __name__ == "__main__":
    main()
