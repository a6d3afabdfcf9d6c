"""Old import path, kept for notebooks and users' code: the module is :mod:`m2s_lib.data.download`."""
from .data.download import *  # noqa: F401,F403
from .data.download import __all__  # noqa: F401
