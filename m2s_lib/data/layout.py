"""The dataset layout and how its files are read: torch-free rules every other data module builds on.

A dataset folder holds ``images/`` and ``masks/`` (the authors' loader uses the singular ``image/`` and ``mask/``:
both are accepted). Images and masks are paired by file stem across extensions (``IMAGE_EXTENSIONS``, any case),
hidden and system files (``.DS_Store``, ``Thumbs.db``, ``._*``) are ignored. A dataset root holds
``TrainDataset/`` and ``TestDataset/<set>/`` (or is one such folder itself).

Decoding (``load_image`` / ``load_mask``):

* images: grayscale, RGBA, palette, CMYK and 16-bit images become 8-bit RGB (16-bit values are scaled by 255/65535);
  RGBA's alpha is dropped.
* binary masks (``classes == 1``), the mask rule: 16-bit masks whose values exceed 255 are scaled to 0..255 first;
  colour masks take the brightest channel (palette masks the brightest channel of each index's colour). A mask whose
  largest value is 1 is a 0/1 mask and is read as it is (many medical datasets store masks so); any other mask is
  binarised at 128 (JPEG masks carry compression noise around 0 and 255). An entirely empty mask is allowed (a
  polyp-free frame), a training set whose masks are *all* empty is not (``SegmentationFolder.check_foreground``);
  :func:`mask_value_problem` names masks whose values look wrong (all below 128 but not 0/1; a grey-level picture).
* label masks (``classes > 1``): the pixel values are mapped to class ids through ``class_values`` (index = class id;
  e.g. GOALS OCT ``GOALS_CLASS_VALUES`` -> background, RNFL, GCIPL, choroid); an unknown value is an error.

Errors are :class:`DatasetError` (a ``ValueError``) whose message names the folder or file and what to do.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..constants import GOALS_CLASS_NAMES, GOALS_CLASS_VALUES, IMAGE_EXTENSIONS, POLYP_TEST_SETS, TASKS

__all__ = [
    "GOALS_CLASS_NAMES",
    "GOALS_CLASS_VALUES",
    "IMAGE_DIR_NAMES",
    "IMAGE_EXTENSIONS",
    "MASK_DIR_NAMES",
    "POLYP_TEST_SETS",
    "TASKS",
    "DatasetError",
    "download_command",
    "find_child",
    "find_pair_dirs",
    "find_test_sets",
    "holds_pairs",
    "how_to_get",
    "list_images",
    "load_image",
    "load_mask",
    "mask_value_problem",
    "pair_files",
    "resolve_train_root",
    "short_list",
    "synth_command",
]

IMAGE_DIR_NAMES = ("images", "image")
MASK_DIR_NAMES = ("masks", "mask")
_SYSTEM_FILES = {"thumbs.db", "desktop.ini", ".ds_store"}



class DatasetError(ValueError):
    """A dataset folder or file cannot be used as it is; the message says which one and what to do."""


def synth_command(folder: Path | str, task: str = "polyp") -> str:
    return f"m2s data synth --task {task} --n 1000 --out {folder}"


def download_command(folder: Path | str, name: str = "polyp") -> str:
    return f"m2s data download {name} --root {folder}"


def how_to_get(folder: Path) -> str:
    # Point the commands at the dataset root (the parent of TrainDataset / TestDataset when that is where we are).
    root = folder
    for parent in [folder, *folder.parents]:
        if parent.name in ("TrainDataset", "TestDataset"):
            root = parent.parent
            break
    return (f"Synthesise a dataset with `{synth_command(root)}` (tasks: polyp, busi, covid, oct) or download the real "
            f"one with `{download_command(root)}` (`m2s data list` shows all datasets).")


def _is_visible_file(p: Path) -> bool:
    name = p.name
    return p.is_file() and not name.startswith(".") and name.lower() not in _SYSTEM_FILES


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_visible_file(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def find_child(folder: Path, names: Sequence[str]) -> Path | None:
    if not folder.is_dir():
        return None
    by_lower = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    for n in names:
        if n in by_lower:
            return by_lower[n]
    return None


def short_list(items: Sequence[str], k: int = 10) -> str:
    shown = ", ".join(items[:k])
    return f"{shown} (and {len(items) - k} more)" if len(items) > k else shown


# ---------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------
def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}. Replace or delete this file.") from err


def _sixteen_bit_to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.round(arr.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)


def load_image(path: Path | str) -> np.ndarray:
    """Read an image file as uint8 RGB, H x W x 3 (see the module docstring for the conversions)."""
    path = Path(path)
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if arr.dtype != np.uint16 and arr.max(initial=0) <= 255:
            arr8 = arr.astype(np.uint8)
        else:
            arr8 = _sixteen_bit_to_uint8(arr)
        return np.repeat(arr8[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        arr8 = np.clip(np.round(arr / hi * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr8[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img)


def _mask_values(path: Path) -> np.ndarray:
    """Mask pixel values as a 2-D array: uint8 (8-bit masks), int32 (16-bit, unscaled) or palette indices."""
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return np.asarray(img).astype(np.int32)
    if img.mode == "P":
        return np.asarray(img)  # palette indices
    if img.mode in ("L", "1"):
        return np.asarray(img.convert("L"))
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    rgb = np.asarray(img.convert("RGB"))
    return rgb.max(axis=2)  # the brightest channel (white, red or green masks alike)


def _binary_mask_values(path: Path) -> np.ndarray:
    """A binary mask's pixel values on the 0..255 scale, before the mask rule (see the module docstring)."""
    img = _open(path)
    if img.mode == "P":  # the brightest channel of the palette colour
        vals = np.asarray(img.convert("RGB")).max(axis=2)
    else:
        vals = _mask_values(path)
    if vals.dtype == np.float32:
        vals = vals * (255.0 if vals.max(initial=0) <= 1.0 else 1.0)
    elif vals.dtype == np.int32 and vals.max(initial=0) > 255:  # 16-bit masks: scale to 0..255 first
        vals = vals.astype(np.float64) * (255.0 / 65535.0)
    return vals


def _binarise(vals: np.ndarray) -> np.ndarray:
    """The mask rule: a mask whose largest value is 1 is 0/1 already; otherwise foreground = value >= 128."""
    if vals.max(initial=0) == 1:
        return (vals >= 1).astype(np.uint8)
    return (vals >= 128).astype(np.uint8)


def mask_value_problem(path: Path | str) -> str | None:
    """Why a binary mask's values look wrong, or ``None``: values all below 128 without being 0/1 (the mask reads
    as empty), or many grey levels between 32 and 224 (a picture, not a mask). ``m2s data verify --deep`` lists these."""
    path = Path(path)
    vals = _binary_mask_values(path)
    top = float(vals.max(initial=0))
    if 1 < top < 128:
        shown = [round(float(v), 1) for v in np.unique(vals)[:6]]
        return (f"mask {path} has the values {shown}: all below 128 and not 0/1, so it is read as empty. Save "
                "foreground as 255 (or 1 with background 0); label maps of several classes need classes/class_values")
    grey = float(((vals > 32) & (vals < 224)).mean())
    if grey > 0.25:
        return (f"mask {path} is not a binary mask: {grey:.0%} of its pixels are grey levels between 32 and 224 "
                "(an image in masks/?). Masks hold background 0 and foreground 255 (or 1)")
    return None


def load_mask(path: Path | str, classes: int = 1, class_values: Sequence[int] | None = None) -> np.ndarray:
    """Read a mask file: uint8 {0, 1} (``classes == 1``, by the mask rule of the module docstring) or int64 class
    ids (``classes > 1``)."""
    path = Path(path)
    if classes == 1:
        return _binarise(_binary_mask_values(path))
    if class_values is None:
        raise DatasetError(f"classes={classes} needs class_values: the pixel value of each class id (index = id)")
    if len(class_values) != classes:
        raise DatasetError(f"class_values has {len(class_values)} values for classes={classes}: give one per class")
    vals = _mask_values(path)
    lut = np.full(65536, -1, dtype=np.int64)
    for cid, val in enumerate(class_values):
        lut[int(val)] = cid
    if vals.dtype == np.float32 or vals.min(initial=0) < 0 or vals.max(initial=0) > 65535:
        raise DatasetError(f"{path}: label image with values outside 0..65535")
    ids = lut[vals.astype(np.int64)]
    if (ids < 0).any():
        unknown = sorted(int(x) for x in np.unique(vals[ids < 0]))
        raise DatasetError(
            f"{path}: label values {unknown[:10]} are not in class_values {list(class_values)} "
            "(a JPEG-compressed or resized label image? label images must be lossless PNG/TIFF/BMP)")
    return ids



def pair_files(image_dir: Path, mask_dir: Path) -> tuple[list[Path], list[Path]]:
    """Image and mask paths paired by stem (sorted); a DatasetError lists unpaired or duplicated files."""
    images, masks = list_images(image_dir), list_images(mask_dir)
    if not images:
        raise DatasetError(f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
                           f"{how_to_get(image_dir.parent)}")

    def index(paths: list[Path], where: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        dup: list[str] = []
        for p in paths:
            if p.stem in out:
                dup.append(f"{out[p.stem].name}/{p.name}")
            out[p.stem] = p
        if dup:
            raise DatasetError(f"{where}: several files share a name with different extensions: "
                               f"{short_list(dup)}. Keep one of each.")
        return out

    img_by, mask_by = index(images, image_dir), index(masks, mask_dir)
    no_mask = sorted(set(img_by) - set(mask_by))
    no_image = sorted(set(mask_by) - set(img_by))
    problems = []
    if no_mask:
        problems.append(f"{len(no_mask)} images in {image_dir} have no mask in {mask_dir}: {short_list(no_mask)}")
    if no_image:
        problems.append(f"{len(no_image)} masks in {mask_dir} have no image in {image_dir}: "
                        f"{short_list(no_image)}")
    if problems:
        raise DatasetError("; ".join(problems) + ". Images and masks are paired by file name (without extension).")
    stems = sorted(img_by)
    return [img_by[s] for s in stems], [mask_by[s] for s in stems]


# ---------------------------------------------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------------------------------------------
def holds_pairs(folder: Path) -> bool:
    return find_child(folder, IMAGE_DIR_NAMES) is not None and find_child(folder, MASK_DIR_NAMES) is not None


def find_pair_dirs(root) -> list[Path]:
    """Every folder under ``root`` (included) that holds images/ + masks/ (or image/ + mask/)."""
    root = Path(root)
    found = [root] if holds_pairs(root) else []
    found += sorted(p for p in root.rglob("*") if p.is_dir() and holds_pairs(p))
    return found


def find_test_sets(root) -> dict[str, Path]:
    """Test sets of a dataset root: each subfolder of ``root/TestDataset`` holding images/masks (sorted by name);
    ``root`` itself may be the ``TestDataset`` folder, or a single set (``{root.name: root}``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"test data folder {root} does not exist. {how_to_get(root)}")
    test_dir = find_child(root, ("testdataset",)) or root
    sets = {p.name: p for p in sorted(test_dir.iterdir()) if p.is_dir() and holds_pairs(p)}
    if sets:
        return sets
    if holds_pairs(root):
        return {root.name: root}
    raise DatasetError(f"no test sets under {root}: expected {root}/TestDataset/<set>/images + masks. "
                       f"{how_to_get(root)}")


def resolve_train_root(root) -> Path:
    """``root/TrainDataset`` when it exists, else ``root`` itself when it holds images/masks."""
    root = Path(root).expanduser()
    train = find_child(root, ("traindataset",))
    if train is not None:
        return train
    if holds_pairs(root):
        return root
    if not root.exists():
        raise DatasetError(f"training data folder {root} does not exist. {how_to_get(root)}")
    raise DatasetError(f"{root} has neither TrainDataset/ nor images/ + masks/. {how_to_get(root)}")

