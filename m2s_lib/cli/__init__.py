"""The ``m2s`` command: ``m2s data|train|evaluate|predict|profile``.

Each sub-command family lives beside the code it drives and registers itself here through a
``register(subparsers)`` function; this module only assembles them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["build_parser", "main"]

# Modules that add sub-commands (each has ``register(subparsers)``), in the order they appear in ``--help``.
COMMAND_MODULES = ("m2s_lib.cli.data", "m2s_lib.cli.train", "m2s_lib.cli.evaluate", "m2s_lib.cli.predict",
                   "m2s_lib.cli.profile", "m2s_lib.cli.site", "m2s_lib.cli.course",
                   "m2s_lib.cli.ablations")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m2s",
        description="M2SNet: data, training, evaluation, prediction and profiling. `m2s COMMAND --help` explains each.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"m2s {args.command}: error: {err}", file=sys.stderr)
        return 1
    return int(result or 0)

