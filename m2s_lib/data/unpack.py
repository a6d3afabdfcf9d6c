"""Unpacking archives and laying their contents out as the library expects (one normaliser per archive kind)."""
from __future__ import annotations

import csv
import lzma
import os
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..constants import GOALS_CLASS_VALUES, POLYP_TEST_SETS
from .catalogue import DownloadError, Part
from .layout import find_child, list_images

__all__ = ["convert_goals", "normalise", "unpack"]

# Folder names seen in the wild for images and masks (the loader itself reads images/ + masks/ or image/ + mask/).
IMAGE_DIR_ALIASES = ("images", "image", "imgs", "img", "frame", "frames", "original", "originals")
MASK_DIR_ALIASES = ("masks", "mask", "gt", "gts", "groundtruth", "ground_truth", "ground truth", "labels", "label",
                    "layer_masks", "layer_mask", "segmentation", "annotations")


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        return "tar"
    if head.startswith(b"Rar!"):
        return "rar"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.lstrip().lower().startswith((b"<!doc", b"<html")):
        return "html"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    return "unknown"


def _unsafe_member(name: str) -> bool:
    """A member name that would land outside the unpack folder: absolute (``/x``, ``C:\\x``) or holding ``..``."""
    posix = name.replace("\\", "/")
    return posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in posix.split("/")


def _refuse_unsafe(archive: Path, names: list[str]) -> None:
    bad = [n for n in names if _unsafe_member(n)]
    if bad:
        raise DownloadError(f"{archive} holds {len(bad)} member(s) that would be written outside the unpack folder "
                            f"({', '.join(repr(n) for n in bad[:3])}): refused, nothing was unpacked. Check where "
                            "the archive came from, or unpack it yourself and pass the folder with --source")


def _extract(archive: Path, kind: str, dest: Path, progress: bool) -> None:
    from ..progress import progress_bar as tqdm

    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _refuse_unsafe(archive, [m.filename for m in members])
            for m in tqdm(members, desc=f"unpack {archive.name}", unit="file", disable=not progress):
                zf.extract(m, dest)
        return
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        _refuse_unsafe(archive, [m.name for m in members])
        for m in tqdm(members, desc=f"unpack {archive.name}", unit="file", disable=not progress):
            tf.extract(m, dest, filter="data")


def unpack(archive: Path, dest: Path, progress: bool = True) -> None:
    """Unpack a zip or tar archive into ``dest``. Every problem is one :class:`DownloadError` (one line, naming the
    archive and what to do): a web page or an unknown format, a truncated or damaged archive, or members that would
    land outside ``dest`` (``..``, absolute paths: refused before anything is written; links: tar's "data" filter)."""
    kind = _sniff(archive)
    if kind == "html":
        raise DownloadError(f"{archive} is a web page, not an archive (Google Drive refused the download, often "
                            "its daily quota); delete it and try later, or download it in a browser")
    if kind not in ("zip", "tar"):
        raise DownloadError(f"{archive} is a {kind} archive that Python cannot unpack: unpack it yourself and pass "
                            "the folder with --source")
    damaged = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.ReadError, tarfile.CompressionError, EOFError,
               zlib.error, lzma.LZMAError, OSError)
    try:
        _extract(archive, kind, dest, progress)
    except tarfile.FilterError as err:  # links or special files pointing outside the destination
        raise DownloadError(f"{archive} holds a member that would be written outside the unpack folder ({err}): "
                            "refused. Check where the archive came from") from err
    except damaged as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise  # a full disk or a permission problem is not the archive's fault
        raise DownloadError(f"{archive} is truncated or damaged ({type(err).__name__}): download it again (--force "
                            "downloads afresh) or pass a complete archive with --source") from err


# ---------------------------------------------------------------------------------------------------------------


def _raw_pair_dirs(src: Path) -> list[tuple[Path, Path, Path]]:
    """(folder, images dir, masks dir) for every folder under src whose subfolders look like images + masks."""
    out = []
    for folder in [src, *sorted(p for p in src.rglob("*") if p.is_dir())]:
        if folder.name.startswith(".") or "__MACOSX" in folder.parts:
            continue
        i, m = find_child(folder, IMAGE_DIR_ALIASES), find_child(folder, MASK_DIR_ALIASES)
        if i is not None and m is not None and list_images(i):
            out.append((folder, i, m))
    return out


def _transfer(src: Path, dst: Path, move: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(src, dst)
    else:
        shutil.copy2(src, dst)


def _copy_pair_dir(images: Path, masks: Path, dest: Path, move: bool) -> None:
    for sub, folder in (("images", images), ("masks", masks)):
        for f in list_images(folder):
            _transfer(f, dest / sub / f.name, move)


_CANON = {"".join(ch for ch in s.lower() if ch.isalnum()): s for s in POLYP_TEST_SETS}
_CANON.update({"cvct": "CVC-300", "etis": "ETIS-LaribPolypDB", "kvasirseg": "Kvasir", "cvc612": "CVC-ClinicDB"})


def _set_name(folder: Path, src: Path, default: str) -> str:
    if folder == src:
        return default or src.name
    key = "".join(ch for ch in folder.name.lower() if ch.isalnum())
    return _CANON.get(key, folder.name)


def _norm_single(src: Path, stage: Path, part: Part, move: bool) -> list[str]:
    pairs = _raw_pair_dirs(src)
    if not pairs:
        raise DownloadError(f"{part.name}: found no images + masks folders in {src}")
    notes = []
    if len(pairs) > 1:
        pairs.sort(key=lambda t: len(list_images(t[1])), reverse=True)
        others = ", ".join(str(p[0].relative_to(src)) for p in pairs[1:])
        notes.append(f"{part.name}: several image folders; used {pairs[0][0].relative_to(src)}, ignored {others}")
    _, i, m = pairs[0]
    _copy_pair_dir(i, m, stage / part.dest, move)
    return notes


def _norm_sets(src: Path, stage: Path, part: Part, move: bool) -> list[str]:
    pairs = _raw_pair_dirs(src)
    if not pairs:
        raise DownloadError(f"{part.name}: found no images + masks folders in {src}")
    used: dict[str, Path] = {}
    for folder, i, m in pairs:
        name = _set_name(folder, src, part.default_set)
        if name in used:  # same folder name in two places: use the relative path
            name = "_".join(folder.relative_to(src).parts)
        used[name] = folder
        _copy_pair_dir(i, m, stage / part.dest / name, move)
    return []


def _norm_busi(src: Path, stage: Path, part: Part, move: bool) -> list[str]:
    """Dataset_BUSI_with_GT (class folders, '<name>_mask.png', '<name>_mask_1.png' ...) or an images/masks copy."""
    notes: list[str] = []
    rows: list[tuple[str, str]] = []
    class_dirs = [p for p in sorted(src.rglob("*")) if p.is_dir() and p.name.lower() in ("benign", "malignant", "normal")
                  and "__MACOSX" not in p.parts]
    if class_dirs:
        for cdir in class_dirs:
            cls = cdir.name.lower()
            files = list_images(cdir)
            masks: dict[str, list[Path]] = {}
            images = []
            for f in files:
                stem = f.stem
                if "_mask" in stem:
                    masks.setdefault(stem.split("_mask")[0], []).append(f)
                else:
                    images.append(f)
            for img in images:
                mk = masks.get(img.stem, [])
                if not mk:
                    notes.append(f"busi: {img.name} has no mask, skipped")
                    continue
                union = None
                for mf in mk:
                    arr = np.asarray(Image.open(mf).convert("L")) >= 128
                    union = arr if union is None else (union | arr)
                if len(mk) > 1:
                    notes.append(f"busi: {img.name}: merged {len(mk)} masks")
                _transfer(img, stage / "images" / img.name, move)
                (stage / "masks").mkdir(parents=True, exist_ok=True)
                Image.fromarray((union * 255).astype(np.uint8)).save(stage / "masks" / f"{img.stem}.png")
                rows.append((img.stem, cls))
    else:
        pairs = _raw_pair_dirs(src)
        if not pairs:
            raise DownloadError(f"busi: found neither benign/malignant/normal folders nor images + masks in {src}")
        _, i, m = max(pairs, key=lambda t: len(list_images(t[1])))
        _copy_pair_dir(i, m, stage, move)
        for f in list_images(stage / "images"):
            cls = next((c for c in ("benign", "malignant", "normal") if f.stem.lower().startswith(c)), "")
            rows.append((f.stem, cls))
        if any(not c for _, c in rows):
            notes.append("busi: some names do not start with benign/malignant/normal; their class is empty in "
                         "labels.csv (fill it in for stratified folds)")
    stage.mkdir(parents=True, exist_ok=True)
    with open(stage / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "class"])
        w.writerows(sorted(rows))
    return notes


GOALS_VALUES = set(GOALS_CLASS_VALUES)


def convert_goals(src: Path, stage: Path, part: Part | None = None, move: bool = False) -> list[str]:
    """GOALS training data (``Image/`` + ``Layer_Masks/``, possibly inside ``Train/``) -> ``TrainDataset``;
    other labelled folders (e.g. a validation set with labels) -> ``TestDataset/<name>``. Label images are copied
    unchanged (values 0 RNFL, 80 GCIPL, 160 choroid, 255 background) after checking their values."""
    notes = []
    pairs = _raw_pair_dirs(Path(src))
    if not pairs:
        raise DownloadError(f"goals: found no Image/ + Layer_Masks/ folders in {src}")
    train_done = False
    for folder, i, m in pairs:
        rel = folder.relative_to(src).as_posix().lower() if folder != src else ""
        is_train = (not train_done) and ("val" not in rel and "test" not in rel)
        dest = stage / "TrainDataset" if is_train else stage / "TestDataset" / (folder.name or "GOALS")
        train_done = train_done or is_train
        bad = []
        for f in list_images(m):
            vals = set(np.unique(np.asarray(Image.open(f))).tolist())
            if not vals <= GOALS_VALUES:
                bad.append(f"{f.name}: {sorted(vals - GOALS_VALUES)[:5]}")
        if bad:
            notes.append(f"goals: {len(bad)} label images hold values other than 0/80/160/255 (e.g. {bad[0]})")
        _copy_pair_dir(i, m, dest, move)
    return notes


_NORMALISERS: dict[str, Callable[..., list[str]]] = {
    "single": _norm_single, "sets": _norm_sets, "busi": _norm_busi, "goals": convert_goals,
}


def normalise(part: Part, src: Path, stage: Path, move: bool = False) -> list[str]:
    """Lay the unpacked (or user-given) folder ``src`` out in ``stage`` as the library expects; returns notes."""
    return _NORMALISERS[part.kind](Path(src), Path(stage), part, move)
