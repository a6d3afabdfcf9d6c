"""`m2s score`: a round trip with two methods, and one line (no traceback) for each odd or bad input."""
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage as ndi

from m2s_lib.cli import main
from m2s_lib.data import find_test_sets, load_mask


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic polyp test set (five sets, three images each) and two methods' maps: dilated and blurred masks."""
    from m2s_lib.data.synthetic import generate

    base = tmp_path_factory.mktemp("score_cli")
    root = generate("polyp", base / "polyp", n=2, seed=3, size=64, n_test=3, progress=False, workers=1)
    for name, folder in find_test_sets(root).items():
        for mask in sorted((folder / "masks").iterdir()):
            g = load_mask(mask).astype(bool)
            for method, arr in {"dilated": ndi.binary_dilation(g, iterations=2) * 255.0,
                                "blurred": ndi.gaussian_filter(g * 255.0, 2)}.items():
                target = base / method / name
                target.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8)).save(target / f"{mask.stem}.png")
    return base, root


def _run(capsys, *argv):
    rc = main(["score", *map(str, argv), "--no-progress", "--jobs", "1"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("m2s score: error: "), err
    return lines[0]


def test_two_methods_round_trip(data, tmp_path, capsys):
    base, root = data
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, "--gt", root, "--pred", f"Dilated={base / 'dilated'}", "--pred",
                         f"Blurred={base / 'blurred'}", "--baseline", "Dilated", "--out", out)
    assert rc == 0
    assert "### Kvasir (n = 3)" in stdout and "| Blurred − Dilated |" in stdout and "wrote" in stdout
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 10 and set(results["method"]) == {"Dilated", "Blurred"}
    paired = pd.read_csv(out / "paired.csv")
    assert set(paired["baseline"]) == {"Dilated"} and len(paired) == 6  # five sets + pooled
    assert set(paired["verdict"]) <= {"supported", "contradicted", "not resolved at this scale"}
    for name in ("results.md", "score.png", "input_report.csv", "per_image/Blurred/Kvasir.csv"):
        assert (out / name).is_file(), name
    rc, _, err = _run(capsys, "--gt", root, "--pred", f"Dilated={base / 'dilated'}", "--out", out)
    assert rc == 1 and "is not empty" in _one_error_line(err)
    rc, _, _ = _run(capsys, "--gt", root, "--pred", f"Dilated={base / 'dilated'}", "--out", out, "--overwrite")
    assert rc == 0 and len(pd.read_csv(out / "results.csv")) == 5


def test_bad_arguments_are_one_line(data, tmp_path, capsys):
    base, root = data
    good = f"A={base / 'dilated'}"
    rc, _, err = _run(capsys, "--gt", root, "--pred", good, "--pred", good, "--out", tmp_path / "o1")
    assert rc == 1 and "given twice" in _one_error_line(err)
    rc, _, err = _run(capsys, "--gt", root, "--pred", good, "--baseline", "B", "--out", tmp_path / "o2")
    assert rc == 1 and "--baseline 'B' is none of the --pred names" in _one_error_line(err)
    rc, _, err = _run(capsys, "--gt", root, "--pred", f"A={tmp_path / 'nope'}", "--out", tmp_path / "o3")
    assert rc == 1 and "no such folder" in _one_error_line(err)
    rc, _, err = _run(capsys, "--gt", tmp_path / "nodata", "--pred", good, "--out", tmp_path / "o4")
    assert rc == 1 and "does not exist" in _one_error_line(err)
    with pytest.raises(SystemExit):  # argparse: usage + one error line
        main(["score", "--gt", str(root), "--pred", "just-a-folder", "--out", str(tmp_path / "o5")])
    assert "write NAME=DIR" in capsys.readouterr().err


def test_each_odd_input_is_one_line(data, tmp_path, capsys):
    base, root = data
    maps = tmp_path / "maps"
    shutil.copytree(base / "blurred", maps)
    kvasir, clinic = maps / "Kvasir", maps / "CVC-ClinicDB"
    (kvasir / "0002.png").unlink()  # missing
    rc, _, err = _run(capsys, "--gt", root, "--pred", f"B={maps}", "--out", tmp_path / "o1")
    line = _one_error_line(err)
    assert rc == 1 and "B / Kvasir: 1 of 3" in line and "(0002)" in line and "--allow-missing" in line
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(kvasir / "0099.png")  # extra
    (kvasir / "readme.txt").write_text("x")  # not an image
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(kvasir / "0003.png")  # wrong size, all zero
    first = sorted(clinic.iterdir())[0]
    Image.fromarray(np.asarray(Image.open(first)).astype(np.uint16) * 257).save(first)  # 16-bit
    second = sorted((maps / "CVC-300").iterdir())[0]
    Image.open(second).save(second.with_suffix(".jpg"))  # another extension than the masks
    second.unlink()
    rc, out, _ = _run(capsys, "--gt", root, "--pred", f"B={maps}", "--out", tmp_path / "o2", "--allow-missing")
    assert rc == 0
    expected = {
        "missing": "B / Kvasir: 1 of 3 maps missing (0002): scored as all-zero maps",
        "extra": "B / Kvasir: 1 map without a mask, not scored (0099)",
        "not an image": "B / Kvasir: ignored 1 non-image file (readme.txt)",
        "resized": "B / Kvasir: 1 map of another size than the mask (0003.png is 12×10",
        "all-zero": "B / Kvasir: ",  # 0003 (and 0001 when the synthetic mask is empty: a blurred empty mask)
        "16-bit": "B / CVC-ClinicDB: 1 16-bit map: scaled to 8 bits",
        "other extension": "B / CVC-300: 1 map with another extension than the masks (e.g. 0001.jpg for 0001.png)",
    }
    lines = out.splitlines()
    for kind, text in expected.items():
        if kind != "all-zero":
            assert sum(line.startswith(text) for line in lines) == 1, (kind, out)
    zero = [line for line in lines if "all-zero map" in line and "missing" not in line]
    assert len(zero) == 1 and zero[0].startswith("B / Kvasir: ") and "0003" in zero[0]
    report = pd.read_csv(tmp_path / "o2" / "input_report.csv")
    assert set(report["kind"]) == set(expected)
    assert pd.read_csv(tmp_path / "o2" / "results.csv").set_index("dataset").loc["Kvasir", "n"] == 3
