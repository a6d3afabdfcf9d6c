"""Prediction, as the authors' test script does it, with nothing slid or tiled: each image is resized to the test
size (352), the logits are upsampled (bilinear) to the image's original size, and the sigmoid (one class) or arg-max
(several classes) is taken there. ``m2s predict`` (:func:`predict_files`) writes masks, probability maps and
overlays (:func:`overlay`, the one rule for drawing a mask over an image) for image files or folders.

Memory: an image larger than ``ONE_SHOT_PIXELS`` is upsampled, thresholded and drawn over in blocks of rows
(:func:`upsampled_rows`: bilinear in height, then in width, the same values up to float rounding), so that predicting
the largest image read (``MAX_IMAGE_PIXELS``, about 11000 x 11000) holds about 1.5 GB, not a float map of every
pixel per step. Folders are listed with the data layer's rule (``list_images``: the one list of image types).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import binary_erosion
from torch.utils.data import DataLoader

from ..atomic import write_text
from ..constants import IMAGE_EXTENSIONS
from ..data.folders import collate, normalise
from ..data.layout import IMAGE_DIR_NAMES, find_child, list_images, load_image
from ..metrics import PROB_CUT, binarize_prob, to_uint8

__all__ = ["ONE_SHOT_PIXELS", "PREDICT_OUTPUTS", "labels_to_png", "overlay", "predict_batch", "predict_dataset",
           "predict_files", "upsampled_rows"]

PREDICT_OUTPUTS = ("masks", "probs", "overlays", "predictions.csv", "skipped.csv")  # what predict_files writes
ONE_SHOT_PIXELS = 4_000_000  # larger images are upsampled and drawn over in blocks of rows
_BLOCK_BYTES = 16 << 20  # about this much float32 per block of rows


@torch.no_grad()
def predict_batch(
    model: nn.Module, images: torch.Tensor, sizes: Sequence[Sequence[int]] | torch.Tensor, amp: bool = False
) -> list[np.ndarray]:
    """Probability maps at each image's original ``(H, W)``: H×W (one class) or K×H×W (softmax) float32 arrays."""
    device = next(model.parameters()).device
    with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
        logits = model(images.to(device)).float()
    out = []
    for i, (h, w) in enumerate(torch.as_tensor(sizes).tolist()):
        up = F.interpolate(logits[i : i + 1], size=(int(h), int(w)), mode="bilinear", align_corners=False)[0]
        prob = torch.sigmoid(up)[0] if up.shape[0] == 1 else torch.softmax(up, 0)
        out.append(prob.cpu().numpy())
    return out


def _activate(up: torch.Tensor) -> np.ndarray:
    return (torch.sigmoid(up)[0] if up.shape[0] == 1 else torch.softmax(up, 0)).cpu().numpy()


def upsampled_rows(logits: torch.Tensor, height: int, width: int,
                   rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, probabilities)`` of one image's logits (C x h x w) upsampled (bilinear) to ``height x width``:
    sigmoid (one class, rows x W) or softmax (C x rows x W). Up to ``ONE_SHOT_PIXELS`` (and ``rows=None``) one
    block, exactly :func:`predict_batch`'s map; larger: blocks of ``rows`` rows (about 16 MB each by default),
    interpolated in height for the whole image at the logits' width (small), then in width block by block."""
    logits = logits.float()[None]
    if rows is None:
        rows = height if height * width <= ONE_SHOT_PIXELS else max(1, _BLOCK_BYTES // (4 * logits.shape[1] * width))
    if rows >= height:
        yield 0, _activate(F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[0])
        return
    tall = F.interpolate(logits, size=(height, logits.shape[-1]), mode="bilinear", align_corners=False)
    for r0 in range(0, height, rows):
        part = tall[:, :, r0 : r0 + rows]
        yield r0, _activate(F.interpolate(part, size=(part.shape[2], width), mode="bilinear", align_corners=False)[0])


def predict_dataset(
    model: nn.Module, dataset, batch_size: int = 8, num_workers: int = 0, progress: bool = True, desc: str = "predict"
) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(index, name, probability map at original size)`` for every item of a ``SegmentationFolder``."""
    from ..progress import progress_bar as tqdm

    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    index = 0
    try:
        with tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, mininterval=5.0, leave=False) as bar:
            for batch in loader:
                for name, prob in zip(batch["name"], predict_batch(model, batch["image"], batch["size"])):
                    yield index, str(name), prob
                    index += 1
                bar.update(len(batch["name"]))
    finally:
        model.train(was_training)


def labels_to_png(labels: np.ndarray, class_values: Sequence[int] | None) -> np.ndarray:
    values = np.asarray(class_values if class_values is not None else range(labels.max(initial=0) + 1))
    dtype = np.uint8 if values.max(initial=0) <= 255 else np.uint16
    return values[labels].astype(dtype)


def overlay(image: np.ndarray, mask: np.ndarray, color=(255, 64, 0), alpha: float = 0.45,
            outline: int = 2, out: np.ndarray | None = None) -> np.ndarray:
    """``image`` (H×W×3, uint8 0–255 or float 0–1) blended towards ``color`` (RGB, in the image's range) by
    ``alpha × mask`` (``mask``: H×W, bool or soft in [0, 1], so probability and Grad-CAM maps work too), with the
    outline of ``mask > 0.5`` (:func:`m2s_lib.metrics.binarize_prob`) drawn solid ``outline`` pixels wide (0: none).
    Returns the image's dtype, written into ``out`` when given (which may be ``image`` itself: a large image then
    needs no second copy). Images above ``ONE_SHOT_PIXELS`` are blended in blocks of rows (the same values)."""
    image = np.asarray(image)
    if out is None:
        out = np.empty(image.shape, np.uint8 if image.dtype == np.uint8 else np.float32)
    col = np.asarray(color, dtype=np.float32)
    height, width = image.shape[:2]
    rows = height if height * width <= ONE_SHOT_PIXELS else max(1, _BLOCK_BYTES // (12 * width))
    for r0 in range(0, height, rows):
        img = image[r0 : r0 + rows].astype(np.float32)
        m = np.clip(np.asarray(mask[r0 : r0 + rows], dtype=np.float32), 0.0, 1.0)
        a = (float(alpha) * m)[..., None]
        blend = (1 - a) * img + a * col
        out[r0 : r0 + rows] = np.clip(blend, 0, 255).astype(np.uint8) if out.dtype == np.uint8 else blend
    for r0 in range(0, height, rows) if outline > 0 else ():  # blocks padded by `outline` rows: the same edges
        lo, hi = max(0, r0 - outline), min(height, r0 + rows + outline)
        m = np.asarray(mask[lo:hi])
        inside = binarize_prob(np.clip(m.astype(np.float32), 0.0, 1.0)) if m.dtype != bool else m
        edge = (inside & ~binary_erosion(inside, iterations=outline))[r0 - lo : r0 - lo + rows]
        out[r0 : r0 + rows][edge] = col
    return out


_PALETTE = np.array([(0, 0, 0), (255, 64, 0), (0, 200, 255), (80, 255, 80), (255, 220, 0), (200, 80, 255)], np.uint8)


def _collect_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            folder = find_child(p, IMAGE_DIR_NAMES) or p
            found = list_images(folder)
            if not found:
                raise FileNotFoundError(f"{p} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {str(p)!r} does not exist")
    return files


@torch.no_grad()
def _predict_one(model: nn.Module, image: np.ndarray, size: int, threshold: float,
                 class_values: Sequence[int] | None, out: Path, stem: str) -> float:
    """Write one image's mask, probability map (one class) and overlay; the foreground fraction. Large images are
    handled in blocks of rows (:func:`upsampled_rows`) and drawn over in place (``image`` is overwritten)."""
    h, w = image.shape[:2]
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    device = next(model.parameters()).device
    logits = model(normalise(resized)[None].to(device)).float()[0]
    if logits.shape[0] == 1:
        prob8, mask = np.empty((h, w), np.uint8), np.empty((h, w), bool)
        for r0, p in upsampled_rows(logits, h, w):
            prob8[r0 : r0 + len(p)] = to_uint8(p)
            mask[r0 : r0 + len(p)] = binarize_prob(p, threshold)
        Image.fromarray(prob8).save(out / "probs" / f"{stem}.png")
        del prob8
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{stem}.png")
        fg = float(mask.mean())
        overlay(image, mask, out=image)
        del mask
        Image.fromarray(image).save(out / "overlays" / f"{stem}.png")
        return fg
    labels = np.empty((h, w), np.uint8 if logits.shape[0] <= 256 else np.int64)
    for r0, p in upsampled_rows(logits, h, w):
        labels[r0 : r0 + p.shape[1]] = p.argmax(0)
    Image.fromarray(labels_to_png(labels, class_values)).save(out / "masks" / f"{stem}.png")
    step = max(1, _BLOCK_BYTES // (24 * w))
    for r0 in range(0, h, step):  # tint the labelled pixels, in blocks of rows
        lab, img = labels[r0 : r0 + step], image[r0 : r0 + step]
        tint = _PALETTE[lab % len(_PALETTE)].astype(np.float32)
        blend = np.where(lab[..., None] > 0, 0.55 * img + 0.45 * tint, img)
        image[r0 : r0 + step] = np.clip(blend, 0, 255).astype(np.uint8)
    Image.fromarray(image).save(out / "overlays" / f"{stem}.png")
    return float((labels > 0).mean())


@torch.no_grad()
def predict_files(
    model: nn.Module,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    size: int = 352,
    threshold: float = PROB_CUT,
    class_values: Sequence[int] | None = None,
    progress: bool = True,
    overwrite: bool = True,
) -> pd.DataFrame:
    """Segment image files or folders: ``out/masks/<stem>.png`` (0/255 at ``threshold``, or label values),
    ``out/probs/<stem>.png`` (8-bit probability, one class) and ``out/overlays/<stem>.png``.

    Returns one row per image (``name``, ``height``, ``width``, ``foreground`` fraction, file paths). Inputs that
    share a file name get ``-2``, ``-3``… suffixes instead of overwriting each other. An unreadable input is
    skipped, not fatal: the others are predicted and the skipped ones listed in ``out/skipped.csv`` (``input``,
    ``error``) and ``df.attrs["skipped"]``. ``out`` follows :func:`~m2s_lib.engine.run_folder.prepare_output_dir`:
    ``overwrite=True`` (the library default) replaces an earlier prediction's files, ``False`` refuses them.
    """
    from ..data.layout import DatasetError
    from ..progress import progress_bar as tqdm
    from .run_folder import prepare_output_dir

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold={threshold} (--threshold) must lie between 0 and 1: it cuts the probability map")
    files = _collect_inputs(inputs)
    out = prepare_output_dir(out, "predict", PREDICT_OUTPUTS, overwrite)
    for sub in ("masks", "overlays") + (("probs",) if getattr(model, "classes", 1) == 1 else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    model.eval()
    rows, used, skipped = [], set(), []
    for path in tqdm(files, desc="predict", unit="img", disable=not progress, mininterval=5.0):
        try:
            if path.suffix.lower() not in IMAGE_EXTENSIONS:  # the one list of image types, for files as for folders
                raise DatasetError(f"{path} is not one of the image types read ({' '.join(IMAGE_EXTENSIONS)}): "
                                   "convert it to PNG")
            image = load_image(path)
        except DatasetError as err:
            skipped.append({"input": str(path), "error": str(err)})
            continue
        stem, k = path.stem, 1
        while stem in used:  # two inputs with one file name (from different folders) keep both outputs
            k += 1
            stem = f"{path.stem}-{k}"
        used.add(stem)
        h, w, fg = *image.shape[:2], _predict_one(model, image, size, threshold, class_values, out, stem)
        rows.append({"name": stem, "height": h, "width": w, "foreground": fg, "input": str(path),
                     "mask": str(out / "masks" / f"{stem}.png"), "overlay": str(out / "overlays" / f"{stem}.png")})
    df = pd.DataFrame(rows, columns=["name", "height", "width", "foreground", "input", "mask", "overlay"])
    write_text(out / "predictions.csv", df.to_csv(index=False))
    if skipped:
        write_text(out / "skipped.csv", pd.DataFrame(skipped).to_csv(index=False))
    df.attrs["skipped"] = skipped
    return df
