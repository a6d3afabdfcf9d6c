"""Old entry point, kept for ``python -m m2s_lib.reproduce`` and users' code: see :mod:`m2s_lib.teaching.reproduce`."""
from .teaching.reproduce import *  # noqa: F401,F403
from .teaching.reproduce import __all__, main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
