"""Prediction, as the authors' test script does it, with nothing slid or tiled: each image is resized to the test
size (352), the logits are upsampled (bilinear) to the image's original size, and the sigmoid (one class) or arg-max
(several classes) is taken there. ``m2s predict`` (:func:`predict_files`) writes masks, probability maps and
overlays (:func:`overlay`, the one rule for drawing a mask over an image) for image files or folders.
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
from ..data.layout import IMAGE_DIR_NAMES, find_child, load_image
from ..metrics import to_uint8

__all__ = ["PREDICT_OUTPUTS", "labels_to_png", "overlay", "predict_batch", "predict_dataset", "predict_files"]

PREDICT_OUTPUTS = ("masks", "probs", "overlays", "predictions.csv", "skipped.csv")  # what predict_files writes


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


def predict_dataset(
    model: nn.Module, dataset, batch_size: int = 8, num_workers: int = 0, progress: bool = True, desc: str = "predict"
) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(index, name, probability map at original size)`` for every item of a ``SegmentationFolder``."""
    from tqdm.auto import tqdm

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
            outline: int = 2) -> np.ndarray:
    """``image`` (H×W×3, uint8 0–255 or float 0–1) blended towards ``color`` (RGB, in the image's range) by
    ``alpha × mask`` (``mask``: H×W, bool or soft in [0, 1], so probability and Grad-CAM maps work too), with the
    outline of ``mask ≥ 0.5`` drawn solid ``outline`` pixels wide (0: none). Returns the image's dtype."""
    img = np.asarray(image).astype(np.float32)
    col = np.asarray(color, dtype=np.float32)
    m = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    a = (float(alpha) * m)[..., None]
    out = (1 - a) * img + a * col
    if outline > 0:
        inside = m >= 0.5
        out[inside & ~binary_erosion(inside, iterations=outline)] = col
    if np.asarray(image).dtype == np.uint8:
        return np.clip(out, 0, 255).astype(np.uint8)
    return out.astype(np.float32)


_PALETTE = np.array([(0, 0, 0), (255, 64, 0), (0, 200, 255), (80, 255, 80), (255, 220, 0), (200, 80, 255)], np.uint8)


def _collect_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            folder = find_child(p, IMAGE_DIR_NAMES) or p
            found = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."))
            if not found:
                raise FileNotFoundError(f"{p} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {str(p)!r} does not exist")
    return files


@torch.no_grad()
def predict_files(
    model: nn.Module,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    size: int = 352,
    threshold: float = 0.5,
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
    from tqdm.auto import tqdm

    from ..data.layout import DatasetError
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
            image = load_image(path)
        except DatasetError as err:
            skipped.append({"input": str(path), "error": str(err)})
            continue
        h, w = image.shape[:2]
        resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        prob = predict_batch(model, normalise(resized)[None], [(h, w)])[0]
        stem, k = path.stem, 1
        while stem in used:  # two inputs with one file name (from different folders) keep both outputs
            k += 1
            stem = f"{path.stem}-{k}"
        used.add(stem)
        if prob.ndim == 2:
            mask = prob >= threshold
            Image.fromarray(to_uint8(prob)).save(out / "probs" / f"{stem}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{stem}.png")
            Image.fromarray(overlay(image, mask)).save(out / "overlays" / f"{stem}.png")
            fg = float(mask.mean())
        else:
            labels = prob.argmax(0)
            Image.fromarray(labels_to_png(labels, class_values)).save(out / "masks" / f"{stem}.png")
            tint = _PALETTE[labels % len(_PALETTE)].astype(np.float32)
            blend = np.where(labels[..., None] > 0, 0.55 * image + 0.45 * tint, image)
            Image.fromarray(np.clip(blend, 0, 255).astype(np.uint8)).save(out / "overlays" / f"{stem}.png")
            fg = float((labels > 0).mean())
        rows.append({"name": stem, "height": h, "width": w, "foreground": fg, "input": str(path),
                     "mask": str(out / "masks" / f"{stem}.png"), "overlay": str(out / "overlays" / f"{stem}.png")})
    df = pd.DataFrame(rows, columns=["name", "height", "width", "foreground", "input", "mask", "overlay"])
    write_text(out / "predictions.csv", df.to_csv(index=False))
    if skipped:
        write_text(out / "skipped.csv", pd.DataFrame(skipped).to_csv(index=False))
    df.attrs["skipped"] = skipped
    return df
