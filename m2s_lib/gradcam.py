"""Old import path, kept for notebooks and users' code: the module is :mod:`m2s_lib.teaching.gradcam`."""
from .teaching.gradcam import *  # noqa: F401,F403
from .teaching.gradcam import __all__  # noqa: F401
