"""The dataset layout and how its files are read: torch-free rules every other data module builds on.

A dataset folder holds ``images/`` and ``masks/`` (the authors' loader uses the singular ``image/`` and ``mask/``:
both are accepted). Images and masks are paired by file stem across extensions (``IMAGE_EXTENSIONS``, any case: the
one list of image types every command reads), hidden and system files (``.DS_Store``, ``Thumbs.db``, ``._*``) are
ignored. Names are compared in Unicode normal form NFC, so an ``é`` written as one character (NFC, Windows, Linux)
and as ``e`` + accent (NFD, macOS) is one name. A symbolic link whose target is missing is an error that names the
link and its target. A dataset root holds ``TrainDataset/`` and ``TestDataset/<set>/`` (or is one such folder).

Decoding (``load_image`` / ``load_mask``):

* every file: at most ``MAX_IMAGE_PIXELS`` pixels (refused before decoding: decompression bombs and images too large
  to process in about 2 GB); the EXIF orientation of photos is applied (a phone's JPEG stored on its side is read the
  right way up), to images and masks alike.
* images: grayscale, RGBA, palette, CMYK and 16-bit images become 8-bit RGB (16-bit values are scaled by 255/65535);
  RGBA's alpha is dropped.
* binary masks (``classes == 1``), the mask rule, in this order:

  1. alpha: a mask with an alpha channel (RGBA, LA, PA, or a transparency entry) whose alpha is not uniform is read
     from its alpha: the object is where the mask is opaque (alpha >= 128), whatever the colour (a white RGB mask or
     a black grey one with the object in alpha). A uniform alpha is ignored.
  2. palette: a paletted mask is read by index: background is every index whose colour is black (or index 0 when no
     colour is black); index 255 with a colour other than white is the void / ignore label of VOC-style palettes
     (the (224, 224, 192) border) and is read as background; every other index is object.
  3. values: 16-bit masks whose values exceed 255 are scaled to 0..255; colour masks take the brightest channel. A
     mask whose largest value is at most ``SMALL_MASK_MAX`` (7) is a 0/1 mask, possibly saved as JPEG (noise makes
     its values 0..2): foreground = value >= 1. Any other mask is binarised at 128 (JPEG masks carry noise around 0
     and 255).

  An entirely empty mask is allowed (a polyp-free frame); a training set whose masks are *all* empty, or *all* full,
  is not (:func:`m2s_lib.data.labels.check_mask_set`). :func:`mask_value_problem` names masks whose values look
  wrong (all below 128 but not 0/1; a label image of several classes; a grey-level picture) and
  :func:`mask_reading_note` says when rule 1, 2 or the JPEG case of 3 was applied; ``m2s data verify --deep`` lists both.
* label masks (``classes > 1``): the pixel values are mapped to class ids through ``class_values`` (index = class id;
  e.g. GOALS OCT ``GOALS_CLASS_VALUES`` -> background, RNFL, GCIPL, choroid); an unknown value is an error.

Errors are :class:`DatasetError` (a ``ValueError``) whose message names the folder or file and what to do.
"""
from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..constants import GOALS_CLASS_NAMES, GOALS_CLASS_VALUES, IMAGE_EXTENSIONS, POLYP_TEST_SETS, TASKS

__all__ = [
    "GOALS_CLASS_NAMES",
    "GOALS_CLASS_VALUES",
    "IMAGE_DIR_NAMES",
    "IMAGE_EXTENSIONS",
    "MASK_DIR_NAMES",
    "MAX_IMAGE_PIXELS",
    "SMALL_MASK_MAX",
    "POLYP_TEST_SETS",
    "TASKS",
    "DatasetError",
    "download_command",
    "find_child",
    "find_pair_dirs",
    "find_test_sets",
    "holds_pairs",
    "how_to_get",
    "image_pixels",
    "list_images",
    "load_image",
    "load_mask",
    "mask_reading_note",
    "mask_value_problem",
    "name_key",
    "pair_files",
    "resolve_train_root",
    "short_list",
    "synth_command",
]

IMAGE_DIR_NAMES = ("images", "image")
MASK_DIR_NAMES = ("masks", "mask")
_SYSTEM_FILES = {"thumbs.db", "desktop.ini", ".ds_store"}
# The largest image or mask read, in pixels (10000 x 10000): a larger file is refused before it is decoded.
# PIL's own decompression-bomb check (a warning above 89 Mpx, an error above 179 Mpx) is superseded by this limit:
# its warning is silenced below the limit and its error is reported as this refusal. Predicting the largest allowed
# image stays under about 2 GB of memory.
MAX_IMAGE_PIXELS = 100_000_000
SMALL_MASK_MAX = 7  # masks whose largest value is at most this are 0/1 masks (JPEG noise included)
_ORIENTATION = 0x0112  # the EXIF orientation tag

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


def _is_visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name.lower() not in _SYSTEM_FILES


def _is_dangling(p: Path) -> bool:
    return p.is_symlink() and not p.exists()


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (``IMAGE_EXTENSIONS``, any case; hidden and system files left out), sorted.
    A symbolic link whose target is missing is listed too, so that reading or pairing names it."""
    return sorted(p for p in Path(folder).iterdir() if _is_visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS
                  and (p.is_file() or _is_dangling(p)))


def name_key(name: str) -> str:
    """The form in which file names are compared: Unicode NFC (an ``é`` typed on macOS and on Windows is one name)."""
    return unicodedata.normalize("NFC", name)


def _dangling_problem(path: Path) -> str:
    try:
        target = path.readlink()
    except OSError:
        target = "?"
    return (f"{path} is a symbolic link to {target}, which does not exist: restore the target or delete the link")


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
def _too_large(path: Path, size: str) -> DatasetError:
    return DatasetError(
        f"{path} is {size} pixels, more than the {MAX_IMAGE_PIXELS:,} pixels read (a decompression bomb, or an image "
        "too large to process in about 2 GB of memory): shrink it (e.g. to at most 4000 pixels a side) or remove it")


def _open(path: Path) -> Image.Image:
    """Open and decode an image file: refused (``DatasetError``) when unreadable, a dangling link, or larger than
    ``MAX_IMAGE_PIXELS``; the EXIF orientation applied."""
    if _is_dangling(path):
        raise DatasetError(_dangling_problem(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is ours
            img = Image.open(path)
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            img.close()
            raise _too_large(path, f"{width} x {height} = {width * height:,}")
        img.load()
    except DatasetError:
        raise
    except Image.DecompressionBombError as err:
        found = str(err).split("(", 1)[-1].split(" pixels", 1)[0] if "(" in str(err) else "too many"
        raise _too_large(path, found) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}. Replace or delete this file.") from err
    if _orientation(img) in range(2, 9):
        img = ImageOps.exif_transpose(img)
    return img


def image_pixels(path: Path | str) -> int:
    """Width x height of an image file from its header (nothing decoded); ``DatasetError`` when unreadable or over
    ``MAX_IMAGE_PIXELS``."""
    path = Path(path)
    if _is_dangling(path):
        raise DatasetError(_dangling_problem(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError as err:
        raise _too_large(path, "too many") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}. Replace or delete this file.") from err
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_large(path, f"{width} x {height} = {width * height:,}")
    return width * height


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 = upright); damaged EXIF data counts as upright (the pixels are still read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(img.getexif().get(_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 -- PIL raises many kinds on damaged EXIF blocks
        return 1


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
    return _pixels(img)


def _pixels(img: Image.Image, block_bytes: int = 16 << 20) -> np.ndarray:
    """``np.array(img)``, for a large image filled in blocks of rows (``np.array`` would hold a second full copy of
    the pixels as bytes on the way)."""
    width, height = img.size
    if width * height <= 4_000_000:
        return np.array(img)
    first = np.asarray(img.crop((0, 0, width, 1)))
    out = np.empty((height, *first.shape[1:]), first.dtype)
    step = max(1, block_bytes // max(1, first.nbytes))
    for r0 in range(0, height, step):
        out[r0 : r0 + step] = np.asarray(img.crop((0, r0, width, min(height, r0 + step))))
    return out


def _mask_values(img: Image.Image) -> np.ndarray:
    """Mask pixel values as a 2-D array: uint8 (8-bit masks), int32 (16-bit, unscaled) or palette indices."""
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


def _alpha(img: Image.Image) -> np.ndarray | None:
    """The alpha channel when it is not uniform (the object is drawn in it), else ``None``."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"))
    elif "transparency" in img.info and img.mode in ("P", "L", "RGB"):
        alpha = np.asarray(img.convert("LA" if img.mode == "L" else "RGBA").getchannel("A"))
    else:
        return None
    return alpha if alpha.size and alpha.min() != alpha.max() else None


def _palette_object(img: Image.Image) -> tuple[np.ndarray, str | None]:
    """A paletted mask by index (rule 2): 0/255 values, and a note when a void index was read as background."""
    idx = np.asarray(img)
    pal = np.asarray(img.getpalette("RGB") or [0, 0, 0], dtype=np.int32).reshape(-1, 3)
    used = np.unique(idx)
    colour = {int(i): tuple(int(c) for c in (pal[i] if i < len(pal) else (0, 0, 0))) for i in used}
    background = {i for i, c in colour.items() if c == (0, 0, 0)} or {0}
    note = None
    if 255 in colour and 255 not in background and colour[255] != (255, 255, 255):
        background.add(255)
        note = f"palette index 255 (colour {colour[255]}) is the void / ignore label: read as background"
    lut = np.full(256, 255, dtype=np.uint8)
    lut[sorted(background)] = 0
    return lut[idx], note


def _binary_mask_read(path: Path) -> tuple[np.ndarray, str | None]:
    """A binary mask's pixel values on the 0..255 scale before thresholding (rules 1-3 of the module docstring),
    and a note naming rule 1 or 2 when it applied."""
    img = _open(path)
    alpha = _alpha(img)
    if alpha is not None:
        return alpha, "the object is read from its alpha channel (opaque = object; the colour is not used)"
    if img.mode == "P":
        return _palette_object(img)
    vals = _mask_values(img)
    if vals.dtype == np.float32:
        vals = vals * (255.0 if vals.max(initial=0) <= 1.0 else 1.0)
    elif vals.dtype == np.int32 and vals.max(initial=0) > 255:  # 16-bit masks: scale to 0..255 first
        vals = vals.astype(np.float64) * (255.0 / 65535.0)
    return vals, None


def _binarise(vals: np.ndarray) -> np.ndarray:
    """Rule 3: a mask whose largest value is at most SMALL_MASK_MAX is a 0/1 mask (foreground >= 1), any other is
    binarised at 128."""
    if vals.max(initial=0) <= SMALL_MASK_MAX:
        return (vals >= 1).astype(np.uint8)
    return (vals >= 128).astype(np.uint8)


def _label_values(vals: np.ndarray) -> list[int] | None:
    """The values of a label image of several classes read as a binary mask (plateaus of single mid-grey values
    such as GOALS' 80 and 160), or ``None``."""
    mid = vals[(vals > 32) & (vals < 224)]
    if mid.size == 0 or vals.dtype.kind == "f":
        return None
    counts = np.bincount(mid.astype(np.int64).ravel())
    plateaus = np.flatnonzero(counts > max(0.01 * vals.size, 16))  # not a few pixels of a small mask's edge
    if plateaus.size == 0 or counts[plateaus].sum() < 0.9 * mid.size:
        return None
    return sorted(int(v) for v in np.unique(vals) if v <= 32 or v >= 224 or v in plateaus)


def mask_value_problem(path: Path | str) -> str | None:
    """Why a binary mask's values look wrong, or ``None``: values all below 128 without being 0/1 (the mask reads
    as empty), a label image of several classes (single grey values such as 80 and 160 over large areas), or many
    grey levels between 32 and 224 (a picture, not a mask). ``m2s data verify --deep`` lists these."""
    path = Path(path)
    vals, _ = _binary_mask_read(path)
    top = float(vals.max(initial=0))
    if SMALL_MASK_MAX < top < 128:
        shown = [round(float(v), 1) for v in np.unique(vals)[:6]]
        return (f"mask {path} has the values {shown}: all below 128 and not 0/1, so it is read as empty. Save "
                "foreground as 255 (or 1 with background 0); label maps of several classes need classes/class_values")
    labels = _label_values(vals)
    if labels is not None:
        return (f"mask {path} looks like a label image of several classes (values {labels[:8]}), not a binary mask: "
                "as one it would count every value >= 128 as object. Use a multi-class task (e.g. --profile "
                "paper-oct for GOALS labels) or masks of background 0 and foreground 255")
    grey = float(((vals > 32) & (vals < 224)).mean())
    if grey > 0.25:
        return (f"mask {path} is not a binary mask: {grey:.0%} of its pixels are grey levels between 32 and 224 "
                "(an image in masks/?). Masks hold background 0 and foreground 255 (or 1)")
    return None


def mask_reading_note(path: Path | str) -> str | None:
    """Which special case of the mask rule a binary mask is read by, in words, or ``None`` for a plain mask:
    its alpha channel (rule 1), a void palette index (rule 2), or a 0/1 mask with JPEG noise (rule 3)."""
    vals, note = _binary_mask_read(Path(path))
    top = float(vals.max(initial=0))
    if note is None and 1 < top <= SMALL_MASK_MAX:
        note = "a 0/1 mask with compression noise (values above 1: JPEG?): foreground = value >= 1; save masks as PNG"
    return note


def load_mask(path: Path | str, classes: int = 1, class_values: Sequence[int] | None = None) -> np.ndarray:
    """Read a mask file: uint8 {0, 1} (``classes == 1``, by the mask rule of the module docstring) or int64 class
    ids (``classes > 1``)."""
    path = Path(path)
    if classes == 1:
        return _binarise(_binary_mask_read(path)[0])
    if class_values is None:
        raise DatasetError(f"classes={classes} needs class_values: the pixel value of each class id (index = id)")
    if len(class_values) != classes:
        raise DatasetError(f"class_values has {len(class_values)} values for classes={classes}: give one per class")
    vals = _mask_values(_open(path))
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
    """Image and mask paths paired by stem (compared in Unicode NFC; sorted); a DatasetError lists unpaired or
    duplicated files and names symbolic links whose target is missing."""
    images, masks = list_images(image_dir), list_images(mask_dir)
    dangling = [p for p in images + masks if _is_dangling(p)]
    if dangling:
        more = f" ({len(dangling) - 1} more such links)" if len(dangling) > 1 else ""
        raise DatasetError(_dangling_problem(dangling[0]) + more)
    if not images:
        raise DatasetError(f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
                           f"{how_to_get(image_dir.parent)}")

    def index(paths: list[Path], where: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        dup: list[str] = []
        for p in paths:
            key = name_key(p.stem)
            if key in out:
                dup.append(f"{out[key].name}/{p.name}")
            out[key] = p
        if dup:
            raise DatasetError(f"{where}: several files share a name with different extensions or Unicode forms "
                               f"(NFC/NFD): {short_list(dup)}. Keep one of each.")
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

