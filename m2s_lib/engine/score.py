"""``m2s score``: score anyone's prediction maps against a test set's masks, several methods side by side.

Inputs. The ground truth is any test-set layout ``m2s evaluate`` accepts (``DATA/TestDataset/<set>/{images,masks}``,
the ``TestDataset`` folder, or one set folder; :func:`~m2s_lib.data.layout.find_test_sets`). Each method's maps
mirror the sets, ``DIR/<set>/<stem>.<ext>`` (what ``m2s evaluate`` writes, and how PraNet, Polyp-PVT and the
M2SNet authors release their maps), or lie flat in ``DIR`` when the ground truth has one set. Maps are matched to
masks by file stem (any image extension, any case: ``IMAGE_EXTENSIONS``), read as 8-bit (16-bit maps scaled by
255/65535, colour maps by their first channel) and, when their size differs from the mask's, resized to it
(``pranet``: bicubic, as the MATLAB toolbox's ``imresize``; ``authors``: bilinear).

The missing-map rule: a test image without a map is an error (one line naming the method, the set, the count and
the files), because leaving it out would raise the mean silently. ``allow_missing=True`` (``--allow-missing``)
scores it as an all-zero map instead, so it still counts in ``n``. Extra maps (no mask), non-image files,
resized, 16-bit, all-zero or constant maps and maps with another extension than their masks are reported, one
line each per method and set, and listed in ``input_report.csv``.

Scoring is :func:`m2s_lib.metrics.score_map` per image, the step ``m2s evaluate`` uses, so scoring the maps that
``m2s evaluate`` wrote gives its numbers. The tables, the paired comparison and the figure are
:mod:`m2s_lib.engine.score_report`.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..constants import IMAGE_EXTENSIONS, POLYP_TEST_SETS
from ..data.layout import (
    IMAGE_DIR_NAMES,
    MASK_DIR_NAMES,
    DatasetError,
    find_child,
    find_test_sets,
    list_images,
    load_image,
    load_mask,
    pair_files,
    short_list,
)
from ..metrics import POLYP_COLUMNS, PolypMetrics, score_map
from . import score_report
from .score_report import SCORE_OUTPUTS

__all__ = ["MapJob", "SCORE_OUTPUTS", "ScoreResult", "build_jobs", "ground_truth", "map_folders", "parse_pred",
           "read_map", "resize_map", "score_job", "score_maps"]

PROTOCOLS = ("pranet", "authors")
# How a map whose size differs from its mask's is brought to the mask's size, per protocol.
RESIZE = {"pranet": Image.Resampling.BICUBIC, "authors": Image.Resampling.BILINEAR}
RESIZE_WORDS = {"pranet": "bicubic, as the PraNet toolbox's imresize", "authors": "bilinear"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
REPORT_COLUMNS = ("method", "dataset", "kind", "count", "files", "message")


@dataclass
class MapJob:
    """One method's maps of one test set: ``items`` = (stem, mask path, map path or None when missing)."""

    method: str
    dataset: str
    protocol: str
    items: list[tuple[str, str, str | None]]


@dataclass
class ScoreResult:
    """What :func:`score_maps` found: the Table 1 rows, the per-image scores, the paired differences."""

    results: pd.DataFrame  # dataset, method, n, missing, mDice … MAE, protocol
    per_image: dict[tuple[str, str], pd.DataFrame]  # (method, dataset) -> name, measures, map
    paired: pd.DataFrame  # see score_report.paired_differences
    report: pd.DataFrame  # REPORT_COLUMNS: what was odd about the inputs
    protocol: str
    methods: list[str]
    datasets: list[str]
    baseline: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # method -> its folder, "ground truth" -> the data root


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------
def parse_pred(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` (the ``--pred`` value) -> ``(NAME, DIR)``; a bad value is a one-line ``ValueError``."""
    name, sep, folder = text.partition("=")
    name, folder = name.strip(), folder.strip()
    if not sep or not name or not folder:
        raise ValueError(f"--pred {text!r}: write NAME=DIR, e.g. --pred M2SNet=results/M2SNet")
    return name, Path(folder).expanduser()


def ground_truth(data_root: str | os.PathLike, sets: Sequence[str] | None = None) -> dict[str, dict[str, Path]]:
    """``{set: {stem: mask path}}`` of the test sets under ``data_root`` (paper order first; ``sets`` selects)."""
    found = find_test_sets(data_root)
    if sets is not None:
        unknown = [s for s in sets if s not in found]
        if unknown:
            raise DatasetError(f"test sets {unknown} are not under {data_root}: found {sorted(found)}")
        found = {s: found[s] for s in sets}
    order = [s for s in POLYP_TEST_SETS if s in found] + [s for s in found if s not in POLYP_TEST_SETS]
    out = {}
    for name in order:
        folder = found[name]
        _, masks = pair_files(find_child(folder, IMAGE_DIR_NAMES), find_child(folder, MASK_DIR_NAMES))
        out[name] = {m.stem: m for m in masks}
    return out


def map_folders(pred_dir: Path, sets: Sequence[str], method: str) -> tuple[dict[str, Path | None], list[str]]:
    """Where each test set's maps of ``method`` are (``None``: no folder for that set) and the names of
    subfolders that hold images but match no test set. ``DIR/<set>/`` first, else a flat ``DIR`` for one set."""
    if not pred_dir.is_dir():
        raise DatasetError(f"--pred {method}={pred_dir}: no such folder")
    subdirs = {p.name: p for p in sorted(pred_dir.iterdir()) if p.is_dir()}
    by_lower = {name.lower(): p for name, p in subdirs.items()}
    found = {s: subdirs.get(s) or by_lower.get(s.lower()) for s in sets}
    if any(found.values()):
        used = set(found.values())
        unused = [name for name, p in subdirs.items() if p not in used and list_images(p)]
        return found, unused
    if list_images(pred_dir):
        if len(sets) == 1:
            return {sets[0]: pred_dir}, []
        raise DatasetError(
            f"--pred {method}={pred_dir} holds maps directly, but the ground truth has {len(sets)} test sets "
            f"({short_list(list(sets))}): put each set's maps in {pred_dir}/<set>/ (as `m2s evaluate` writes them), "
            "or choose one set with --sets")
    raise DatasetError(f"--pred {method}={pred_dir} holds neither maps nor folders named after the test sets "
                       f"({short_list(list(sets))}): point it at the folder that holds <set>/<name>.png")


def _list_maps(folder: Path | None) -> tuple[dict[str, Path], list[str]]:
    """Maps by stem and the names of the other (non-image) files of a folder; two maps with one stem: an error."""
    if folder is None:
        return {}, []
    maps: dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem in maps:
            raise DatasetError(f"{folder}: {maps[p.stem].name} and {p.name} are maps of the same image: keep one")
        maps[p.stem] = p
    others = sorted(p.name for p in folder.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_EXTENSIONS)
    return maps, others


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _problem(method: str, dataset: str, kind: str, files: Sequence[str], message: str) -> dict:
    return {"method": method, "dataset": dataset, "kind": kind, "count": len(files), "files": " ".join(files),
            "message": f"{method} / {dataset}: {message}" if dataset else f"{method}: {message}"}


def _listing_problems(method: str, dataset: str, masks: Mapping[str, Path], maps: Mapping[str, Path],
                      others: Sequence[str], allow_missing: bool) -> list[dict]:
    rows = []
    missing = sorted(set(masks) - set(maps))
    extra = sorted(set(maps) - set(masks))
    if missing and allow_missing:
        rows.append(_problem(method, dataset, "missing", missing,
                             f"{len(missing)} of {len(masks)} maps missing ({short_list(missing, 5)}): scored as "
                             "all-zero maps (--allow-missing), counted in n"))
    if extra:
        rows.append(_problem(method, dataset, "extra", extra,
                             f"{_n(len(extra), 'map')} without a mask, not scored ({short_list(extra, 5)})"))
    if others:
        rows.append(_problem(method, dataset, "not an image", list(others),
                             f"ignored {_n(len(others), 'non-image file')} ({short_list(list(others), 5)}); "
                             f"maps are {'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}"))
    other_ext = [f"{maps[s].name}" for s in sorted(set(maps) & set(masks))
                 if maps[s].suffix.lower() != masks[s].suffix.lower()]
    if other_ext:
        first = other_ext[0]
        rows.append(_problem(method, dataset, "other extension", other_ext,
                             f"{_n(len(other_ext), 'map')} with another extension than the masks (e.g. {first} for "
                             f"{masks[Path(first).stem].name}): matched by name without extension"
                             + ("; JPEG maps carry compression noise" if Path(first).suffix.lower() in
                                (".jpg", ".jpeg") else "")))
    return rows


def build_jobs(gt: Mapping[str, Mapping[str, Path]], preds: Mapping[str, Path], protocol: str,
               allow_missing: bool = False) -> tuple[list[MapJob], list[dict]]:
    """One :class:`MapJob` per (method, test set) and the input report rows; missing maps without
    ``allow_missing`` raise one line that names every method and set concerned."""
    jobs, rows, missing_text = [], [], []
    for method, pred_dir in preds.items():
        folders, unused = map_folders(Path(pred_dir), list(gt), method)
        if unused:
            rows.append(_problem(method, "", "extra folder", unused,
                                 f"ignored {_n(len(unused), 'folder')} of maps matching no test set ({short_list(unused, 5)})"))
        for dataset, masks in gt.items():
            maps, others = _list_maps(folders[dataset])
            rows += _listing_problems(method, dataset, masks, maps, others, allow_missing)
            missing = sorted(set(masks) - set(maps))
            if missing:
                where = folders[dataset] or Path(pred_dir) / dataset
                missing_text.append(f"{method} / {dataset}: {len(missing)} of {len(masks)} in {where} "
                                    f"({short_list(missing, 5)})")
            items = [(s, str(masks[s]), str(maps[s]) if s in maps else None) for s in sorted(masks)]
            jobs.append(MapJob(method, dataset, protocol, items))
    if missing_text and not allow_missing:
        raise DatasetError(
            "maps are missing, and a missing map is never left out of the mean: " + "; ".join(missing_text)
            + ". Give every test image a map named like its mask (any image extension), or pass --allow-missing "
              "to score the missing ones as all-zero maps")
    return jobs, rows


# ---------------------------------------------------------------------------------------------------------------
# Reading and scoring
# ---------------------------------------------------------------------------------------------------------------
def read_map(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """A prediction map as a 2-D uint8 array and whether the file was 16-bit. Decoding is the dataset reader's
    (:func:`~m2s_lib.data.layout.load_image`: 16-bit values × 255/65535, rounded); a colour map gives its first
    channel, as the toolbox's ``resmap(:,:,1)``. An unreadable file raises one line naming it."""
    rgb = load_image(path)
    with Image.open(path) as img:
        sixteen = img.mode in _SIXTEEN_BIT_MODES
    return np.ascontiguousarray(rgb[..., 0]), sixteen


def resize_map(pred8: np.ndarray, shape: tuple[int, int], protocol: str = "pranet") -> np.ndarray:
    """An 8-bit map resized to ``shape`` (H, W) by the protocol's rule (:data:`RESIZE`)."""
    img = Image.fromarray(pred8).resize((int(shape[1]), int(shape[0])), RESIZE[protocol])
    return np.asarray(img)


def score_job(job: MapJob, on_image: Callable[[], None] | None = None
              ) -> tuple[dict[str, float], pd.DataFrame, dict[str, list[str]]]:
    """Score one method on one test set: ``(scores, per-image DataFrame, odd maps by kind)``.

    Each map goes through :func:`m2s_lib.metrics.score_map` (the step ``m2s evaluate`` uses) against the mask read
    by the dataset's mask rule (:func:`~m2s_lib.data.layout.load_mask`)."""
    metric = PolypMetrics(job.protocol)
    odd: dict[str, list[str]] = {"resized": [], "16-bit": [], "all-zero": [], "constant": []}
    files = []
    for stem, mask_path, map_path in job.items:
        gt = load_mask(mask_path).astype(bool)
        if map_path is None:
            pred8 = np.zeros(gt.shape, np.uint8)
        else:
            pred8, sixteen = read_map(map_path)
            if sixteen:
                odd["16-bit"].append(stem)
            if pred8.shape != gt.shape:
                if not odd["resized"]:
                    odd["resized_example"] = [f"{Path(map_path).name} is {pred8.shape[1]}×{pred8.shape[0]}, "
                                              f"its mask {gt.shape[1]}×{gt.shape[0]}"]
                odd["resized"].append(stem)
                pred8 = resize_map(pred8, gt.shape, job.protocol)
            if pred8.min() == pred8.max():
                odd["all-zero" if pred8.max() == 0 else "constant"].append(stem)
        score_map(metric, pred8, gt, name=stem)
        files.append(Path(map_path).name if map_path else "")
        if on_image is not None:
            on_image()
    per_image = metric.per_image()
    per_image["map"] = files
    return metric.results(), per_image, odd


def _odd_rows(job: MapJob, odd: Mapping[str, list[str]]) -> list[dict]:
    m, d = job.method, job.dataset
    rows = []
    if odd["resized"]:
        rows.append(_problem(m, d, "resized", odd["resized"],
                             f"{_n(len(odd['resized']), 'map')} of another size than the mask ({odd['resized_example'][0]}):"
                             f" resized to the mask's size ({RESIZE_WORDS[job.protocol]})"))
    if odd["16-bit"]:
        rows.append(_problem(m, d, "16-bit", odd["16-bit"],
                             f"{_n(len(odd['16-bit']), '16-bit map')}: scaled to 8 bits (round(v·255/65535)) before "
                             "scoring, as the protocol's 256 thresholds need"))
    if odd["all-zero"]:
        rows.append(_problem(m, d, "all-zero", odd["all-zero"],
                             f"{_n(len(odd['all-zero']), 'all-zero map')} ({short_list(odd['all-zero'], 5)}): scored as "
                             "maps that find nothing (Dice near 0); if that is unexpected, check how they were saved"))
    if odd["constant"]:
        rows.append(_problem(m, d, "constant", odd["constant"],
                             f"{_n(len(odd['constant']), 'constant map')} (one value everywhere: {short_list(odd['constant'], 5)}):"
                             " min-max normalisation leaves them as they are; scored so"))
    return rows


def _workers(jobs: Sequence[MapJob], requested: int | None) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(len(jobs), requested or cores))


def run_jobs(jobs: Sequence[MapJob], workers: int | None = None, progress: bool = True) -> list[tuple]:
    """:func:`score_job` of every job, in ``workers`` processes (default: one per core), with a progress bar."""
    from ..progress import progress_bar as tqdm

    n = _workers(jobs, workers)
    out: list = [None] * len(jobs)
    with tqdm(total=sum(len(j.items) for j in jobs), desc="score", unit="map", disable=not progress,
              mininterval=2.0) as bar:
        if n == 1:
            return [score_job(job, on_image=lambda: bar.update(1)) for job in jobs]
        # fork on Linux (workers start at once); spawn elsewhere (fork is unsafe on macOS)
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].items))  # largest first: balanced workers
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            futures = {pool.submit(score_job, jobs[i]): i for i in order}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    out[i] = fut.result()
                    bar.update(len(jobs[i].items))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return out


# ---------------------------------------------------------------------------------------------------------------
# m2s score
# ---------------------------------------------------------------------------------------------------------------
def _check_request(preds: Mapping[str, str | os.PathLike], protocol: str, baseline: str | None) -> dict[str, Path]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is unknown: choose {' or '.join(PROTOCOLS)}")
    if not preds:
        raise ValueError("no maps to score: give at least one --pred NAME=DIR")
    if baseline is not None and baseline not in preds:
        raise ValueError(f"--baseline {baseline!r} is none of the --pred names ({', '.join(preds)})")
    return {name: Path(folder).expanduser() for name, folder in preds.items()}


def score_maps(
    gt: str | os.PathLike,
    preds: Mapping[str, str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    protocol: str = "pranet",
    baseline: str | None = None,
    sets: Sequence[str] | None = None,
    allow_missing: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> ScoreResult:
    """``m2s score``: score every method's maps (``{name: folder}``) on every test set of ``gt``.

    Prints one line per odd input (``log``), scores (``workers`` processes), and with ``out`` writes
    ``results.csv``, ``results.md``, ``per_image/<method>/<set>.csv``, ``paired.csv``, ``input_report.csv`` and
    ``score.png`` (:func:`m2s_lib.engine.score_report.write_outputs`). An ``out`` that is not empty is refused
    unless ``overwrite``, which replaces an earlier ``m2s score``'s outputs there (nothing else).
    ``baseline``: compare every other method with it; ``None``: every pair, in the order given."""
    folders = _check_request(preds, protocol, baseline)
    truth = ground_truth(gt, sets)
    jobs, rows = build_jobs(truth, folders, protocol, allow_missing)
    if out is not None:
        score_report.check_out(out, overwrite)
    scored = run_jobs(jobs, workers, progress)
    for job, (_, _, odd) in zip(jobs, scored):
        rows += _odd_rows(job, odd)
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    if log is not None:
        for message in report["message"]:
            log(message)
    table, per_image = [], {}
    for job, (scores, frame, _) in zip(jobs, scored):
        missing = sum(1 for item in job.items if item[2] is None)
        table.append({"dataset": job.dataset, "method": job.method, "n": int(scores["n"]), "missing": missing,
                      **{c: scores[c] for c in POLYP_COLUMNS}, "protocol": protocol})
        per_image[(job.method, job.dataset)] = frame
    results = pd.DataFrame(table).sort_values("dataset", key=lambda s: s.map(list(truth).index), kind="stable")
    results = results.reset_index(drop=True)
    results.attrs["protocol"] = protocol
    methods, datasets = list(folders), list(truth)
    paired = score_report.paired_differences(per_image, methods, datasets, baseline)
    sources = {"ground truth": str(gt), **{m: str(p) for m, p in folders.items()}}
    result = ScoreResult(results, per_image, paired, report, protocol, methods, datasets, baseline, sources)
    if out is not None:
        score_report.write_outputs(result, out)
    return result
