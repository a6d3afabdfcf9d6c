"""Folder datasets, the paper's transforms, multi-scale batches and the dataset splits.

A dataset folder holds ``images/`` and ``masks/`` (the authors' loader uses the singular ``image/`` and ``mask/``:
both are accepted). Images and masks are paired by file stem across extensions (``.png .jpg .jpeg .tif .tiff .bmp``,
any case), hidden and system files (``.DS_Store``, ``Thumbs.db``, ``._*``) are ignored.

Decoding (``load_image`` / ``load_mask``):

* images: grayscale, RGBA, palette, CMYK and 16-bit images become 8-bit RGB (16-bit values are scaled by 255/65535);
  RGBA's alpha is dropped.
* binary masks (``classes == 1``): 16-bit masks whose values exceed 255 are scaled to 0..255 first; colour masks take
  the brightest channel; the result is binarised at 128 (JPEG masks carry compression noise around 0 and 255).
* label masks (``classes > 1``): the pixel values are mapped to class ids through ``class_values`` (index = class id;
  e.g. GOALS OCT ``(255, 0, 80, 160)`` -> background, RNFL, GCIPL, choroid); an unknown value is an error.

Resizing: images bilinear (PIL, antialiased when shrinking); binary masks bilinear then thresholded at 0.5 (smoother
outlines than nearest neighbour); label masks nearest neighbour. Training augmentation (``train=True``): random
horizontal flip and random rotation in +-``rotation`` degrees, applied jointly (image bilinear, mask nearest, both
filled with 0 = background outside the rotated frame). One normalisation for training and testing: ImageNet mean/std.

Errors are :class:`DatasetError` (a ``ValueError``) whose message names the folder or file and what to do.
"""
from __future__ import annotations

import csv
import math
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .constants import IMAGENET_MEAN, IMAGENET_STD, TEST_SIZE, TRAIN_SIZES
from .synthetic import (  # GOALS label values (index = class id)
    GOALS_CLASS_NAMES,
    GOALS_CLASS_VALUES,
)

__all__ = [
    "GOALS_CLASS_NAMES",
    "GOALS_CLASS_VALUES",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "MultiScaleCollate",
    "SegmentationFolder",
    "busi_folds",
    "collate",
    "default_clip_of",
    "download_command",
    "find_pair_dirs",
    "find_test_sets",
    "load_image",
    "load_mask",
    "pair_files",
    "resolve_train_root",
    "synth_command",
    "train_sizes_for",
    "video_clip_split",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
IMAGE_DIR_NAMES = ("images", "image")
MASK_DIR_NAMES = ("masks", "mask")
_SYSTEM_FILES = {"thumbs.db", "desktop.ini", ".ds_store"}


class DatasetError(ValueError):
    """A dataset folder or file cannot be used as it is; the message says which one and what to do."""


def synth_command(folder: Path | str, task: str = "polyp") -> str:
    return f"m2s data synth --task {task} --n 1000 --out {folder}"


def download_command(folder: Path | str, name: str = "polyp") -> str:
    return f"m2s data download {name} --root {folder}"


def _how_to_get(folder: Path) -> str:
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


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_visible_file(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def _find_child(folder: Path, names: Sequence[str]) -> Path | None:
    if not folder.is_dir():
        return None
    by_lower = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    for n in names:
        if n in by_lower:
            return by_lower[n]
    return None


def _short_list(items: Sequence[str], k: int = 10) -> str:
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


def load_mask(path: Path | str, classes: int = 1, class_values: Sequence[int] | None = None) -> np.ndarray:
    """Read a mask file: uint8 {0, 1} (``classes == 1``) or int64 class ids (``classes > 1``)."""
    path = Path(path)
    if classes == 1:
        img = _open(path)
        if img.mode == "P":  # the brightest channel of the palette colour
            vals = np.asarray(img.convert("RGB")).max(axis=2)
        else:
            vals = _mask_values(path)
        if vals.dtype == np.float32:
            vals = vals * (255.0 if vals.max(initial=0) <= 1.0 else 1.0)
        elif vals.dtype == np.int32 and vals.max(initial=0) > 255:  # 16-bit masks: scale to 0..255 first
            vals = vals.astype(np.float64) * (255.0 / 65535.0)
        return (vals >= 128).astype(np.uint8)
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


# ---------------------------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------------------------
def _normalise(img: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.array(img, dtype=np.float32, copy=True)).permute(2, 0, 1).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return t.sub_(mean).div_(std)


def pair_files(image_dir: Path, mask_dir: Path) -> tuple[list[Path], list[Path]]:
    """Image and mask paths paired by stem (sorted); a DatasetError lists unpaired or duplicated files."""
    images, masks = _list_images(image_dir), _list_images(mask_dir)
    if not images:
        raise DatasetError(f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
                           f"{_how_to_get(image_dir.parent)}")

    def index(paths: list[Path], where: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        dup: list[str] = []
        for p in paths:
            if p.stem in out:
                dup.append(f"{out[p.stem].name}/{p.name}")
            out[p.stem] = p
        if dup:
            raise DatasetError(f"{where}: several files share a name with different extensions: "
                               f"{_short_list(dup)}. Keep one of each.")
        return out

    img_by, mask_by = index(images, image_dir), index(masks, mask_dir)
    no_mask = sorted(set(img_by) - set(mask_by))
    no_image = sorted(set(mask_by) - set(img_by))
    problems = []
    if no_mask:
        problems.append(f"{len(no_mask)} images in {image_dir} have no mask in {mask_dir}: {_short_list(no_mask)}")
    if no_image:
        problems.append(f"{len(no_image)} masks in {mask_dir} have no image in {image_dir}: "
                        f"{_short_list(no_image)}")
    if problems:
        raise DatasetError("; ".join(problems) + ". Images and masks are paired by file name (without extension).")
    stems = sorted(img_by)
    return [img_by[s] for s in stems], [mask_by[s] for s in stems]


class SegmentationFolder(torch.utils.data.Dataset):
    """Image/mask pairs of one dataset folder, resized to ``size`` x ``size``.

    Args:
        root: a folder holding ``images/`` + ``masks/`` (or ``image/`` + ``mask/``), or the parent of ``split``.
        split: optional subfolder of ``root`` (``"TrainDataset"``, ``"TestDataset/Kvasir"``).
        size: output side in pixels.
        train: apply the paper's augmentation (random horizontal flip, random rotation in +-``rotation`` degrees).
        classes: 1 for binary masks, > 1 for label images mapped through ``class_values``.
        class_values: pixel value of each class id (``classes > 1``), e.g. ``GOALS_CLASS_VALUES``.
        rotation: maximum rotation in degrees (``train=True``).
        hflip: random horizontal flip (``train=True``).
        names: optional subset of stems to keep (e.g. one fold of :func:`busi_folds`).

    Each item is a dict: ``image`` float32 3 x size x size (ImageNet-normalised); ``mask`` float32 1 x size x size in
    {0, 1} (``classes == 1``) or int64 size x size class ids; ``size`` the original (H, W); ``name`` the file stem.
    """

    def __init__(self, root, split: str | None = None, size: int = TEST_SIZE, train: bool = False, classes: int = 1,
                 class_values: Sequence[int] | None = None, rotation: float = 10.0, hflip: bool = True,
                 names: Sequence[str] | None = None):
        self.root = Path(root).expanduser()
        self.split = split
        self.size = int(size)
        self.train = bool(train)
        self.classes = int(classes)
        self.class_values = None if class_values is None else tuple(int(v) for v in class_values)
        self.rotation = float(rotation)
        self.hflip = bool(hflip)
        if self.classes < 1:
            raise DatasetError(f"classes must be >= 1 (got {classes})")
        if self.classes > 1 and (self.class_values is None or len(self.class_values) != self.classes):
            raise DatasetError(f"classes={classes} needs class_values with {classes} pixel values (index = class id)")
        folder = self.root / split if split else self.root
        self.folder = folder
        self.image_dir, self.mask_dir = self._locate(folder)
        self.image_paths, self.mask_paths = pair_files(self.image_dir, self.mask_dir)
        if names is not None:
            keep = set(names)
            missing = sorted(keep - {p.stem for p in self.image_paths})
            if missing:
                raise DatasetError(f"{folder}: {len(missing)} requested names are not in the folder: "
                                   f"{_short_list(missing)}")
            pairs = [(i, m) for i, m in zip(self.image_paths, self.mask_paths) if i.stem in keep]
            self.image_paths = [i for i, _ in pairs]
            self.mask_paths = [m for _, m in pairs]
        self.names = [p.stem for p in self.image_paths]

    # -- discovery ----------------------------------------------------------------------------------------------
    @staticmethod
    def _locate(folder: Path) -> tuple[Path, Path]:
        if not folder.is_dir():
            raise DatasetError(f"dataset folder {folder} does not exist. {_how_to_get(folder)}")
        image_dir = _find_child(folder, IMAGE_DIR_NAMES)
        mask_dir = _find_child(folder, MASK_DIR_NAMES)
        if image_dir is None or mask_dir is None:
            subs = sorted(p.name for p in folder.iterdir() if p.is_dir())
            hint = f" It has the subfolders {_short_list(subs)}: pass one of them as split." if subs else ""
            raise DatasetError(
                f"{folder} has no images/ and masks/ (or image/ and mask/) subfolders.{hint} {_how_to_get(folder)}")
        return image_dir, mask_dir

    # -- access -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_paths)

    def __repr__(self) -> str:
        mode = "train" if self.train else "test"
        return f"SegmentationFolder({str(self.folder)!r}, {len(self)} pairs, size={self.size}, {mode}, classes={self.classes})"

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded image (uint8 H x W x 3) and mask (uint8 {0,1} or int64 ids) at their original size."""
        ip, mp = self.image_paths[index], self.mask_paths[index]
        image = load_image(ip)
        mask = load_mask(mp, self.classes, self.class_values)
        if image.shape[:2] != mask.shape[:2]:
            raise DatasetError(
                f"mask {mp} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image {ip} is "
                f"{image.shape[1]}x{image.shape[0]}: they must have the same size.")
        return image, mask

    def _resize(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        if image.shape[:2] != (s, s):
            image = np.asarray(Image.fromarray(image).resize((s, s), Image.BILINEAR))
        if mask.shape[:2] != (s, s):
            if self.classes == 1:
                m = Image.fromarray(mask * np.uint8(255)).resize((s, s), Image.BILINEAR)
                mask = (np.asarray(m) >= 128).astype(np.uint8)
            else:
                m = Image.fromarray(mask.astype(np.int32)).resize((s, s), Image.NEAREST)
                mask = np.asarray(m).astype(np.int64)
        return image, mask

    def _augment(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        if self.hflip and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        if self.rotation > 0:
            angle = float((torch.rand(()) * 2 - 1) * self.rotation)
            image = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
            m = mask if mask.dim() == 3 else mask[None]
            m = TF.rotate(m, angle, interpolation=InterpolationMode.NEAREST, fill=0)
            mask = m if mask.dim() == 3 else m[0]
        return image, mask

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load_pair(index)
        orig = (int(image.shape[0]), int(image.shape[1]))
        image, mask = self._resize(image, mask)
        img_t = _normalise(image)
        if self.classes == 1:
            mask_t = torch.from_numpy(np.array(mask, dtype=np.float32, copy=True))[None]
        else:
            mask_t = torch.from_numpy(np.array(mask, dtype=np.int64, copy=True))
        if self.train:
            img_t, mask_t = self._augment(img_t, mask_t)
        return {"image": img_t, "mask": mask_t, "size": orig, "name": self.names[index]}

    def verify(self, progress: bool = False) -> list[str]:
        """Decode every pair; return the problems found (unreadable files, size mismatches, unknown labels)."""
        from tqdm.auto import tqdm

        problems = []
        for i in tqdm(range(len(self)), desc=f"verify {self.folder.name}", disable=not progress, unit="pair"):
            try:
                self.load_pair(i)
            except DatasetError as err:
                problems.append(str(err))
        return problems


# ---------------------------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------------------------
def collate(batch: list[dict]) -> dict:
    """Stack samples of equal size: image N x 3 x S x S, mask N x 1 x S x S (or N x S x S ids), size N x 2, names."""
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "mask": torch.stack([b["mask"] for b in batch]),
        "size": torch.tensor([list(b["size"]) for b in batch], dtype=torch.long),
        "name": [b["name"] for b in batch],
    }


def _resize_batch(batch: dict, size: int) -> dict:
    img = batch["image"]
    if img.shape[-1] == size and img.shape[-2] == size:
        return batch
    out = dict(batch)
    out["image"] = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    mask = batch["mask"]
    if mask.dtype == torch.long:  # class ids N x S x S
        out["mask"] = F.interpolate(mask[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    else:
        out["mask"] = F.interpolate(mask, size=(size, size), mode="nearest")
    return out


class MultiScaleCollate:
    """Collate that resizes each whole batch to one size drawn from ``sizes`` (the paper's multi-scale training:
    {224, 256, 288, 320, 352}); images bilinear, masks nearest.

    ``seed=None`` draws with torch's generator (seeded per DataLoader worker); an int seeds a private generator
    (reproducible sequences in the main process; with workers each worker repeats the same sequence)."""

    def __init__(self, sizes: Sequence[int] = TRAIN_SIZES, seed: int | None = None):
        self.sizes = tuple(int(s) for s in sizes)
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes must be positive integers (got {sizes})")
        self.seed = seed
        self._rng = random.Random(seed) if seed is not None else None

    def pick(self) -> int:
        if self._rng is not None:
            return self._rng.choice(self.sizes)
        return self.sizes[int(torch.randint(len(self.sizes), ()).item())]

    def __call__(self, batch: list[dict]) -> dict:
        return _resize_batch(collate(batch), self.pick())

    def __repr__(self) -> str:
        return f"MultiScaleCollate(sizes={self.sizes}, seed={self.seed})"


def train_sizes_for(size: int, multiple: int = 8, minimum: int = 32) -> tuple[int, ...]:
    """The paper's five training sizes {224, ..., 352} scaled to a base ``size``: increasing sizes ending at
    ``size``, on a grid of 32 px when that gives five distinct sizes, else 16 or 8 px (grids that are multiples of
    ``multiple``), none below ``minimum`` (the training config wants multiples of 8, at least 32: the defaults).
    Small bases give fewer than five sizes; ``size`` itself is always the last.

    >>> train_sizes_for(352), train_sizes_for(160), train_sizes_for(64), train_sizes_for(40)
    ((224, 256, 288, 320, 352), (96, 112, 128, 144, 160), (40, 48, 56, 64), (32, 40))
    """
    size, multiple = int(size), int(multiple)
    if size < 1 or multiple < 1:
        raise ValueError(f"size and multiple must be positive (got size={size}, multiple={multiple})")
    ratios = [s / TRAIN_SIZES[-1] for s in TRAIN_SIZES[:-1]]
    steps = [step for step in (32, 16, 8, 4, 2, 1) if step % multiple == 0]
    for step in steps:
        sizes = [max(step, math.floor(size * r / step + 0.5) * step) for r in ratios] + [size]
        if len(set(sizes)) == len(sizes) and sizes == sorted(sizes) and sizes[0] >= minimum:
            return tuple(sizes)
    grid = steps[-1] if steps else multiple
    scaled = {max(grid, math.floor(size * r / grid + 0.5) * grid) for r in ratios if size * r >= grid}
    return tuple(sorted({s for s in scaled if minimum <= s < size} | {size}))


# ---------------------------------------------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------------------------------------------
def _holds_pairs(folder: Path) -> bool:
    return _find_child(folder, IMAGE_DIR_NAMES) is not None and _find_child(folder, MASK_DIR_NAMES) is not None


def find_pair_dirs(root) -> list[Path]:
    """Every folder under ``root`` (included) that holds images/ + masks/ (or image/ + mask/)."""
    root = Path(root)
    found = [root] if _holds_pairs(root) else []
    found += sorted(p for p in root.rglob("*") if p.is_dir() and _holds_pairs(p))
    return found


def find_test_sets(root) -> dict[str, Path]:
    """Test sets of a dataset root: each subfolder of ``root/TestDataset`` holding images/masks (sorted by name);
    ``root`` itself may be the ``TestDataset`` folder, or a single set (``{root.name: root}``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"test data folder {root} does not exist. {_how_to_get(root)}")
    test_dir = _find_child(root, ("testdataset",)) or root
    sets = {p.name: p for p in sorted(test_dir.iterdir()) if p.is_dir() and _holds_pairs(p)}
    if sets:
        return sets
    if _holds_pairs(root):
        return {root.name: root}
    raise DatasetError(f"no test sets under {root}: expected {root}/TestDataset/<set>/images + masks. "
                       f"{_how_to_get(root)}")


def resolve_train_root(root) -> Path:
    """``root/TrainDataset`` when it exists, else ``root`` itself when it holds images/masks."""
    root = Path(root).expanduser()
    train = _find_child(root, ("traindataset",))
    if train is not None:
        return train
    if _holds_pairs(root):
        return root
    if not root.exists():
        raise DatasetError(f"training data folder {root} does not exist. {_how_to_get(root)}")
    raise DatasetError(f"{root} has neither TrainDataset/ nor images/ + masks/. {_how_to_get(root)}")


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------
def _read_labels(labels) -> list[tuple[str, str]]:
    path = Path(labels).expanduser()
    if path.is_dir():
        path = path / "labels.csv"
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: BUSI folds need labels.csv (columns name,class). "
                           f"Create the data with `{synth_command(path.parent, 'busi')}` or "
                           f"`{download_command(path.parent, 'busi')}`.")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"name", "class"} <= set(reader.fieldnames):
            raise DatasetError(f"{path} must have the columns name,class (got {reader.fieldnames})")
        rows = [(r["name"], r["class"]) for r in reader]
    if not rows:
        raise DatasetError(f"{path} lists no images")
    return rows


def busi_folds(labels, k: int = 4, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Stratified k-fold cross-validation (the paper's 4-fold protocol on BUSI).

    ``labels`` is a ``labels.csv`` (columns name,class) or the folder holding it, or a list of (name, class) pairs.
    Within each class the names are shuffled with ``seed`` and dealt to the folds in turn (each class starting
    where the previous one stopped, so the fold sizes differ by at most one). Returns ``k`` pairs
    ``(train_names, test_names)``, sorted; the test parts partition all names.
    """
    rows = list(labels) if isinstance(labels, (list, tuple)) else _read_labels(labels)
    if k < 2:
        raise ValueError(f"k must be >= 2 (got {k})")
    if len(rows) < k:
        raise DatasetError(f"{len(rows)} images cannot be split into {k} folds")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    start = 0
    for cls in sorted({c for _, c in rows}):
        names = sorted(n for n, c in rows if c == cls)
        names = [names[i] for i in rng.permutation(len(names))]
        for j, n in enumerate(names):
            fold_of[n] = (start + j) % k
        start = (start + len(names)) % k
    folds = []
    for f in range(k):
        test = sorted(n for n, i in fold_of.items() if i == f)
        train = sorted(n for n, i in fold_of.items() if i != f)
        folds.append((train, test))
    return folds


def default_clip_of(name: str) -> str:
    """Clip of a video frame name: the folder part (``clip3/0012``), else the text before the last ``_`` or ``-``
    (``12_0034`` -> ``12``, ``case5-10`` -> ``case5``), else the name without its trailing digits."""
    if "/" in name:
        return name.rsplit("/", 1)[0]
    m = re.match(r"^(.*)[_-][^_-]+$", name)
    if m:
        return m.group(1)
    return name.rstrip("0123456789") or name


def video_clip_split(names: Sequence[str], ratios: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                     clip_of: Callable[[str], str] = default_clip_of) -> tuple[list[str], list[str], list[str]]:
    """Split video frames into (train, val, test) *by clip* (the paper: CVC-300 and CVC-612 clips 60/20/20).

    Clips are shuffled with ``seed``; round(ratio x number of clips) clips go to train and to val (at least one
    each when there are 3+ clips), the rest to test. All frames of a clip stay together."""
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers (got {ratios})")
    total = float(sum(ratios))
    clips: dict[str, list[str]] = {}
    for n in names:
        clips.setdefault(clip_of(n), []).append(n)
    keys = sorted(clips)
    rng = np.random.default_rng(seed)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    n = len(keys)
    n_train = math.floor(n * ratios[0] / total + 0.5)
    n_val = math.floor(n * ratios[1] / total + 0.5)
    if n >= 3:
        n_train = min(max(n_train, 1 if ratios[0] > 0 else 0), n - 2)
        n_val = min(max(n_val, 1 if ratios[1] > 0 else 0), n - n_train - (1 if ratios[2] > 0 else 0))
    parts = (keys[:n_train], keys[n_train:n_train + n_val], keys[n_train + n_val:])
    return tuple(sorted(f for c in part for f in clips[c]) for part in parts)  # type: ignore[return-value]
