"""``m2s profile``: parameters, multiply-adds and latency of a model (Table 6's efficiency columns)."""
from __future__ import annotations

import argparse

__all__ = ["register", "run_profile"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="count parameters and multiply-adds, time a forward pass",
        description="Parameters (M), GMACs counted by fvcore and median CPU/GPU forward latency of a model.",
    )
    p.add_argument("--model", default="m2snet", choices=["m2snet", "msnet", "fpn"], help="network (default m2snet)")
    p.add_argument("--encoder", default="res2net50d", help="timm encoder name (default res2net50d, the paper's)")
    p.add_argument("--size", type=int, default=352, help="square input size in pixels (default 352)")
    p.add_argument("--msu-impl", default="fast", choices=["fast", "dense"], help="full-one filter form")
    p.add_argument("--classes", type=int, default=1, help="output channels (default 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--repeats", type=int, default=5, help="timed forward passes (default 5)")
    p.add_argument("--no-latency", action="store_true", help="skip timing")
    p.add_argument("--summary", action="store_true", help="also print the torchinfo layer summary")
    p.set_defaults(func=run_profile)


def run_profile(args: argparse.Namespace) -> int:
    import torch

    from ..model import build_model
    from ..profiling import profile_model

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(args.model, encoder_name=args.encoder, classes=args.classes, msu_impl=args.msu_impl).to(device)
    if args.summary:
        from torchinfo import summary

        print(summary(model, input_size=(1, 3, args.size, args.size), device=device, depth=3, verbose=0))
    prof = profile_model(model, args.model, args.size, latency=not args.no_latency, repeats=args.repeats)
    latency = f"{prof.latency_ms:.1f} ms" if prof.latency_ms is not None else "not timed"
    print(
        f"{args.model} ({args.encoder}, msu_impl={args.msu_impl}) at {args.size}x{args.size} on {device}: "
        f"{prof.params_m:.2f} M parameters, {prof.gmacs:.2f} GMACs, forward {latency}"
    )
    return 0
