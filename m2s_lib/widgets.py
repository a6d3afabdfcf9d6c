"""Old import path, kept for notebooks and users' code: the module is :mod:`m2s_lib.teaching.widgets`."""
from .teaching.widgets import *  # noqa: F401,F403
from .teaching.widgets import __all__  # noqa: F401
