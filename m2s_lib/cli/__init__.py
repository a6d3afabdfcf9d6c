"""The ``m2s`` command: ``m2s data|train|evaluate|predict|profile``.

Each sub-command family lives beside the code it drives and registers itself here through a
``register(subparsers)`` function; this module only assembles them.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

__all__ = ["build_parser", "image_side", "main", "non_negative_int", "positive_int"]

# Modules that add sub-commands (each has ``register(subparsers)``), in the order they appear in ``--help``.
COMMAND_MODULES = ("m2s_lib.cli.data", "m2s_lib.cli.train", "m2s_lib.cli.evaluate", "m2s_lib.cli.predict",
                   "m2s_lib.cli.score",
                   "m2s_lib.cli.profile", "m2s_lib.cli.site", "m2s_lib.cli.course",
                   "m2s_lib.cli.ablations", "m2s_lib.cli.reproduce")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (batch sizes, repeats, jobs, threads, timeouts)."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number ≥ 0 (seeds)."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {value})")
    return value


def image_side(text: str) -> int:
    """argparse type: an image side in pixels, by the configuration's rule (:func:`m2s_lib.config.image_size_problem`)."""
    from ..config import image_size_problem

    value = _whole_number(text)
    if problem := image_size_problem(value):
        raise argparse.ArgumentTypeError(problem)
    return value


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
    except (OSError, ValueError, RuntimeError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"m2s {args.command}: error: {_message(err)}", file=sys.stderr)
        return 1
    return int(result or 0)


def _message(err: Exception) -> str:
    """One line for the user. The library's own errors carry their message; the system's (a file where a folder
    is expected, permissions, a full disk) are put in words instead of ``[Errno N]``."""
    if not isinstance(err, OSError) or err.errno is None:
        return str(err)
    where = f"{err.filename}" if err.filename else "a file"
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return f"{where} is a file where a folder is needed: remove it or choose another path"
    if isinstance(err, PermissionError):
        return f"{where}: permission denied: choose a folder you can write to"
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"{where}: no space left on the disk: free some space, or write to another disk"
    return f"{where}: {err.strerror or type(err).__name__}"

