"""``python -m m2s_lib.reproduce``: the offline main job behind ``make reproduce``.

For now it builds the paper's M2SNet, prints its torchinfo summary, parameters, multiply-adds and a timed forward
pass. (The notebook issue extends it to the full offline reproduction with a report.)
"""
from __future__ import annotations

import argparse

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", help="configuration profile (default tiny)")
    parser.add_argument("--data-root", default=None, help="dataset root (default: synthetic data)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--size", type=int, default=352, help="input size for the summary (default 352)")
    args = parser.parse_args(argv)

    from torchinfo import summary

    from .model import M2SNet
    from .profiling import count_macs, count_parameters, measure_latency

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = M2SNet().to(device)
    print(summary(model, input_size=(1, 3, args.size, args.size), device=device, depth=2, verbose=0))
    params = count_parameters(model)
    macs = count_macs(model, args.size)
    latency = measure_latency(model, args.size, repeats=3)["median_s"]
    with torch.no_grad():
        logits = model.eval()(torch.randn(1, 3, args.size, args.size, device=device))
    print(f"M2SNet (res2net50d): {params / 1e6:.2f} M parameters (paper: 27.7 M), {macs / 1e9:.2f} GMACs at "
          f"{args.size}x{args.size}; forward {1000 * latency:.0f} ms on {device}; logits {tuple(logits.shape)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
