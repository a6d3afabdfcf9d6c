"""Real datasets: download, verify, unpack and install them (the catalogue of sources is
:mod:`m2s_lib.data.catalogue`, unpacking and normalising :mod:`m2s_lib.data.unpack`).

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

Layouts after normalisation (what :mod:`m2s_lib.data.layout` reads)::

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

import hashlib
import inspect
import json
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from ..atomic import write_text
from ..constants import GOALS_CLASS_VALUES, repo_root
from .catalogue import (
    DATASETS,
    PARTS,
    CountMismatchWarning,
    Dataset,
    DownloadError,
    Part,
    drive_url,
    list_datasets,
    resolve,
)
from .layout import IMAGE_DIR_NAMES, MASK_DIR_NAMES, find_child, list_images
from .unpack import convert_goals, normalise, unpack

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
CHECKSUMS_PATH: Path | None = repo_root() / "data_scripts" / "checksums.json"
STATE_FILE = ".m2s_download.json"
DOWNLOADS_DIR = ".downloads"


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


# ---------------------------------------------------------------------------------------------------------------
# Counting and verifying
# ---------------------------------------------------------------------------------------------------------------
def _targets(part: Part, root: Path) -> list[Path]:
    if part.expected:
        return [root / rel for rel in part.expected]
    return [root / part.dest]


def _count_images(folder: Path) -> tuple[int, int]:
    """(#images, #masks) of a folder with images/ + masks/ (0, 0 when absent)."""
    i = find_child(folder, IMAGE_DIR_NAMES)
    m = find_child(folder, MASK_DIR_NAMES)
    return (len(list_images(i)) if i else 0, len(list_images(m)) if m else 0)


def _part_counts(part: Part, root: Path) -> dict[str, tuple[int, int]]:
    if part.expected:
        return {rel: _count_images(root / rel) for rel in part.expected}
    base = root / part.dest
    if not base.is_dir():
        return {}
    if find_child(base, IMAGE_DIR_NAMES):
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
    from .folders import SegmentationFolder
    from .layout import DatasetError

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
            classes, values = (len(GOALS_CLASS_VALUES), GOALS_CLASS_VALUES) if dataset.task == "oct" else (1, None)
            ds = SegmentationFolder(folder, classes=classes, class_values=values)
            if deep:
                problems += ds.verify(progress=True, notes=warns)
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


def _present(part: Part, root: Path, log: Callable[[str], None]) -> dict:
    counts = _part_counts(part, root)
    warns = _check_counts(part, counts)
    log(f"{part.name}: already in {root} ({', '.join(f'{k} {v[0]}' for k, v in counts.items())}); nothing to "
        "do (use --force to download and unpack it again)")
    for w in warns:
        log(f"warning: {w}")
    return {"part": part.name, "status": "present", "counts": counts, "warnings": warns, "notes": []}


def _fetch(part: Part, root: Path, force: bool, source, downloader: Callable[[str, Path], Path],
           log: Callable[[str], None]) -> tuple[Path | None, Path | None]:
    """``(archive, folder)``: the user's ``source`` (an archive or an unpacked folder), or the archive downloaded
    into ``root/.downloads`` (resumed; ``force`` starts it afresh)."""
    if source is not None:
        source = Path(source).expanduser()
        if not source.exists():
            raise DownloadError(f"--source {source} does not exist")
        return (None, source) if source.is_dir() else (source, None)
    if part.gdrive_id is None:
        ds, _ = resolve(part.name)
        raise DownloadError(f"{part.name} cannot be downloaded automatically. {ds.manual}")
    dl_dir = root / DOWNLOADS_DIR
    dl_dir.mkdir(parents=True, exist_ok=True)
    archive = dl_dir / part.archive
    if force:
        for stale in [archive, *dl_dir.glob(part.archive + "????????.part")]:
            stale.unlink(missing_ok=True)
    if archive.is_file():
        log(f"{part.name}: using the archive already downloaded at {archive}")
        return archive, None
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
    return archive, None


def _install(part: Part, root: Path, archive: Path | None, src_dir: Path | None, force: bool, progress: bool,
             log: Callable[[str], None]) -> list[str]:
    """Unpack (into a temporary folder inside ``root``), normalise, and move the result into place; an existing
    folder is replaced only with ``force``. Returns the normaliser's notes."""
    tmp = Path(tempfile.mkdtemp(prefix=f".m2s-{part.name}-", dir=root))
    try:
        if archive is not None:
            unpack(archive, tmp / "unpacked", progress=progress)
            src_dir, move = tmp / "unpacked", True
        else:
            move = False  # never move files out of the user's folder
        stage = tmp / "stage"
        stage.mkdir()
        notes = normalise(part, src_dir, stage, move=move)
        for n in notes:
            log(n)
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
    return notes


def download_part(part: Part, root, force: bool = False, source=None, progress: bool = True,
                  downloader: Callable[[str, Path], Path] | None = None, checksums: Path | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Fetch, verify, unpack and normalise one archive into ``root`` (see the module docstring). Returns a report
    ``{"part", "status": "present"|"installed", "counts", "warnings", "notes"}``."""
    root = Path(root).expanduser()
    downloader = downloader or gdown_download
    if any(t.exists() for t in _targets(part, root)) and not force:
        return _present(part, root, log)
    root.mkdir(parents=True, exist_ok=True)
    archive, src_dir = _fetch(part, root, force, source, downloader, log)
    size = sha = None
    if archive is not None:
        if source is None:
            size, sha = _verify_archive(part, archive, checksums, log)
        else:
            size, sha = file_digest(archive)
    notes = _install(part, root, archive, src_dir, force, progress, log)
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
