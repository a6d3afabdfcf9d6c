"""Writing a synthetic dataset: the plan of images per split, parallel generation, the manifest, ``ensure_*``."""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ...constants import POLYP_TEST_SETS, TASKS
from ..layout import IMAGE_DIR_NAMES, MASK_DIR_NAMES, find_child, find_pair_dirs, list_images, load_mask, pair_files
from .base import SyntheticDataError
from .polyp import POLYP_TRAIN_MIX, _task_difficulty, polyp_sample, polyp_style
from .scans import busi_sample, covid_sample, oct_sample

__all__ = [
    "BUSI_CLASSES",
    "GENERATOR_VERSION",
    "MANIFEST",
    "all_pairs",
    "dataset_name",
    "default_n_test",
    "ensure_dataset",
    "ensure_synthetic",
    "generate",
    "mask_statistics",
    "read_manifest",
]

BUSI_CLASSES = ("benign", "malignant", "normal")
BUSI_PROPORTIONS = (437 / 780, 210 / 780, 133 / 780)
MANIFEST = "m2s_synthetic.json"
GENERATOR_VERSION = 1
_TASK_CODE = {"polyp": 1, "busi": 2, "covid": 3, "oct": 4}
_JPEG_QUALITY = 92
# The widest synthetic image: the real datasets are at most 1920 px wide (Kvasir), and the generators' working
# memory grows with the area (about 0.5 GB per worker at 2048 px for the busiest task, 2 GB at 4096 px).
MAX_SIZE = 2048


# ----------------------------------------------------------------------------------------------------------------
# Writing datasets
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class _Job:
    task: str
    split: str  # "TrainDataset", "TestDataset/Kvasir", or "" (busi)
    split_code: int
    index: int
    name: str
    seed: int
    size: int
    out: str
    style: str = ""
    difficulty: str = "realistic"
    cls: str = ""
    extra: dict = field(default_factory=dict)


def default_n_test(task: str, n: int) -> int:
    """Default images per test set: n // 5, at least 1 (busi has no test split: 0)."""
    return 0 if task == "busi" else max(1, n // 5)


def _save(path: Path, array: np.ndarray, jpeg: bool) -> None:
    img = Image.fromarray(array)
    if jpeg:
        img.save(path, format="JPEG", quality=_JPEG_QUALITY)
    else:
        img.save(path, format="PNG", compress_level=1)


def _run_job(job: _Job) -> tuple[str, str, str]:
    rng = np.random.default_rng([job.seed, _TASK_CODE[job.task], job.split_code, job.index])
    if job.task == "polyp":
        image, mask = polyp_sample(rng, job.size, polyp_style(job.style, job.difficulty))
        ext = ".jpg"
    elif job.task == "busi":
        image, mask = busi_sample(rng, job.size, job.cls)
        ext = ".png"
    elif job.task == "covid":
        image, mask = covid_sample(rng, job.size)
        ext = ".jpg"
    else:
        image, mask = oct_sample(rng, job.size)
        ext = ".png"
    folder = Path(job.out) / job.split if job.split else Path(job.out)
    _save(folder / "images" / f"{job.name}{ext}", image, jpeg=ext == ".jpg")
    _save(folder / "masks" / f"{job.name}.png", mask, jpeg=False)
    return job.split, job.name, job.cls


def _plan(task: str, out: Path, n: int, seed: int, size: int, n_test: int, difficulty: str = "realistic") -> list[_Job]:
    jobs: list[_Job] = []
    common = {"task": task, "seed": seed, "size": size, "out": str(out)}
    if task == "busi":
        rng = np.random.default_rng([seed, _TASK_CODE[task], 99])
        counts = np.floor(np.asarray(BUSI_PROPORTIONS) * n).astype(int)
        counts[0] += n - counts.sum()
        classes = np.repeat(np.arange(3), counts)
        rng.shuffle(classes)
        per_class = {c: 0 for c in BUSI_CLASSES}
        for i, k in enumerate(classes):
            cls = BUSI_CLASSES[int(k)]
            per_class[cls] += 1
            jobs.append(_Job(split="", split_code=0, index=i, name=f"{cls}_{per_class[cls]:04d}", cls=cls, **common))
        return jobs
    if task == "polyp":
        rng = np.random.default_rng([seed, _TASK_CODE[task], 98])
        names = [s for s, _ in POLYP_TRAIN_MIX]
        probs = np.asarray([p for _, p in POLYP_TRAIN_MIX])
        styles = rng.choice(len(names), size=n, p=probs / probs.sum())
        for i in range(n):
            jobs.append(_Job(split="TrainDataset", split_code=0, index=i, name=f"{i + 1:05d}",
                             style=names[int(styles[i])], difficulty=difficulty, **common))
        for k, test_set in enumerate(sorted(POLYP_TEST_SETS), start=1):  # split codes follow the folder order
            for i in range(n_test):
                jobs.append(_Job(split=f"TestDataset/{test_set}", split_code=k, index=i, name=f"{i + 1:04d}",
                                 style=test_set, difficulty=difficulty, **common))
        return jobs
    test_name = "COVID-19" if task == "covid" else "GOALS"
    for i in range(n):
        jobs.append(_Job(split="TrainDataset", split_code=0, index=i, name=f"{i + 1:05d}", **common))
    for i in range(n_test):
        jobs.append(_Job(split=f"TestDataset/{test_name}", split_code=1, index=i, name=f"{i + 1:04d}", **common))
    return jobs


def _check_params(task: str, n: int, size: int, n_test: int | None) -> None:
    if task not in TASKS:
        raise SyntheticDataError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    if int(n) < 1:
        raise SyntheticDataError(f"n must be at least 1 (got {n})")
    if int(size) < 32:
        raise SyntheticDataError(f"size must be at least 32 pixels (got {size})")
    if int(size) > MAX_SIZE:
        raise SyntheticDataError(
            f"size (--size) {size} is larger than the {MAX_SIZE} pixels synthetic images may be wide (the real "
            f"datasets are at most 1920; the generator's memory grows with the area): choose --size {MAX_SIZE} or less")
    if n_test is not None and int(n_test) < 0:
        raise SyntheticDataError(f"n_test must be >= 0 (got {n_test})")


def _limit_threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def generate(task: str, out_dir, n: int, seed: int = 0, size: int = 352, n_test: int | None = None,
             progress: bool = True, workers: int | None = None, difficulty: str = "realistic") -> Path:
    """Write a synthetic ``task`` dataset of ``n`` training images (``n_test`` per test set) to ``out_dir``.

    ``out_dir`` must not exist or be empty: the dataset is written to a temporary sibling folder and renamed into
    place at the end, so an interrupted run leaves nothing half-written. ``workers`` processes share the work
    (default: 2 when n >= 64 and the machine has 2+ cores, else 1); the bytes do not depend on it.
    ``difficulty`` (polyp only; the other tasks have one level): ``"realistic"`` or ``"teaching"`` (see
    :func:`polyp_style`). Returns ``out_dir`` as a Path. See the module docstring for the layouts.
    """
    _check_params(task, n, size, n_test)
    difficulty = _task_difficulty(task, difficulty)
    n, size, seed = int(n), int(size), int(seed)
    n_test = default_n_test(task, n) if n_test is None else int(n_test)
    if task == "busi":
        n_test = 0
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SyntheticDataError(
            f"{out} already exists and is not empty; nothing was written. Choose another --out folder "
            "(existing data is never deleted or overwritten).")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        jobs = _plan(task, tmp, n, seed, size, n_test, difficulty)
        for split in sorted({j.split for j in jobs}):
            for sub in ("images", "masks"):
                (tmp / split / sub).mkdir(parents=True, exist_ok=True)
        if workers is None:
            workers = 2 if (len(jobs) >= 64 and (os.cpu_count() or 1) >= 2) else 1
        from ...progress import progress_bar as tqdm

        bar = tqdm(total=len(jobs), desc=f"synthetic {task}", unit="img", disable=not progress)
        results = []
        t0 = time.perf_counter()
        if workers <= 1:
            for job in jobs:
                results.append(_run_job(job))
                bar.update(1)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_limit_threads) as pool:
                for res in pool.map(_run_job, jobs, chunksize=16):
                    results.append(res)
                    bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - t0
        counts: dict[str, int] = {}
        for split, _name, _cls in results:
            counts[split or "."] = counts.get(split or ".", 0) + 1
        if task == "busi":
            with open(tmp / "labels.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["name", "class"])
                for _split, name, cls in sorted(results, key=lambda r: r[1]):
                    writer.writerow([name, cls])
        manifest = {
            "task": task, "n": n, "seed": seed, "size": size, "n_test": n_test, "difficulty": difficulty,
            "generator_version": GENERATOR_VERSION, "counts": counts,
            "seconds": round(elapsed, 2),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


_PARAM_KEYS = ("task", "n", "seed", "size", "n_test", "difficulty")


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else 0


def read_manifest(root) -> dict | None:
    """The generator's manifest of the synthetic dataset in ``root`` (``None`` when ``root`` holds none). Manifests
    written before the difficulty setting existed describe realistic data and say so here."""
    path = Path(root).expanduser() / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SyntheticDataError(f"{path} is unreadable ({err}); use another root folder") from err
    manifest.setdefault("difficulty", "realistic")
    return manifest


def ensure_synthetic(task: str, root, n: int, seed: int = 0, size: int = 352, n_test: int | None = None,
                     progress: bool = True, workers: int | None = None, difficulty: str = "realistic") -> Path:
    """Return ``root`` holding the synthetic ``task`` dataset with these parameters, generating it if absent.

    Idempotent: when ``root`` already holds a dataset made with the same parameters (its ``m2s_synthetic.json``
    manifest) and the file counts on disk match, nothing is done. When ``root`` holds anything else, a
    :class:`SyntheticDataError` names the folder and asks for another root; nothing is ever deleted.
    """
    _check_params(task, n, size, n_test)
    n_test_eff = 0 if task == "busi" else (default_n_test(task, int(n)) if n_test is None else int(n_test))
    difficulty = _task_difficulty(task, difficulty)
    want = {"task": task, "n": int(n), "seed": int(seed), "size": int(size), "n_test": n_test_eff,
            "difficulty": difficulty}
    root = Path(root).expanduser()
    have = read_manifest(root)
    if have is not None:
        have_params = {k: have.get(k) for k in _PARAM_KEYS}
        if have_params != want:
            diff = ", ".join(f"{k}={have_params[k]!r} (asked {want[k]!r})" for k in _PARAM_KEYS
                             if have_params[k] != want[k])
            raise SyntheticDataError(
                f"{root} already holds a synthetic dataset made with other parameters: {diff}. "
                f"Pass another root (e.g. --out {root}-{task}-n{n}-s{seed}) or delete {root} yourself.")
        bad = []
        for split, count in have.get("counts", {}).items():
            folder = root if split == "." else root / split
            for sub in ("images", "masks"):
                found = _count_files(folder / sub)
                if found != count:
                    bad.append(f"{folder / sub}: {found} files, manifest says {count}")
        if bad:
            raise SyntheticDataError(
                f"{root} holds a synthetic dataset whose files changed since it was written ({'; '.join(bad[:5])}). "
                f"Delete {root} yourself or pass another root.")
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SyntheticDataError(
            f"{root} exists and is not a synthetic dataset made by this library (no {MANIFEST}); nothing was "
            "written. Pass another root folder.")
    return generate(task, root, n, seed=seed, size=size, n_test=n_test_eff, progress=progress, workers=workers,
                    difficulty=difficulty)


def dataset_name(task: str, n: int, n_test: int | None, seed: int = 0, size: int = 352,
                 difficulty: str = "realistic") -> str:
    """The folder name ``m2s train``, ``make reproduce`` and the benchmarks give a synthetic dataset, e.g.
    ``synthetic-polyp-n400-t20-s0-128px-teaching`` (no suffix for the realistic level)."""
    difficulty = _task_difficulty(task, difficulty)
    suffix = "" if difficulty == "realistic" else f"-{difficulty}"
    return f"synthetic-{task}-n{n}-t{n_test}-s{seed}-{size}px{suffix}"


def ensure_dataset(task: str, root, n: int, seed: int = 0, size: int = 352, n_test: int | None = None,
                   difficulty: str = "realistic", progress: bool = True) -> tuple[Path, str]:
    """The notebooks' data rule: ``root`` holding a real dataset is used as it is; a missing or empty ``root``, or
    one holding a synthetic set, gets the synthetic ``task`` set (:func:`ensure_synthetic`). Returns
    ``(root, "real" | "synthetic")``."""
    root = Path(root).expanduser()
    empty = not root.exists() or (root.is_dir() and not any(root.iterdir()))
    if not empty and not (root / MANIFEST).is_file():
        return root, "real"
    ensure_synthetic(task, root, n, seed=seed, size=size, n_test=n_test, progress=progress, difficulty=difficulty)
    return root, "synthetic"


# ----------------------------------------------------------------------------------------------------------------
# Looking at a dataset
# ----------------------------------------------------------------------------------------------------------------
def all_pairs(root: Path) -> list[tuple[str, str, Path, Path]]:
    """(split, name, image path, mask path) for every pair under root (the loader's folder rules)."""
    out = []
    for folder in find_pair_dirs(root):
        rel = folder.relative_to(root).as_posix()
        split = root.name if rel == "." else rel
        img_dir, mask_dir = find_child(folder, IMAGE_DIR_NAMES), find_child(folder, MASK_DIR_NAMES)
        if not list_images(img_dir):
            continue
        images, masks = pair_files(img_dir, mask_dir)
        out += [(split, i.stem, i, m) for i, m in zip(images, masks)]
    return out


def mask_statistics(root) -> pd.DataFrame:  # noqa: F821
    """One row per mask under ``root``: split, name, height, width, area_fraction (foreground pixels / all, mask
    binarised at 128) and components (8-connected foreground regions). For the polyp size distribution plot."""
    import pandas as pd

    root = Path(root)
    rows = []
    structure = np.ones((3, 3), dtype=bool)
    for split, name, _ip, mp_ in all_pairs(root):
        m = load_mask(mp_).astype(bool)
        _, k = ndi.label(m, structure=structure)
        rows.append({"split": split, "name": name, "height": m.shape[0], "width": m.shape[1],
                     "area_fraction": float(m.mean()), "components": int(k)})
    return pd.DataFrame(rows, columns=["split", "name", "height", "width", "area_fraction", "components"])
