"""``m2s reproduce`` (``make reproduce``): every notebook run headlessly on a profile, then a report
(m2s_lib.teaching.reproduce)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..teaching.reproduce import DESCRIPTION, EPILOG, add_arguments, run

    p = sub.add_parser("reproduce", help="run every notebook with papermill and write runs/<timestamp>/REPORT.md",
                       description=DESCRIPTION, epilog=EPILOG)
    add_arguments(p)
    p.set_defaults(func=run)
