"""Real datasets: where they come from, how to download, unpack, normalise and verify them.

``m2s data download NAME --root DIR`` fetches each archive of a dataset from the Google-Drive links of the authors'
README with gdown (resumable: an interrupted transfer leaves ``DIR/.downloads/<archive><8 chars>.part`` that the next
run continues), checks its size/sha256 against ``data_scripts/checksums.json`` (recording them there after the
first good download while they are still "unknown"), unpacks it into a temporary folder inside ``DIR``, normalises it
to the library's layout and renames the result into place. A second run finds the data, verifies the counts and
does nothing. Nothing on disk is deleted or overwritten unless ``force=True`` (``--force``).

Without network access, or when Drive refuses, the error is one sentence with the manual route: download the
archive in a browser (Google Drive or the BaiduYun mirror of the authors' README) and pass it with ``--source``
(an archive or an unpacked folder). GOALS (OCT) has no public link in the authors' README: register with the
challenge, download it yourself and convert it with ``m2s data download goals --root DIR --source <folder|zip>``.

Layouts after normalisation (what :mod:`m2s_lib.data` reads)::

    polyp        DIR/TrainDataset/{images,masks}                 1450 (Kvasir 900 + CVC-ClinicDB 550)
                 DIR/TestDataset/<set>/{images,masks}            CVC-300 60, CVC-ClinicDB 62, CVC-ColonDB 380,
                                                                 ETIS-LaribPolypDB 196, Kvasir 100
    video-polyp  DIR/TrainDataset/<clip or set>/{images,masks}   CVC-300 + CVC-612 clips (counts not known here)
                 DIR/TestDataset/<clip or set>/{images,masks}
    covid        DIR/TrainDataset/{images,masks}                 894 (paper)
                 DIR/TestDataset/COVID-19/{images,masks}         383 (paper)
    busi         DIR/{images,masks}, DIR/labels.csv              780 (benign 437, malignant 210, normal 133);
                                                                 several masks of one image are merged
    goals        DIR/TrainDataset/{images,masks}                 100 labelled B-scans, label PNG values 0 RNFL,
                                                                 80 GCIPL, 160 choroid, 255 background
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import json
import os
import shutil
import socket
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import write_text

__all__ = [
    "CHECKSUMS_PATH",
    "DATASETS",
    "PARTS",
    "CountMismatchWarning",
    "Dataset",
    "DownloadError",
    "Part",
    "check_online",
    "convert_goals",
    "download",
    "download_part",
    "drive_url",
    "file_digest",
    "gdown_download",
    "list_datasets",
    "load_checksums",
    "normalise",
    "record_checksum",
    "resolve",
    "verify",
]

# data_scripts/checksums.json next to the package in a source checkout (None when installed without it).
CHECKSUMS_PATH: Path | None = Path(__file__).resolve().parents[1] / "data_scripts" / "checksums.json"
STATE_FILE = ".m2s_download.json"
DOWNLOADS_DIR = ".downloads"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# Folder names seen in the wild for images and masks (the loader itself reads images/ + masks/ or image/ + mask/).
IMAGE_DIR_ALIASES = ("images", "image", "imgs", "img", "frame", "frames", "original", "originals")
MASK_DIR_ALIASES = ("masks", "mask", "gt", "gts", "groundtruth", "ground_truth", "ground truth", "labels", "label",
                    "layer_masks", "layer_mask", "segmentation", "annotations")
POLYP_TEST_SETS = ("CVC-300", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "Kvasir")


class DownloadError(RuntimeError):
    """A dataset could not be fetched, unpacked or normalised; the message says what to do."""


class CountMismatchWarning(UserWarning):
    """A dataset folder holds another number of images than the published dataset."""


@dataclass(frozen=True)
class Part:
    """One downloadable archive of a dataset."""

    name: str  # e.g. "polyp-train"
    gdrive_id: str | None  # None: manual download only
    archive: str  # local file name under DIR/.downloads
    dest: str  # destination under DIR ("TrainDataset", "TestDataset" or "." )
    kind: str  # normaliser: "single", "sets", "busi", "goals"
    expected: dict[str, int | None] = field(default_factory=dict)  # folder under DIR -> number of images
    default_set: str = ""  # name of the set when a "sets" archive holds one unnamed images/masks pair
    baidu: str = ""  # BaiduYun mirror from the authors' README ("url (code xxxx)")


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str
    parts: tuple[Part, ...]
    description: str
    citation: str
    licence: str
    manual: str = ""


def drive_url(gdrive_id: str) -> str:
    return f"https://drive.google.com/file/d/{gdrive_id}/view"


_POLYP_CITE = ("PraNet split (Fan et al., MICCAI 2020): Kvasir-SEG (Jha et al., MMM 2020), CVC-ClinicDB (Bernal et "
               "al., CMIG 2015), CVC-ColonDB (Tajbakhsh et al., IEEE TMI 2015), ETIS-LaribPolypDB (Silva et al., "
               "IJCARS 2014), CVC-300 / EndoScene (Vazquez et al., JHE 2017)")
DATASETS: dict[str, Dataset] = {
    "polyp": Dataset(
        name="polyp", task="polyp",
        parts=(
            Part("polyp-train", "1lODorfB33jbd-im-qrtUgWnZXxB94F55", "polyp-train.zip", "TrainDataset", "single",
                 {"TrainDataset": 1450}, baidu="https://pan.baidu.com/s/17F_n2Mx18osW44vIdYdu1g (code 342v)"),
            Part("polyp-test", "1o8OfBvYE6K-EpDyvzsmMPndnUMwb540R", "polyp-test.zip", "TestDataset", "sets",
                 {"TestDataset/CVC-300": 60, "TestDataset/CVC-ClinicDB": 62, "TestDataset/CVC-ColonDB": 380,
                  "TestDataset/ETIS-LaribPolypDB": 196, "TestDataset/Kvasir": 100},
                 baidu="https://pan.baidu.com/s/1uu44ryvB42uzZRBxnf8-WA (code 4e10)"),
        ),
        description="image polyp segmentation, PraNet split: train 1450, five test sets (798 images)",
        citation=_POLYP_CITE,
        licence="research/education use; each source dataset has its own terms (e.g. Kvasir-SEG: research and "
                "educational use with citation; CVC sets: research use with citation)"),
    "video-polyp": Dataset(
        name="video-polyp", task="polyp",
        parts=(
            Part("video-polyp-train", "1GjYKjyIrQciyii09GEwyLbck2DauV_rw", "video-polyp-train.zip", "TrainDataset",
                 "sets", {}, default_set="train",
                 baidu="https://pan.baidu.com/s/1ewPnV38Kd9XVSMd1F8f9Vw (code 4b45)"),
            Part("video-polyp-test", "1jjZKBcb1zlRn-TgBaxQ8mjoQj8LG8z4p", "video-polyp-test.zip", "TestDataset",
                 "sets", {}, default_set="test",
                 baidu="https://pan.baidu.com/s/1cLUZ9Vp7vx5vaLP8M27Zdw (code ki4a)"),
        ),
        description="video polyp segmentation: CVC-300 (12 clips) and CVC-612 (29 clips), clips split 60/20/20 "
                    "(PNS-Net protocol); file counts are not published, so they are only reported",
        citation="PNS-Net (Ji et al., MICCAI 2021); CVC-ClinicDB/CVC-612 (Bernal et al., CMIG 2015); CVC-300 "
                 "(Vazquez et al., JHE 2017)",
        licence="research use with citation (terms of the CVC datasets)"),
    "covid": Dataset(
        name="covid", task="covid",
        parts=(
            Part("covid-train", "1FHx0Cqkq9iYjEMN3Ldm9FnZ4Vr1u3p-j", "covid-train.zip", "TrainDataset", "single",
                 {"TrainDataset": 894}, baidu="https://pan.baidu.com/s/1C5MyJV6olEvHfP33O298YQ (code uoiy)"),
            Part("covid-test", "1ufi73f_rhq15DElN_gJTO1tTFtUmqDsB", "covid-test.zip", "TestDataset", "sets",
                 {"TestDataset/COVID-19": 383}, default_set="COVID-19",
                 baidu="https://pan.baidu.com/s/1yCPLB-LbQoyPUJxrVbF-Yg (code r867)"),
        ),
        description="COVID-19 lung infection on CT slices: 1,277 slices sampled from two public sets, 894 train / "
                    "383 test (paper); counts are the paper's, the archive may differ",
        citation="COVID-19 CT segmentation dataset (MedSeg, medicalsegmentation.com/covid19); COVID-19 CT Lung and "
                 "Infection Segmentation Dataset (Ma et al., Zenodo 3757476)",
        licence="see each source (MedSeg and Zenodo record 3757476); research use with citation"),
    "busi": Dataset(
        name="busi", task="busi",
        parts=(
            Part("busi", "1t3cyyTbA0mikL8L2rWRtREdWTLfmA3qL", "busi.zip", ".", "busi", {".": 780},
                 baidu="https://pan.baidu.com/s/1AjiTQetB-xdp-d8pAnAPeg (code 409p)"),
        ),
        description="breast ultrasound (BUSI): 780 images of 600 women, benign 437 / malignant 210 / normal 133; "
                    "4-fold cross-validation",
        citation="Al-Dhabyani, Gomaa, Khaled, Fahmy: Dataset of breast ultrasound images. Data in Brief 28, 104863 "
                 "(2020)",
        licence="published with an open-access Data in Brief article; check the terms of the copy you use",
        manual="The public original is 'Dataset_BUSI_with_GT' (folders benign/, malignant/, normal/ with "
               "'<name>_mask.png' files), e.g. from the Data in Brief article's data link; pass the zip or folder "
               "with --source."),
    "goals": Dataset(
        name="goals", task="oct",
        parts=(Part("goals", None, "goals.zip", "TrainDataset", "goals", {"TrainDataset": 100}),),
        description="GOALS 2022 (MICCAI challenge) circumpapillary OCT layer segmentation: 100 labelled training "
                    "B-scans (+100 validation, 100 test); labels 0 RNFL, 80 GCIPL, 160 choroid, 255 background",
        citation="Fang, Li, Fu, Wu, Zhang, Xu: Dataset and evaluation algorithm design for GOALS challenge. "
                 "OMIA 2022 (arXiv 2207.14447)",
        licence="challenge data: registration and the organisers' terms apply (no redistribution)",
        manual="No public link: register for the GOALS 2022 challenge (https://aistudio.baidu.com/aistudio/"
               "competition/detail/230/0/introduction), download the training set (folders Image/ and "
               "Layer_Masks/) and run `m2s data download goals --root DIR --source <zip or folder>`."),
}
PARTS: dict[str, Part] = {p.name: p for d in DATASETS.values() for p in d.parts}
_TASK_ALIASES = {"oct": "goals"}


def resolve(name: str) -> tuple[Dataset, tuple[Part, ...]]:
    """The dataset and the parts a name refers to (a dataset name, a part name, or the task name 'oct')."""
    name = _TASK_ALIASES.get(name, name)
    if name in DATASETS:
        return DATASETS[name], DATASETS[name].parts
    if name in PARTS:
        ds = next(d for d in DATASETS.values() if PARTS[name] in d.parts)
        return ds, (PARTS[name],)
    known = ", ".join(sorted(set(DATASETS) | set(PARTS)))
    raise DownloadError(f"unknown dataset {name!r}: choose one of {known} (`m2s data list`)")


# ---------------------------------------------------------------------------------------------------------------
# Files: digests, checksums table, state, atomic writes
# ---------------------------------------------------------------------------------------------------------------
def file_digest(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def load_checksums(path: Path | None = None) -> dict[str, dict]:
    """The recorded archive sizes and sha256 digests ({} when the table is not available)."""
    path = CHECKSUMS_PATH if path is None else Path(path)
    if path is None or not Path(path).is_file():
        return {}
    return json.loads(Path(path).read_text())


def record_checksum(part: str, size: int, sha256: str, path: Path | None = None) -> bool:
    """Write size/sha256 of ``part``'s archive into the table when they are still 'unknown' there.
    Returns True when the table changed. Never overwrites a known value."""
    path = CHECKSUMS_PATH if path is None else Path(path)
    if path is None or not Path(path).is_file():
        return False
    table = load_checksums(path)
    entry = table.setdefault(part, {})
    changed = False
    for key, value in (("size", int(size)), ("sha256", sha256)):
        if entry.get(key, "unknown") == "unknown":
            entry[key] = value
            changed = True
    if changed:
        write_text(Path(path), json.dumps(table, indent=2, sort_keys=True) + "\n")
    return changed


def _read_state(root: Path) -> dict:
    p = root / STATE_FILE
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except ValueError:
        return {}


def _write_state(root: Path, state: dict) -> None:
    write_text(root / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------------------------
def gdown_download(gdrive_id: str, output: Path, quiet: bool = False) -> Path:
    """Download a Google-Drive file with gdown, resuming a partial ``<output>XXXXXXXX.part`` file when present;
    the finished file is moved to ``output`` by gdown."""
    import gdown

    kwargs = {"id": gdrive_id, "output": str(output), "quiet": quiet, "resume": True}
    params = inspect.signature(gdown.download).parameters
    if "retries" in params:
        kwargs["retries"] = 3
    result = gdown.download(**kwargs)
    if result is None or not Path(output).is_file():
        raise DownloadError(f"gdown returned no file for Drive id {gdrive_id}")
    return Path(output)


def check_online(host: str = "drive.google.com", timeout: float = 5.0) -> None:
    """Raise ConnectionError at once when ``host`` cannot be resolved or reached (instead of gdown's retries).
    Skipped behind a proxy (``HTTPS_PROXY`` / ``ALL_PROXY``), where only gdown's own request can tell."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            pass
    except OSError as err:
        raise ConnectionError(f"cannot reach {host}: {err}") from err


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, socket.gaierror]
    try:
        import requests

        errors.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover
        pass
    try:
        import gdown.exceptions as gex

        errors.append(gex.DownloadError)
        if hasattr(gex, "FileURLRetrievalError"):
            errors.append(gex.FileURLRetrievalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _manual_route(part: Part, root: Path) -> str:
    where = "" if part.gdrive_id is None else f"{drive_url(part.gdrive_id)}"
    if part.baidu:
        where += f" (or BaiduYun {part.baidu})"
    return (f"download {where} in a browser and run `m2s data download {part.name} --root {root} --source "
            f"<downloaded file>` (or unpack it yourself so that {root / part.dest} holds images/ and masks/)")


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


def _unpack(archive: Path, dest: Path, progress: bool = True) -> None:
    from tqdm.auto import tqdm

    kind = _sniff(archive)
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for m in tqdm(members, desc=f"unpack {archive.name}", unit="file", disable=not progress):
                zf.extract(m, dest)  # zipfile drops absolute paths and '..'
        return
    if kind == "tar":
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in tqdm(members, desc=f"unpack {archive.name}", unit="file", disable=not progress):
                tf.extract(m, dest, filter="data")
        return
    if kind == "html":
        raise DownloadError(f"{archive} is a web page, not an archive (Google Drive refused the download, often "
                            "its daily quota); delete it and try later, or download it in a browser")
    raise DownloadError(f"{archive} is a {kind} archive that Python cannot unpack: unpack it yourself and pass the "
                        "folder with --source")


# ---------------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------------
def _visible_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def _child(folder: Path, aliases) -> Path | None:
    subs = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    for a in aliases:
        if a in subs:
            return subs[a]
    return None


def _raw_pair_dirs(src: Path) -> list[tuple[Path, Path, Path]]:
    """(folder, images dir, masks dir) for every folder under src whose subfolders look like images + masks."""
    out = []
    for folder in [src, *sorted(p for p in src.rglob("*") if p.is_dir())]:
        if folder.name.startswith(".") or "__MACOSX" in folder.parts:
            continue
        i, m = _child(folder, IMAGE_DIR_ALIASES), _child(folder, MASK_DIR_ALIASES)
        if i is not None and m is not None and _visible_images(i):
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
        for f in _visible_images(folder):
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
        pairs.sort(key=lambda t: len(_visible_images(t[1])), reverse=True)
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
            files = _visible_images(cdir)
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
        _, i, m = max(pairs, key=lambda t: len(_visible_images(t[1])))
        _copy_pair_dir(i, m, stage, move)
        for f in _visible_images(stage / "images"):
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


GOALS_VALUES = {0, 80, 160, 255}


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
        for f in _visible_images(m):
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


# ---------------------------------------------------------------------------------------------------------------
# Counting and verifying
# ---------------------------------------------------------------------------------------------------------------
def _targets(part: Part, root: Path) -> list[Path]:
    if part.expected:
        return [root / rel for rel in part.expected]
    return [root / part.dest]


def _count_images(folder: Path) -> tuple[int, int]:
    """(#images, #masks) of a folder with images/ + masks/ (0, 0 when absent)."""
    i = _child(folder, ("images", "image")) if folder.is_dir() else None
    m = _child(folder, ("masks", "mask")) if folder.is_dir() else None
    return (len(_visible_images(i)) if i else 0, len(_visible_images(m)) if m else 0)


def _part_counts(part: Part, root: Path) -> dict[str, tuple[int, int]]:
    if part.expected:
        return {rel: _count_images(root / rel) for rel in part.expected}
    base = root / part.dest
    if not base.is_dir():
        return {}
    if _child(base, ("images", "image")):
        return {part.dest: _count_images(base)}
    return {f"{part.dest}/{p.name}": _count_images(p) for p in sorted(base.iterdir()) if p.is_dir()}


def _check_counts(part: Part, counts: dict[str, tuple[int, int]], warn: bool = True) -> list[str]:
    msgs = []
    for rel, (n_img, n_mask) in counts.items():
        exp = part.expected.get(rel)
        if exp is not None and n_img != exp:
            msgs.append(f"{rel}: {n_img} images, the published dataset has {exp}")
        if n_img != n_mask:
            msgs.append(f"{rel}: {n_img} images but {n_mask} masks")
    if warn:
        for msg in msgs:
            warnings.warn(msg, CountMismatchWarning, stacklevel=3)
    return msgs


def verify(name: str, root, deep: bool = False, log: Callable[[str], None] = print) -> dict:
    """Check a dataset folder: the expected folders exist, file counts (against the published counts, or against
    the manifest of a synthetic dataset), images/masks pairing and, with ``deep``, that every pair decodes with
    equal sizes. Returns ``{"ok": bool, "problems": [...], "warnings": [...], "counts": {...}}``."""
    from .data import DatasetError, SegmentationFolder

    root = Path(root).expanduser()
    dataset, parts = resolve(name)
    problems: list[str] = []
    warns: list[str] = []
    counts: dict[str, tuple[int, int]] = {}
    synth = root / "m2s_synthetic.json"
    if synth.is_file():
        manifest = json.loads(synth.read_text())
        log(f"{root} is a synthetic {manifest.get('task')} dataset (n={manifest.get('n')}, seed={manifest.get('seed')})")
        for rel, n in manifest.get("counts", {}).items():
            c = _count_images(root / rel)
            counts[rel] = c
            if c != (n, n):
                problems.append(f"{rel}: {c[0]} images / {c[1]} masks, the manifest says {n}")
        folders = [root / rel for rel in manifest.get("counts", {})]
    else:
        folders = []
        for part in parts:
            pc = _part_counts(part, root)
            if not pc or all(v == (0, 0) for v in pc.values()):
                problems.append(f"{part.name}: nothing at {root / part.dest}; run `m2s data download {part.name} "
                                f"--root {root}` (or `m2s data synth --task {dataset.task} --n 1000 --out {root}` "
                                "for synthetic data)")
                continue
            for rel, c in pc.items():
                if c == (0, 0):
                    problems.append(f"{part.name}: {root / rel} is missing or empty")
            counts.update(pc)
            warns += _check_counts(part, pc, warn=False)
            folders += [root / rel for rel, c in pc.items() if c != (0, 0)]
    for folder in folders:
        try:
            classes, values = (4, (255, 0, 80, 160)) if dataset.task == "oct" else (1, None)
            ds = SegmentationFolder(folder, classes=classes, class_values=values)
            if deep:
                problems += ds.verify(progress=True)
        except DatasetError as err:
            problems.append(str(err))
    for rel, (ni, nm) in counts.items():
        log(f"  {rel}: {ni} images, {nm} masks")
    for w in warns:
        log(f"  warning: {w}")
    for p in problems:
        log(f"  problem: {p}")
    ok = not problems
    log(f"{dataset.name} at {root}: {'OK' if ok else 'NOT OK'}" + (f" ({len(warns)} warnings)" if warns else ""))
    return {"ok": ok, "problems": problems, "warnings": warns, "counts": counts}


# ---------------------------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------------------------
def _verify_archive(part: Part, archive: Path, checksums: Path | None, log) -> tuple[int, str]:
    size, sha = file_digest(archive)
    known = load_checksums(checksums).get(part.name, {})
    exp_size, exp_sha = known.get("size", "unknown"), known.get("sha256", "unknown")
    if exp_size != "unknown" and int(exp_size) != size:
        raise DownloadError(f"{archive} has {size} bytes, {int(exp_size)} expected: incomplete or another file. "
                            f"Run again with --force to download it afresh.")
    if exp_sha != "unknown" and exp_sha != sha:
        raise DownloadError(f"{archive}: sha256 {sha[:12]}... differs from the recorded {exp_sha[:12]}...: "
                            f"corrupt or another file. Run again with --force to download it afresh.")
    if exp_sha == "unknown":
        log(f"{part.name}: archive {size} bytes, sha256 {sha} (not recorded yet)")
    else:
        log(f"{part.name}: archive verified ({size} bytes, sha256 {sha[:12]}...)")
    return size, sha


def download_part(part: Part, root, force: bool = False, source=None, progress: bool = True,
                  downloader: Callable[[str, Path], Path] | None = None, checksums: Path | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Fetch, verify, unpack and normalise one archive into ``root`` (see the module docstring). Returns a report
    ``{"part", "status": "present"|"installed", "counts", "warnings", "notes"}``."""
    root = Path(root).expanduser()
    downloader = downloader or gdown_download
    targets = _targets(part, root)
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        counts = _part_counts(part, root)
        warns = _check_counts(part, counts)
        log(f"{part.name}: already in {root} ({', '.join(f'{k} {v[0]}' for k, v in counts.items())}); nothing to "
            "do (use --force to download and unpack it again)")
        for w in warns:
            log(f"warning: {w}")
        return {"part": part.name, "status": "present", "counts": counts, "warnings": warns, "notes": []}

    root.mkdir(parents=True, exist_ok=True)
    archive: Path | None = None
    src_dir: Path | None = None
    if source is not None:
        source = Path(source).expanduser()
        if not source.exists():
            raise DownloadError(f"--source {source} does not exist")
        if source.is_dir():
            src_dir = source
        else:
            archive = source
    elif part.gdrive_id is None:
        ds, _ = resolve(part.name)
        raise DownloadError(f"{part.name} cannot be downloaded automatically. {ds.manual}")
    else:
        dl_dir = root / DOWNLOADS_DIR
        dl_dir.mkdir(parents=True, exist_ok=True)
        archive = dl_dir / part.archive
        if force:
            for stale in [archive, *dl_dir.glob(part.archive + "????????.part")]:
                stale.unlink(missing_ok=True)
        if archive.is_file():
            log(f"{part.name}: using the archive already downloaded at {archive}")
        else:
            log(f"{part.name}: downloading {drive_url(part.gdrive_id)} -> {archive}")
            try:
                if downloader is gdown_download:
                    check_online()
                downloader(part.gdrive_id, archive)
            except _network_errors() as err:
                reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
                raise DownloadError(
                    f"Could not download {part.name} from Google Drive ({type(err).__name__}: {reason}); "
                    f"{_manual_route(part, root)}.") from err
    size = sha = None
    if archive is not None:
        if source is None:
            size, sha = _verify_archive(part, archive, checksums, log)
        else:
            size, sha = file_digest(archive)

    tmp = Path(tempfile.mkdtemp(prefix=f".m2s-{part.name}-", dir=root))
    try:
        if archive is not None:
            _unpack(archive, tmp / "unpacked", progress=progress)
            src_dir, move = tmp / "unpacked", True
        else:
            move = False  # never move files out of the user's folder
        stage = tmp / "stage"
        stage.mkdir()
        notes = normalise(part, src_dir, stage, move=move)
        for n in notes:
            log(n)
        # move the normalised folders into place; an existing one is replaced only with --force
        units: list[Path] = []
        for pair in sorted(p.parent for p in stage.rglob("images") if p.is_dir()):
            if pair == stage:
                units += [stage / n for n in ("images", "masks", "labels.csv") if (stage / n).exists()]
            else:
                units.append(pair)
        clashes = [root / u.relative_to(stage) for u in units if (root / u.relative_to(stage)).exists()]
        if clashes and not force:
            raise DownloadError(f"{', '.join(map(str, clashes[:5]))} already exist(s); nothing was overwritten "
                                "(use --force to replace)")
        for unit in units:
            dst = root / unit.relative_to(stage)
            if dst.is_dir():
                shutil.rmtree(dst)
            elif dst.exists():
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(unit, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    counts = _part_counts(part, root)
    warns = _check_counts(part, counts)
    for w in warns:
        log(f"warning: {w}")
    good = not any("published" in w for w in warns)
    state = _read_state(root)
    state.setdefault("parts", {})[part.name] = {
        "source": str(source) if source is not None else drive_url(part.gdrive_id or ""),
        "archive_size": size, "archive_sha256": sha,
        "counts": {k: v[0] for k, v in counts.items()}, "warnings": warns,
    }
    _write_state(root, state)
    if sha is not None and source is None and good and record_checksum(part.name, size, sha, checksums):
        log(f"{part.name}: recorded size and sha256 in {checksums or CHECKSUMS_PATH}")
    log(f"{part.name}: installed in {root} ({', '.join(f'{k} {v[0]}' for k, v in counts.items())})")
    return {"part": part.name, "status": "installed", "counts": counts, "warnings": warns, "notes": notes}


def download(name: str, root, force: bool = False, source=None, progress: bool = True,
             downloader: Callable[[str, Path], Path] | None = None, checksums: Path | None = None,
             log: Callable[[str], None] = print) -> list[dict]:
    """Download every part of dataset ``name`` (or one part) into ``root``; returns one report per part.
    ``source`` (an archive or a folder) replaces the download and only makes sense with a single part."""
    _dataset, parts = resolve(name)
    if source is not None and len(parts) > 1:
        names = ", ".join(p.name for p in parts)
        raise DownloadError(f"--source gives one archive or folder: name one part of {name} ({names})")
    return [download_part(p, root, force=force, source=source, progress=progress, downloader=downloader,
                          checksums=checksums, log=log) for p in parts]


def list_datasets() -> str:
    """A text table of the datasets, their parts, Drive ids, expected counts and manual routes."""
    lines = []
    for ds in DATASETS.values():
        lines.append(f"{ds.name} (task {ds.task}): {ds.description}")
        for p in ds.parts:
            src = drive_url(p.gdrive_id) if p.gdrive_id else "manual download only"
            exp = ", ".join(f"{k} {v}" for k, v in p.expected.items()) or "counts not published"
            lines.append(f"  {p.name:18s} {src}")
            lines.append(f"  {'':18s} images expected: {exp}")
            if p.baidu:
                lines.append(f"  {'':18s} mirror: {p.baidu}")
        if ds.manual:
            lines.append(f"  manual: {ds.manual}")
        lines.append(f"  cite: {ds.citation}")
        lines.append(f"  licence: {ds.licence}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
