"""Old import path, kept for notebooks and users' code: the module is :mod:`m2s_lib.teaching.viz`."""
from .teaching.viz import *  # noqa: F401,F403
from .teaching.viz import __all__  # noqa: F401
