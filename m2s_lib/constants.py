"""Facts shared across the layers, one home for each: the normalisation, the paper's sizes, its tasks, the names
and label values of its datasets, and the image file types the loaders read.

They sit at the bottom of the package (standard library only) because the paper layer (``metrics``' Table 1), the settings
(``config``) and the data layer all need them.
"""
import os
from pathlib import Path

# ImageNet statistics on [0, 1] images: the one normalisation used for training *and* testing (the authors'
# training script normalised with other statistics than their test script; one is enough).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The paper's multi-scale training sizes and test size.
TRAIN_SIZES = (224, 256, 288, 320, 352)
TEST_SIZE = 352

# The paper's four tasks: polyp (colonoscopy), COVID-19 lung infection (CT), breast lesions (BUSI), OCT layers (GOALS).
TASKS = ("polyp", "covid", "busi", "oct")

# The five polyp test sets of the PraNet split, in the order of PraNet's and the paper's Table 1.
POLYP_TEST_SETS = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300")

# GOALS label-image convention (challenge description): 0 RNFL, 80 GCIPL, 160 choroid, 255 anything else.
# Index = class id used by the library: 0 background, 1 RNFL, 2 GCIPL, 3 choroid.
GOALS_CLASS_VALUES = (255, 0, 80, 160)
GOALS_CLASS_NAMES = ("background", "RNFL", "GCIPL", "choroid")

# Image files the loaders read (any case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


# Where things live. The repository root is the checkout holding ``pyproject.toml`` beside ``m2s_lib/``; an installed
# (non-editable) package has none, and then the working directory stands in for it. Every default under ``runs/``
# (executed notebooks, checkpoints, synthetic data, studies, the site) is ``<repository root>/runs/...``, whatever
# the working directory: the one rule the README states.
RUNS_DIR = "runs"


def repo_root() -> Path:
    """The repository root (see above), else the working directory."""
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "m2s_lib").is_dir():
            return folder
    return Path.cwd()


def in_repo(path: "str | os.PathLike") -> Path:
    """``path`` with ``~`` expanded; a relative one is taken relative to the repository root, not to the cwd."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def runs_path(*parts: str) -> Path:
    """``<repository root>/runs/<parts...>``: the one home of the ``runs/`` base."""
    return repo_root().joinpath(RUNS_DIR, *parts)


def shown_path(path: "str | os.PathLike") -> str:
    """``path`` as shown to readers (notebooks, reports, the site): an absolute path inside the repository becomes
    relative to its root, so that no page carries the builder's absolute paths; relative paths (already relative
    to the root) and paths elsewhere stay as they are."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        return path.as_posix()
    root = repo_root()
    for candidate, base in ((Path(os.path.abspath(path)), root), (path.resolve(), root.resolve())):
        try:
            return candidate.relative_to(base).as_posix() or "."
        except ValueError:
            continue
    return str(path)
