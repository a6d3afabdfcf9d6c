"""Download logic without network: tables, fake archives, resume, verification, idempotency, --force, offline."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_lib.data import (
    GOALS_CLASS_VALUES,
    SegmentationFolder,
    busi_folds,
    find_test_sets,
)
from m2s_lib.data import download as D

REPO = Path(__file__).resolve().parents[2]


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pair(folder: Path, stem: str, image_dir="image", mask_dir="mask", h=16, w=20):
    _png(folder / image_dir / f"{stem}.png", np.full((h, w, 3), 90, np.uint8))
    m = np.zeros((h, w), np.uint8)
    m[4:10, 5:12] = 255
    _png(folder / mask_dir / f"{stem}.png", m)


def _zip(src: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, p.relative_to(src).as_posix())
    return out


@pytest.fixture()
def checksums(tmp_path) -> Path:
    path = tmp_path / "checksums.json"
    shutil.copy(REPO / "data_scripts" / "checksums.json", path)
    return path


def _copying_downloader(archive: Path, calls: list):
    def fetch(gdrive_id: str, output: Path) -> Path:
        calls.append(gdrive_id)
        shutil.copy(archive, output)
        return output

    return fetch


def _train_archive(tmp_path: Path, n: int = 3) -> Path:
    src = tmp_path / "src_train"
    for k in range(n):  # the authors' singular image/ + mask/ folders inside TrainDataset/
        _pair(src / "TrainDataset", f"{k:03d}")
    (src / "__MACOSX").mkdir()
    return _zip(src, tmp_path / "train.zip")


TINY_TRAIN = D.Part("tiny-train", "FAKE_ID_0123456789", "tiny-train.zip", "TrainDataset", "single",
                    {"TrainDataset": 3})


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------
def test_tables_ids_and_counts():
    assert D.PARTS["polyp-train"].gdrive_id == "1lODorfB33jbd-im-qrtUgWnZXxB94F55"
    assert D.PARTS["polyp-test"].gdrive_id == "1o8OfBvYE6K-EpDyvzsmMPndnUMwb540R"
    assert D.PARTS["polyp-train"].expected == {"TrainDataset": 1450}
    assert D.PARTS["polyp-test"].expected == {
        "TestDataset/CVC-300": 60, "TestDataset/CVC-ClinicDB": 62, "TestDataset/CVC-ColonDB": 380,
        "TestDataset/ETIS-LaribPolypDB": 196, "TestDataset/Kvasir": 100}
    assert D.PARTS["covid-train"].expected == {"TrainDataset": 894}
    assert D.PARTS["busi"].expected == {".": 780}
    for part in D.PARTS.values():
        if part.gdrive_id is not None:
            assert len(part.gdrive_id) == 33 and part.baidu.startswith("https://pan.baidu.com/s/")
    assert D.PARTS["goals"].gdrive_id is None and "register" in D.DATASETS["goals"].manual
    assert D.drive_url("abc") == "https://drive.google.com/file/d/abc/view"
    assert [p.name for p in D.resolve("polyp")[1]] == ["polyp-train", "polyp-test"]
    assert D.resolve("oct")[0].name == "goals" and D.resolve("covid-test")[0].name == "covid"
    with pytest.raises(D.DownloadError, match="unknown dataset 'liver'"):
        D.resolve("liver")
    table = json.loads((REPO / "data_scripts" / "checksums.json").read_text())
    assert set(table) == {n for n, p in D.PARTS.items() if p.gdrive_id}
    for name, entry in table.items():
        assert entry["gdrive_id"] == D.PARTS[name].gdrive_id
        assert entry["size"] == "unknown" or isinstance(entry["size"], int)
    text = D.list_datasets()
    assert "1lODorfB33jbd-im-qrtUgWnZXxB94F55" in text and "Al-Dhabyani" in text and "GOALS" in text


# ---------------------------------------------------------------------------------------------------------------
# Install from a fake archive; idempotency; --force; checksums
# ---------------------------------------------------------------------------------------------------------------
def test_download_unpack_normalise_record_and_idempotent(tmp_path, checksums):
    archive = _train_archive(tmp_path)
    calls: list = []
    root = tmp_path / "data"
    report = D.download_part(TINY_TRAIN, root, downloader=_copying_downloader(archive, calls), checksums=checksums,
                             progress=False, log=lambda s: None)
    assert calls == ["FAKE_ID_0123456789"] and report["status"] == "installed"
    assert report["counts"] == {"TrainDataset": (3, 3)} and report["warnings"] == []
    ds = SegmentationFolder(root, "TrainDataset")  # singular folders became images/ + masks/
    assert len(ds) == 3 and (root / "TrainDataset" / "images").is_dir()
    assert not list(root.glob(".m2s-*"))  # temporary folders are gone
    # size and sha256 recorded after the first good download
    size, sha = D.file_digest(archive)
    assert json.loads(checksums.read_text())["tiny-train"] == {"size": size, "sha256": sha}
    state = json.loads((root / D.STATE_FILE).read_text())
    assert state["parts"]["tiny-train"]["archive_sha256"] == sha
    # second run: verifies, downloads nothing, touches nothing
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    report2 = D.download_part(TINY_TRAIN, root, downloader=_copying_downloader(archive, calls), checksums=checksums,
                              progress=False, log=lambda s: None)
    assert report2["status"] == "present" and calls == ["FAKE_ID_0123456789"]
    assert before == {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_force_replaces_and_without_force_nothing_is_overwritten(tmp_path, checksums):
    archive = _train_archive(tmp_path)
    root = tmp_path / "data"
    _pair(root / "TrainDataset", "mine", image_dir="images", mask_dir="masks")  # user data already there
    calls: list = []
    with pytest.warns(D.CountMismatchWarning, match="1 images, the published dataset has 3"):
        rep = D.download_part(TINY_TRAIN, root, downloader=_copying_downloader(archive, calls), checksums=checksums,
                              progress=False, log=lambda s: None)
    assert rep["status"] == "present" and calls == []
    assert SegmentationFolder(root, "TrainDataset").names == ["mine"]
    rep = D.download_part(TINY_TRAIN, root, force=True, downloader=_copying_downloader(archive, calls),
                          checksums=checksums, progress=False, log=lambda s: None)
    assert rep["status"] == "installed" and calls == ["FAKE_ID_0123456789"]
    assert SegmentationFolder(root, "TrainDataset").names == ["000", "001", "002"]


def test_checksum_mismatch_is_an_error_and_keeps_the_file(tmp_path, checksums):
    archive = _train_archive(tmp_path)
    table = json.loads(checksums.read_text())
    table["tiny-train"] = {"size": archive.stat().st_size, "sha256": "0" * 64}
    checksums.write_text(json.dumps(table))
    root = tmp_path / "data"
    with pytest.raises(D.DownloadError, match=r"sha256 .* differs .*--force"):
        D.download_part(TINY_TRAIN, root, downloader=_copying_downloader(archive, []), checksums=checksums,
                        progress=False, log=lambda s: None)
    assert (root / D.DOWNLOADS_DIR / "tiny-train.zip").is_file()  # never deleted without --force
    assert not (root / "TrainDataset").exists()
    assert json.loads(checksums.read_text())["tiny-train"]["sha256"] == "0" * 64  # known values never rewritten


def test_count_mismatch_warns_and_is_not_recorded(tmp_path, checksums):
    archive = _train_archive(tmp_path, n=2)
    with pytest.warns(D.CountMismatchWarning, match="TrainDataset: 2 images, the published dataset has 3"):
        rep = D.download_part(TINY_TRAIN, tmp_path / "data", downloader=_copying_downloader(archive, []),
                              checksums=checksums, progress=False, log=lambda s: None)
    assert rep["status"] == "installed" and rep["warnings"]
    assert json.loads(checksums.read_text()).get("tiny-train") is None  # not a good download: nothing recorded


def test_resume_continues_a_partial_file(tmp_path, checksums, monkeypatch):
    """gdown keeps '<output>XXXXXXXX.part' after an interrupted transfer; our wrapper asks gdown to resume it."""
    import gdown
    import requests

    archive = _train_archive(tmp_path)
    payload = archive.read_bytes()
    seen: list[dict] = []

    def fake_gdown(**kwargs):
        seen.append(kwargs)
        out = Path(kwargs["output"])
        partial = out.parent / (out.name + "abcdefgh.part")
        if len(seen) == 1:  # first attempt: half the bytes, then the connection drops
            partial.write_bytes(payload[: len(payload) // 2])
            raise requests.exceptions.ConnectionError("connection reset")
        assert kwargs["resume"] is True and partial.is_file()
        with open(partial, "ab") as fh:
            fh.write(payload[partial.stat().st_size:])
        partial.rename(out)
        return str(out)

    monkeypatch.setattr(gdown, "download", fake_gdown)
    monkeypatch.setattr(D, "check_online", lambda *a, **k: None)  # pretend to be online
    root = tmp_path / "data"
    with pytest.raises(D.DownloadError, match="Could not download tiny-train"):
        D.download_part(TINY_TRAIN, root, checksums=checksums, progress=False, log=lambda s: None)
    assert (root / D.DOWNLOADS_DIR / "tiny-train.zipabcdefgh.part").is_file()  # kept for resuming
    rep = D.download_part(TINY_TRAIN, root, checksums=checksums, progress=False, log=lambda s: None)
    assert rep["status"] == "installed" and len(seen) == 2
    assert (root / D.DOWNLOADS_DIR / "tiny-train.zip").read_bytes() == payload
    assert seen[0]["id"] == "FAKE_ID_0123456789" and seen[0]["resume"] is True


def test_offline_message_is_one_sentence_with_the_manual_route(tmp_path, monkeypatch, capsys):
    import gdown
    import requests

    def offline(**kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download", offline)
    monkeypatch.setattr(D, "check_online", lambda *a, **k: None)  # gdown itself meets the dead network
    root = tmp_path / "data"
    with pytest.raises(D.DownloadError) as err:
        D.download("polyp", root, progress=False, log=lambda s: None)
    msg = str(err.value)
    assert msg.startswith("Could not download polyp-train from Google Drive")
    assert "https://drive.google.com/file/d/1lODorfB33jbd-im-qrtUgWnZXxB94F55/view" in msg
    assert "pan.baidu.com" in msg and f"--root {root} --source" in msg and "TrainDataset" in msg
    assert msg.count(". ") == 0 and msg.endswith(".") and "\n" not in msg  # one sentence
    from m2s_lib.cli import main

    assert main(["data", "download", "polyp-test", "--root", str(root), "--quiet"]) == 1
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err_lines) == 1 and "Could not download polyp-test" in err_lines[0]


def test_html_instead_of_archive(tmp_path, checksums):
    page = tmp_path / "page.zip"
    page.write_text("<!DOCTYPE html><html>Google Drive - Quota exceeded</html>")
    with pytest.raises(D.DownloadError, match="web page, not an archive"):
        D.download_part(TINY_TRAIN, tmp_path / "data", downloader=_copying_downloader(page, []),
                        checksums=checksums, progress=False, log=lambda s: None)


# ---------------------------------------------------------------------------------------------------------------
# Normalisers through --source (the manual route)
# ---------------------------------------------------------------------------------------------------------------
def test_polyp_test_sets_from_source_zip(tmp_path):
    src = tmp_path / "TestDataset"
    for name in ("CVC-300", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "kvasir"):
        _pair(src / name, "1", image_dir="images", mask_dir="masks")
    archive = _zip(tmp_path, tmp_path.parent / "polyp-test-manual.zip")
    root = tmp_path.parent / "data_pt"
    with pytest.warns(D.CountMismatchWarning):
        D.download("polyp-test", root, source=archive, progress=False, log=lambda s: None)
    assert list(find_test_sets(root)) == ["CVC-300", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "Kvasir"]
    assert archive.is_file()  # the user's file is left alone


def test_busi_original_layout_from_source_folder(tmp_path):
    src = tmp_path / "Dataset_BUSI_with_GT"
    for cls, n in (("benign", 4), ("malignant", 3), ("normal", 2)):
        for k in range(1, n + 1):
            _png(src / cls / f"{cls} ({k}).png", np.full((12, 14), 80, np.uint8))
            m = np.zeros((12, 14), np.uint8)
            if cls != "normal":
                m[2:5, 2:5] = 255
            _png(src / cls / f"{cls} ({k})_mask.png", m)
    extra = np.zeros((12, 14), np.uint8)
    extra[8:11, 8:12] = 255
    _png(src / "benign" / "benign (1)_mask_1.png", extra)  # a second lesion of the same image
    before = sorted(p.relative_to(src).as_posix() for p in src.rglob("*"))
    root = tmp_path / "busi"
    with pytest.warns(D.CountMismatchWarning):
        D.download("busi", root, source=src, progress=False, log=lambda s: None)
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*")) == before  # source untouched
    ds = SegmentationFolder(root)
    assert len(ds) == 9 and "benign (1)" in ds.names
    merged = ds.load_pair(ds.names.index("benign (1)"))[1]
    assert merged[3, 3] == 1 and merged[9, 10] == 1  # both masks merged
    folds = busi_folds(root, k=2)
    assert sum(len(t) for _, t in folds) == 9
    labels = (root / "labels.csv").read_text().splitlines()
    assert labels[0] == "name,class" and "normal (2),normal" in labels


def test_goals_converter_and_manual_message(tmp_path):
    with pytest.raises(D.DownloadError, match="cannot be downloaded automatically.*register"):
        D.download("goals", tmp_path / "nogoals", progress=False, log=lambda s: None)
    src = tmp_path / "GOALS2022-Train" / "Train"
    for k in range(1, 4):
        _png(src / "Image" / f"{k:04d}.png", np.full((20, 30), 60, np.uint8))
        lab = np.full((20, 30), 255, np.uint8)
        lab[3:6], lab[6:9], lab[12:15] = 0, 80, 160
        _png(src / "Layer_Masks" / f"{k:04d}.png", lab)
    archive = _zip(tmp_path / "GOALS2022-Train", tmp_path / "goals.zip")
    root = tmp_path / "goals"
    with pytest.warns(D.CountMismatchWarning):
        D.download("oct", root, source=archive, progress=False, log=lambda s: None)
    ds = SegmentationFolder(root, "TrainDataset", classes=4, class_values=GOALS_CLASS_VALUES, size=32)
    assert len(ds) == 3 and set(ds[0]["mask"].unique().tolist()) == {0, 1, 2, 3}
    report = D.verify("goals", root, log=lambda s: None)
    assert report["ok"] and report["counts"] == {"TrainDataset": (3, 3)} and report["warnings"]


def test_verify_reports(tmp_path):
    from m2s_lib.data import synthetic as S

    synth = S.generate("polyp", tmp_path / "synth", n=2, size=48, n_test=1, progress=False, workers=1)
    rep = D.verify("polyp", synth, log=lambda s: None)
    assert rep["ok"] and rep["counts"]["TestDataset/Kvasir"] == (1, 1)
    missing = D.verify("polyp", tmp_path / "none", log=lambda s: None)
    assert not missing["ok"] and "m2s data download polyp-train" in missing["problems"][0]
    next((synth / "TrainDataset" / "masks").iterdir()).unlink()
    broken = D.verify("polyp", synth, log=lambda s: None)
    assert not broken["ok"] and any("manifest says 2" in p for p in broken["problems"])


def test_offline_check_fails_fast_without_calling_gdown(tmp_path, monkeypatch):
    import gdown

    calls = []
    monkeypatch.setattr(gdown, "download", lambda **kw: calls.append(kw))

    def dead(*a, **k):
        raise ConnectionError("cannot reach drive.google.com: [Errno -2] Name or service not known")

    monkeypatch.setattr(D, "check_online", dead)
    with pytest.raises(D.DownloadError, match=r"^Could not download covid-train .*cannot reach drive\.google\.com"):
        D.download("covid", tmp_path / "c", progress=False, log=lambda s: None)
    assert calls == []
