"""The torch side of the data: the folder ``Dataset``, its resizing and augmentation, and multi-scale batches.

Resizing: images bilinear (PIL, antialiased when shrinking); binary masks bilinear then thresholded at 0.5 (smoother
outlines than nearest neighbour); label masks nearest neighbour. Training augmentation (``train=True``): random
horizontal flip and random rotation in +-``rotation`` degrees, applied jointly (image bilinear, mask nearest, both
filled with 0 = background outside the rotated frame). One normalisation for training and testing: ImageNet mean/std
(:func:`normalise`).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..constants import IMAGENET_MEAN, IMAGENET_STD, TEST_SIZE, TRAIN_SIZES
from .labels import check_mask_set
from .layout import (
    IMAGE_DIR_NAMES,
    MASK_DIR_NAMES,
    DatasetError,
    find_child,
    how_to_get,
    load_image,
    load_mask,
    mask_reading_note,
    mask_value_problem,
    name_key,
    pair_files,
    short_list,
)

__all__ = ["MultiScaleCollate", "SegmentationFolder", "collate", "normalise", "train_sizes_for"]


def normalise(image: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 -> ImageNet-normalised float32 3 x H x W: the one normalisation of training and testing."""
    t = torch.from_numpy(np.array(image, dtype=np.float32, copy=True)).permute(2, 0, 1).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return t.sub_(mean).div_(std)


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

    Augmentation draws come from torch's global generator, or, after :meth:`set_augment_seed`, from a generator
    seeded with ``(augment_seed, index)``: then item ``i`` is augmented the same way whatever was drawn before it,
    in whichever worker process (the trainer sets one seed per epoch).
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
        self.augment_seed: int | None = None
        if self.classes < 1:
            raise DatasetError(f"classes must be >= 1 (got {classes})")
        if self.classes > 1 and (self.class_values is None or len(self.class_values) != self.classes):
            raise DatasetError(f"classes={classes} needs class_values with {classes} pixel values (index = class id)")
        folder = self.root / split if split else self.root
        self.folder = folder
        self.image_dir, self.mask_dir = self._locate(folder)
        self.image_paths, self.mask_paths = pair_files(self.image_dir, self.mask_dir)
        if names is not None:
            keep = {name_key(n) for n in names}
            missing = sorted(keep - {name_key(p.stem) for p in self.image_paths})
            if missing:
                raise DatasetError(f"{folder}: {len(missing)} requested names are not in the folder: "
                                   f"{short_list(missing)}")
            pairs = [(i, m) for i, m in zip(self.image_paths, self.mask_paths) if name_key(i.stem) in keep]
            self.image_paths = [i for i, _ in pairs]
            self.mask_paths = [m for _, m in pairs]
        self.names = [name_key(p.stem) for p in self.image_paths]

    # -- discovery ----------------------------------------------------------------------------------------------
    @staticmethod
    def _locate(folder: Path) -> tuple[Path, Path]:
        if not folder.is_dir():
            raise DatasetError(f"dataset folder {folder} does not exist. {how_to_get(folder)}")
        image_dir = find_child(folder, IMAGE_DIR_NAMES)
        mask_dir = find_child(folder, MASK_DIR_NAMES)
        if image_dir is None or mask_dir is None:
            subs = sorted(p.name for p in folder.iterdir() if p.is_dir())
            hint = f" It has the subfolders {short_list(subs)}: pass one of them as split." if subs else ""
            raise DatasetError(
                f"{folder} has no images/ and masks/ (or image/ and mask/) subfolders.{hint} {how_to_get(folder)}")
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
            turned = image.shape[:2] == mask.shape[1::-1]
            hint = (" The image is the mask turned by 90 degrees: an orientation problem (the EXIF orientation of "
                    "photos is applied; re-save the one that was rotated without it)." if turned else "")
            raise DatasetError(
                f"mask {mp} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image {ip} is "
                f"{image.shape[1]}x{image.shape[0]}: they must have the same size.{hint}")
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

    def set_augment_seed(self, seed: int | None) -> None:
        """Draw item ``i``'s flip and angle from a generator seeded with ``(seed, i)``; ``None``: the global one."""
        self.augment_seed = None if seed is None else int(seed)

    def _augment_generator(self, index: int) -> torch.Generator | None:
        if self.augment_seed is None:
            return None
        state = np.random.SeedSequence([self.augment_seed, int(index)]).generate_state(1, dtype=np.uint64)
        return torch.Generator().manual_seed(int(state[0]))

    def _augment(self, image: torch.Tensor, mask: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        gen = self._augment_generator(index)
        if self.hflip and torch.rand((), generator=gen) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        if self.rotation > 0:
            angle = float((torch.rand((), generator=gen) * 2 - 1) * self.rotation)
            image = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
            m = mask if mask.dim() == 3 else mask[None]
            m = TF.rotate(m, angle, interpolation=InterpolationMode.NEAREST, fill=0)
            mask = m if mask.dim() == 3 else m[0]
        return image, mask

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load_pair(index)
        orig = (int(image.shape[0]), int(image.shape[1]))
        image, mask = self._resize(image, mask)
        img_t = normalise(image)
        if self.classes == 1:
            mask_t = torch.from_numpy(np.array(mask, dtype=np.float32, copy=True))[None]
        else:
            mask_t = torch.from_numpy(np.array(mask, dtype=np.int64, copy=True))
        if self.train:
            img_t, mask_t = self._augment(img_t, mask_t, index)
        return {"image": img_t, "mask": mask_t, "size": orig, "name": self.names[index]}

    def check_labels(self, indices: Sequence[int] | None = None, training: bool = False) -> None:
        """Raise ``DatasetError`` when the masks (of ``indices``) do not fit how they are read: synthetic data of
        another kind of task (its manifest), binary masks read as label images of 3+ classes, label images read as
        binary masks; with ``training``, also a set whose masks are all empty or all full
        (:func:`m2s_lib.data.labels.check_mask_set`). Costs the manifest and one to three mask reads on fitting data."""
        paths = self.mask_paths if indices is None else [self.mask_paths[i] for i in indices]
        check_mask_set(paths, folder=self.folder, mask_dir=self.mask_dir, classes=self.classes,
                       class_values=self.class_values, training=training)

    def check_foreground(self, indices: Sequence[int] | None = None) -> None:
        """The check before training: :meth:`check_labels` with ``training=True`` (the trainer calls this)."""
        self.check_labels(indices, training=True)

    def verify(self, progress: bool = False, notes: list[str] | None = None) -> list[str]:
        """Decode every pair; return the problems found (unreadable files, size mismatches, unknown labels, binary
        masks whose values look wrong, a folder whose masks are all empty or all full). ``notes``, when given,
        receives one line per special case of the mask rule applied (alpha channel, void palette index, JPEG-noised
        0/1 masks), naming the masks."""
        from ..progress import progress_bar as tqdm

        problems = []
        empty = full = 0
        special: dict[str, list[str]] = {}
        for i in tqdm(range(len(self)), desc=f"verify {self.folder.name}", disable=not progress, unit="pair"):
            try:
                _, mask = self.load_pair(i)
                empty += int(not mask.any())
                full += int(self.classes == 1 and bool(mask.all()))
                if self.classes == 1:
                    problem = mask_value_problem(self.mask_paths[i])
                    if problem:
                        problems.append(problem)
                    note = mask_reading_note(self.mask_paths[i])
                    if note:
                        special.setdefault(note, []).append(self.mask_paths[i].name)
            except DatasetError as err:
                problems.append(str(err))
        if len(self) and empty == len(self):
            problems.append(f"all {empty} masks in {self.mask_dir} are empty (background only) after reading")
        if len(self) and full == len(self):
            problems.append(f"all {full} masks in {self.mask_dir} are full (every pixel is object) after reading")
        if notes is not None:
            notes += [f"{len(names)} masks in {self.mask_dir}: {what} ({short_list(names, 5)})"
                      for what, names in special.items()]
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

    ``seed=None`` draws with torch's generator (seeded per DataLoader worker); an int seeds a private generator:
    ``seed`` in the main process, ``(seed, worker id)`` in a DataLoader worker, so the sizes are reproducible for a
    given number of workers and two workers do not repeat each other's sequence."""

    def __init__(self, sizes: Sequence[int] = TRAIN_SIZES, seed: int | None = None):
        self.sizes = tuple(int(s) for s in sizes)
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes must be positive integers (got {sizes})")
        self.seed = seed
        self._rng: random.Random | None = None
        self._rng_worker: int | None = None

    def pick(self) -> int:
        if self.seed is None:
            return self.sizes[int(torch.randint(len(self.sizes), ()).item())]
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        if self._rng is None or self._rng_worker != worker:
            self._rng = random.Random(self.seed if worker < 0 else f"{self.seed}:{worker}")
            self._rng_worker = worker
        return self._rng.choice(self.sizes)

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
