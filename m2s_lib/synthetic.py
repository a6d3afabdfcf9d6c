"""Old import path, kept for notebooks and users' code: the generator is :mod:`m2s_lib.data.synthetic`, its
figure :func:`m2s_lib.teaching.viz.gallery`."""
from .data.synthetic import *  # noqa: F401,F403
from .data.synthetic import __all__ as _synthetic_all
from .teaching.viz import gallery  # noqa: F401

__all__ = [*_synthetic_all, "gallery"]
