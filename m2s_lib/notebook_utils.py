"""Old import path, kept for notebooks and users' code: the module is :mod:`m2s_lib.teaching.notebook_utils`."""
from .teaching.notebook_utils import *  # noqa: F401,F403
from .teaching.notebook_utils import __all__  # noqa: F401
