"""``m2s profile``: parameters, multiply-adds and latency of a model (Table 6's efficiency columns)."""

from __future__ import annotations

import argparse

from . import image_side, positive_int

__all__ = ["register", "run_profile"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="count parameters and multiply-adds, time a forward pass",
        description="Parameters (M), GMACs counted by fvcore and median CPU/GPU forward latency of a model.",
    )
    p.add_argument("--model", default="m2snet", choices=["m2snet", "msnet", "fpn"], help="network (default m2snet)")
    p.add_argument("--encoder", default="res2net50d", help="timm encoder name (default res2net50d, the paper's)")
    p.add_argument(
        "--size",
        type=image_side,
        nargs="+",
        default=None,
        help="square input size(s) in pixels (default: 256 352, Table 6's size next to the paper's 352)",
    )
    p.add_argument("--msu-impl", default="fast", choices=["fast", "dense"], help="full-one filter form")
    p.add_argument("--classes", type=int, default=1, help="output channels (default 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed forward passes (default 5)")
    p.add_argument("--no-latency", action="store_true", help="skip timing")
    p.add_argument("--summary", action="store_true", help="also print the torchinfo layer summary")
    p.set_defaults(func=run_profile)


def run_profile(args: argparse.Namespace) -> int:
    from ..constants import TEST_SIZE
    from ..engine.runtime import select_device
    from ..model import build_model
    from ..profiling import TABLE6_GMACS, TABLE6_SIZE, profile_model

    device = select_device(args.device or "auto")
    model = build_model(args.model, encoder_name=args.encoder, classes=args.classes, msu_impl=args.msu_impl).to(device)
    sizes = args.size or [TABLE6_SIZE, TEST_SIZE]
    if args.summary:
        from torchinfo import summary

        print(summary(model, input_size=(1, 3, sizes[-1], sizes[-1]), device=device, depth=3, verbose=0))
    for size in sizes:
        prof = profile_model(model, args.model, size, latency=not args.no_latency, repeats=args.repeats)
        latency = f"{prof.latency_ms:.1f} ms" if prof.latency_ms is not None else "not timed"
        paper = size == TABLE6_SIZE and args.encoder == "res2net50d" and args.model != "fpn"
        note = f"  (Table 6's size: the paper prints {TABLE6_GMACS} G for MSNet and M2SNet)" if paper else ""
        print(
            f"{args.model} ({args.encoder}, msu_impl={args.msu_impl}) at {size}x{size} on {device}: "
            f"{prof.params_m:.2f} M parameters, {prof.gmacs:.2f} GMACs, forward {latency}{note}"
        )
    return 0
