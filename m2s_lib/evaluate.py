"""Old import path, kept for notebooks and users' code: see :mod:`m2s_lib.engine.evaluate` and
:mod:`m2s_lib.engine.predict`."""
from .engine.evaluate import *  # noqa: F401,F403
from .engine.evaluate import __all__ as _evaluate_all
from .engine.predict import *  # noqa: F401,F403
from .engine.predict import __all__ as _predict_all

__all__ = [*_evaluate_all, *_predict_all]
