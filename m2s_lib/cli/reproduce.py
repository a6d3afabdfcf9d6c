"""``m2s reproduce`` (``make reproduce``): every notebook run headlessly on a profile, then a report
(m2s_lib.teaching.reproduce); ``m2s nbcheck`` (``make lint``): the notebooks are clean and papermill-ready
(m2s_lib.teaching.nbcheck)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..teaching import nbcheck
    from ..teaching.reproduce import DESCRIPTION, EPILOG, add_arguments, run

    p = sub.add_parser("reproduce", help="run every notebook with papermill and write runs/<timestamp>/REPORT.md",
                       description=DESCRIPTION, epilog=EPILOG)
    add_arguments(p)
    p.set_defaults(func=run)

    c = sub.add_parser("nbcheck", help="check that the notebooks are clean, papermill-ready and have short cells",
                       description=nbcheck.__doc__.splitlines()[0],
                       epilog="Example: `m2s nbcheck notebooks --overrides tests/notebook_overrides.yaml`.")
    nbcheck.add_arguments(c)
    c.set_defaults(func=nbcheck.run)
