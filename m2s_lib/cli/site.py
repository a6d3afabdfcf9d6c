"""``m2s site``: the course as a static website, built from a run's executed notebooks (m2s_lib.teaching.site)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "site",
        help="build the course website from executed notebooks (no re-execution)",
        description="Build a static HTML site (Sphinx + MyST-NB) from the executed notebooks of a run folder into "
        "<run>/site/: landing page with the run's summary and figure gallery, the ten notebooks with their outputs, "
        "docs/*.md. --check then opens every page in headless Chromium.",
        epilog="Examples: `m2s site` (runs/latest), `m2s site --run runs/tests --check`.",
    )
    from ..teaching.site import add_arguments, run

    add_arguments(p)
    p.set_defaults(func=run)
