"""Data layer: the dataset layout and file reading (``layout``, torch-free), the torch ``Dataset`` and batches
(``folders``), the paper's splits (``splits``), synthetic stand-ins (``synthetic``) and real downloads
(``download``). It uses the foundation and the paper layer only; nothing here imports the settings, engine,
teaching or CLI layers.

``from m2s_lib.data import SegmentationFolder, find_test_sets, ...`` keeps working: the names below are re-exported.
The torch side (``folders``) is imported on first use, so that ``layout``, ``splits`` and the synthetic generator's
worker processes stay free of torch.
"""
from .layout import (
    GOALS_CLASS_NAMES,
    GOALS_CLASS_VALUES,
    IMAGE_EXTENSIONS,
    DatasetError,
    download_command,
    find_pair_dirs,
    find_test_sets,
    load_image,
    load_mask,
    mask_value_problem,
    pair_files,
    resolve_train_root,
    synth_command,
)
from .splits import busi_folds, default_clip_of, video_clip_split

_TORCH_SIDE = ("MultiScaleCollate", "SegmentationFolder", "collate", "normalise", "train_sizes_for")

__all__ = [
    "GOALS_CLASS_NAMES",
    "GOALS_CLASS_VALUES",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "busi_folds",
    "default_clip_of",
    "download_command",
    "find_pair_dirs",
    "find_test_sets",
    "load_image",
    "load_mask",
    "mask_value_problem",
    "pair_files",
    "resolve_train_root",
    "synth_command",
    "video_clip_split",
    *_TORCH_SIDE,
]


def __getattr__(name: str):
    if name in _TORCH_SIDE:
        from . import folders

        return getattr(folders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
