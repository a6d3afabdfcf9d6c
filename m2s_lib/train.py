"""Old import path, kept for notebooks and users' code: the trainer lives in :mod:`m2s_lib.engine`."""
from .engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, model_from_checkpoint  # noqa: F401
from .engine.history import METRICS_COLUMNS  # noqa: F401
from .engine.optim import build_optimizer, build_scheduler, lr_factor  # noqa: F401
from .engine.run_folder import RUN_FILES, RunExistsError  # noqa: F401
from .engine.runtime import seed_everything, select_device  # noqa: F401
from .engine.step import NonFiniteLossError, train_step  # noqa: F401
from .engine.trainer import Trainer, train  # noqa: F401
