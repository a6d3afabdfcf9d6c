"""Predict and score test sets; write prediction maps at the original size and the paper's tables.

Prediction follows the authors' test script, with nothing slid or tiled: each image is resized to the test size
(352), the logits are upsampled (bilinear) to the image's original size, and the sigmoid (one class) or arg-max
(several classes) is taken there. Maps are written as 8-bit PNGs — ``round(255·p)`` of the probability for one class
(not min-max stretched: the PraNet protocol normalises when scoring), the mask's own label values for several
classes — and scored from exactly those 8-bit values, so re-scoring the PNGs gives the same numbers.

``evaluate_checkpoint`` is ``m2s evaluate``: every test set under ``DATA/TestDataset`` (or ``DATA`` itself),
``OUT/<set>/<name>.png``, ``OUT/results.csv`` (one row per set), ``OUT/results.md`` (the same table and, for polyp,
the Table 1 layout), ``OUT/per_image/<set>.csv``. Which measures depends on the task (:mod:`m2s_lib.metrics`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .atomic import write_text
from .config import Config
from .metrics import (
    BUSI_COLUMNS,
    COVID_COLUMNS,
    POLYP_COLUMNS,
    BinaryMetrics,
    OCTMetrics,
    PolypMetrics,
    results_table,
    table1,
    to_markdown,
    to_uint8,
)

__all__ = [
    "RESULT_COLUMNS",
    "load_model",
    "predict_batch",
    "predict_dataset",
    "evaluate_folder",
    "evaluate_sets",
    "evaluate_checkpoint",
    "predict_files",
    "overlay",
    "write_tables",
]

# results.csv columns per task (after ``dataset, n`` and before ``protocol``).
RESULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "polyp": POLYP_COLUMNS,
    "covid": COVID_COLUMNS,
    "busi": BUSI_COLUMNS,
}
LAYER_NAMES = {4: ("RNFL", "GCIPL", "choroid")}  # GOALS: background + three layers


# ---------------------------------------------------------------------------------------------------------------
# Models from checkpoints
# ---------------------------------------------------------------------------------------------------------------
def load_model(
    checkpoint: str | os.PathLike,
    device: str | torch.device | None = None,
    model: str | None = None,
    encoder_name: str = "res2net50d",
    classes: int = 1,
) -> tuple[nn.Module, Config]:
    """A model in eval mode and its config from a checkpoint file.

    An m2s training checkpoint (``last.pt`` / ``best.pt``) rebuilds the architecture it was trained with; ``model``
    (``m2snet`` / ``msnet`` / ``fpn``), if given, must match it (else ``CheckpointMismatchError`` naming the
    difference). Any other file is read as the authors' released weights (``resnet.*``, ``x5_dem_1.*`` keys)
    for ``model`` (default ``m2snet``) with ``encoder_name`` — a file that does not fit raises
    ``CheckpointMismatchError`` listing the missing, unexpected and wrongly shaped keys.
    """
    from .backbones import CheckpointMismatchError, load_official_checkpoint, load_state_dict_file
    from .model import build_model
    from .train import CHECKPOINT_FORMAT, model_from_checkpoint, select_device

    device = select_device(device or "auto")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as err:
        raise CheckpointMismatchError(f"could not read {str(path)!r} as a checkpoint: {err}") from err
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        expect = None
        if model is not None:
            expect = Config.from_dict(obj["config"], base=Config())
            expect.set("model.name", model)
        net, cfg = model_from_checkpoint(obj, device=device, expect=expect)
        return net, cfg
    # The authors' weights: a plain state dict.
    name = model or "m2snet"
    cfg = Config(profile="official")
    cfg.set("model.name", name)
    cfg.set("model.encoder_name", encoder_name)
    cfg.set("model.classes", classes)
    cfg.set("model.encoder_weights", None)
    net = build_model(name, **cfg.model.build_kwargs(weights=False))
    try:
        load_official_checkpoint(net, load_state_dict_file(path))
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(
            f"{path} is neither an m2s training checkpoint nor the authors' {name} weights: {err}"
        ) from err
    return net.to(device).eval(), cfg


# ---------------------------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------------------------
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
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .data import collate

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


def _labels_to_png(labels: np.ndarray, class_values: Sequence[int] | None) -> np.ndarray:
    values = np.asarray(class_values if class_values is not None else range(labels.max(initial=0) + 1))
    dtype = np.uint8 if values.max(initial=0) <= 255 else np.uint16
    return values[labels].astype(dtype)


def evaluate_folder(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    task: str = "polyp",
    protocol: str = "pranet",
    size: int = 352,
    classes: int | None = None,
    class_values: Sequence[int] | None = None,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    names: Sequence[str] | None = None,
    progress: bool = True,
    measures: Sequence[str] | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Predict one folder (``images/`` + ``masks/``), optionally write ``out_dir/<name>.png``, and score it.

    Returns ``(scores, per_image DataFrame)``; the masks are read at their original size.
    """
    from .data import SegmentationFolder, load_mask

    classes = classes or getattr(model, "classes", 1)
    ds = SegmentationFolder(folder, size=size, train=False, classes=classes, class_values=class_values, names=names)
    if classes > 1:
        metric: Any = OCTMetrics(classes, LAYER_NAMES.get(classes))
    elif task in ("covid", "busi"):
        metric = BinaryMetrics()
    else:
        metric = PolypMetrics(protocol, measures=measures)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for i, name, prob in predict_dataset(model, ds, batch_size, num_workers, progress, desc=Path(folder).name):
        gt = load_mask(ds.mask_paths[i], classes, class_values)
        if classes > 1:
            labels = prob.argmax(0)
            if out is not None:
                Image.fromarray(_labels_to_png(labels, class_values)).save(out / f"{name}.png")
            metric.update(labels, gt, name=name)
        else:
            pred8 = to_uint8(prob)
            if out is not None:
                Image.fromarray(pred8).save(out / f"{name}.png")
            metric.update(pred8, gt.astype(bool), name=name)
    return metric.results(), metric.per_image()


def evaluate_sets(
    model: nn.Module,
    sets: Mapping[str, str | os.PathLike] | str | os.PathLike,
    *,
    task: str = "polyp",
    protocol: str | None = None,
    size: int = 352,
    class_values: Sequence[int] | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 8,
    progress: bool = True,
    measures: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score several test sets (``{name: folder}`` or a data root searched with ``find_test_sets``).

    Returns the results table (one row per set: ``dataset``, ``n``, the task's measures, ``protocol``); with
    ``out``, predictions go to ``out/<set>/`` and per-image scores to ``out/per_image/<set>.csv``.
    """
    from .data import find_test_sets

    if not isinstance(sets, Mapping):
        sets = find_test_sets(sets)
    protocol = _protocol(task, protocol, getattr(model, "classes", 1))
    rows: dict[str, dict[str, float]] = {}
    for name, folder in sets.items():
        scores, per_image = evaluate_folder(
            model, folder, task=task, protocol=protocol if task == "polyp" else "pranet", size=size,
            class_values=class_values, out_dir=Path(out) / name if out is not None else None,
            batch_size=batch_size, progress=progress, measures=measures,
        )  # fmt: skip
        rows[name] = scores
        if out is not None:
            write_text(Path(out) / "per_image" / f"{name}.csv", per_image.to_csv(index=False))
    columns = RESULT_COLUMNS.get(task) if getattr(model, "classes", 1) == 1 else None
    if measures is not None and columns is not None:
        columns = tuple(c for c in columns if c in measures)
    return results_table(rows, protocol, columns=columns)


def _protocol(task: str, protocol: str | None, classes: int) -> str:
    if classes > 1 or task == "oct":
        return "oct"
    if task in ("covid", "busi"):
        return "binary@0.5"
    return protocol or "pranet"


def write_tables(results: pd.DataFrame, out: str | os.PathLike, task: str = "polyp", title: str | None = None) -> None:
    """``results.csv`` and ``results.md`` (with the Table 1 layout for polyp sets) in ``out``."""
    out = Path(out)
    write_text(out / "results.csv", results.to_csv(index=False, float_format="%.4f"))
    parts = [to_markdown(results, floatfmt=".4f", title=title or "Results per test set")]
    if task == "polyp" and "mDice" in results.columns:
        parts.append(to_markdown(table1(results), floatfmt=".3f", title="Table 1 layout"))
    write_text(out / "results.md", "\n".join(parts))


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: int | None = None,
    protocol: str | None = None,
    sets: Iterable[str] | None = None,
    device: str | None = None,
    batch_size: int = 8,
    model: str | None = None,
    encoder_name: str = "res2net50d",
    task: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """``m2s evaluate``: load a checkpoint, score every test set of ``data_root``, write predictions and tables.

    ``size``, ``task``, ``protocol`` default to the checkpoint's config (``data.eval_size``, ``data.task``,
    ``run.eval_protocol``). ``sets`` restricts to some test-set names. Returns the results DataFrame.
    """
    from .data import find_test_sets

    net, cfg = load_model(checkpoint, device=device, model=model, encoder_name=encoder_name)
    task = task or cfg.data.task
    size = int(size or cfg.data.eval_size)
    root = Path(data_root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data root {str(root)!r} does not exist")
    found = find_test_sets(root)
    if sets is not None:
        wanted = list(sets)
        missing = [s for s in wanted if s not in found]
        if missing:
            raise ValueError(f"test sets {missing} are not under {root}: found {sorted(found)}")
        found = {s: found[s] for s in wanted}
    results = evaluate_sets(
        net, found, task=task, protocol=protocol or cfg.run.eval_protocol, size=size,
        class_values=cfg.data.class_values, out=out, batch_size=batch_size, progress=progress,
    )  # fmt: skip
    write_tables(results, out, task=task, title=f"{cfg.model.name} ({cfg.model.encoder_name}) — {Path(checkpoint).name}")
    return results


# ---------------------------------------------------------------------------------------------------------------
# m2s predict
# ---------------------------------------------------------------------------------------------------------------
def overlay(image: np.ndarray, mask: np.ndarray, color=(255, 64, 0), alpha: float = 0.45) -> np.ndarray:
    """``image`` (H×W×3 uint8) with ``mask`` (H×W bool) tinted in ``color`` and its outline drawn solid."""
    from scipy.ndimage import binary_erosion

    img = image.astype(np.float32).copy()
    col = np.asarray(color, dtype=np.float32)
    img[mask] = (1 - alpha) * img[mask] + alpha * col
    edge = mask & ~binary_erosion(mask, iterations=2)
    img[edge] = col
    return np.clip(img, 0, 255).astype(np.uint8)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H×W×3 → ImageNet-normalised float32 3×H×W (the one normalisation of training and testing)."""
    from .constants import IMAGENET_MEAN, IMAGENET_STD

    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
    return (t - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


_PALETTE = np.array([(0, 0, 0), (255, 64, 0), (0, 200, 255), (80, 255, 80), (255, 220, 0), (200, 80, 255)], np.uint8)


def _collect_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    from .data import IMAGE_EXTENSIONS

    files: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            folder = next((p / d for d in ("images", "image") if (p / d).is_dir()), p)
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
) -> pd.DataFrame:
    """Segment image files or folders: ``out/masks/<stem>.png`` (0/255 at ``threshold``, or label values),
    ``out/probs/<stem>.png`` (8-bit probability, one class) and ``out/overlays/<stem>.png``.

    Returns one row per image (``name``, ``height``, ``width``, ``foreground`` fraction, file paths). Inputs that
    share a file name get ``-2``, ``-3``… suffixes instead of overwriting each other.
    """
    from tqdm.auto import tqdm

    from .data import load_image

    files = _collect_inputs(inputs)
    out = Path(out)
    for sub in ("masks", "overlays") + (("probs",) if getattr(model, "classes", 1) == 1 else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    model.eval()
    rows, used = [], set()
    for path in tqdm(files, desc="predict", unit="img", disable=not progress, mininterval=5.0):
        image = load_image(path)
        h, w = image.shape[:2]
        resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        prob = predict_batch(model, _to_tensor(resized)[None], [(h, w)])[0]
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
            Image.fromarray(_labels_to_png(labels, class_values)).save(out / "masks" / f"{stem}.png")
            tint = _PALETTE[labels % len(_PALETTE)].astype(np.float32)
            blend = np.where(labels[..., None] > 0, 0.55 * image + 0.45 * tint, image)
            Image.fromarray(np.clip(blend, 0, 255).astype(np.uint8)).save(out / "overlays" / f"{stem}.png")
            fg = float((labels > 0).mean())
        rows.append({"name": stem, "height": h, "width": w, "foreground": fg, "input": str(path),
                     "mask": str(out / "masks" / f"{stem}.png"), "overlay": str(out / "overlays" / f"{stem}.png")})
    df = pd.DataFrame(rows)
    write_text(out / "predictions.csv", df.to_csv(index=False))
    return df
