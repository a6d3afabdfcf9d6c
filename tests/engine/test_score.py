"""m2s_lib.engine.score: numbers equal PySODMetrics called directly and `m2s evaluate`; perfect maps; the paired
intervals against hand-computed values; every kind of odd input named in one line."""
import numpy as np
import pandas as pd
import py_sod_metrics as sod
import pytest
from PIL import Image
from scipy import ndimage as ndi

from m2s_lib.data.layout import DatasetError
from m2s_lib.engine.run_folder import RunExistsError
from m2s_lib.engine.score import score_maps
from m2s_lib.engine.score_report import POOLED, paired_differences

COLUMNS = ("mDice", "mIoU", "wFm", "Sm", "maxEm", "MAE")
SETS = {"Kvasir": (60, 80), "CVC-300": (48, 64)}  # (H, W) of each set's masks


def _masks(h, w, k=5):
    """k masks with one or two ellipses of different sizes and places (never empty)."""
    yy, xx = np.mgrid[:h, :w]
    out = []
    for i in range(k):
        cy, cx, ry, rx = h * (0.3 + 0.08 * i), w * (0.6 - 0.05 * i), h * (0.12 + 0.03 * i), w * (0.1 + 0.04 * i)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if i % 2:
            m |= ((yy - 0.75 * h) / 5) ** 2 + ((xx - 0.2 * w) / 7) ** 2 <= 1
        out.append(m)
    return out


MAKERS = {  # maps made from known masks: eroded / dilated by known amounts, blurred soft maps, the mask itself
    "eroded2": lambda g: ndi.binary_erosion(g, iterations=2).astype(np.uint8) * 255,
    "dilated3": lambda g: ndi.binary_dilation(g, iterations=3).astype(np.uint8) * 255,
    "blur3": lambda g: np.clip(np.rint(ndi.gaussian_filter(g * 255.0, 3)), 0, 255).astype(np.uint8),
    "perfect": lambda g: g.astype(np.uint8) * 255,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """TestDataset/<set>/{images,masks} and one map folder per maker (<method>/<set>/<stem>.png)."""
    base = tmp_path_factory.mktemp("score")
    rng = np.random.default_rng(0)
    for name, (h, w) in SETS.items():
        folder = base / "data" / "TestDataset" / name
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        for i, g in enumerate(_masks(h, w)):
            stem = f"{i + 1:04d}"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / "images" / f"{stem}.jpg")
            Image.fromarray(g.astype(np.uint8) * 255).save(folder / "masks" / f"{stem}.png")
            for method, make in MAKERS.items():
                target = base / "maps" / method / name
                target.mkdir(parents=True, exist_ok=True)
                Image.fromarray(make(g)).save(target / f"{stem}.png")
    return base


def reference(pairs):
    """PySODMetrics called directly on (8-bit map, 8-bit mask) pairs: Table 1's six measures, per image Dice."""
    fm = sod.FmeasureV2({"dice": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
                         "iou": sod.IOUHandler(with_dynamic=True, with_adaptive=False)})
    sm, wfm, em, mae = sod.Smeasure(), sod.WeightedFmeasure(), sod.Emeasure(), sod.MAE()
    for pred, gt in pairs:
        for metric in (fm, sm, wfm, em, mae):
            metric.step(pred=pred, gt=gt)
    res = fm.get_results()
    out = {"mDice": np.mean(res["dice"]["dynamic"]), "mIoU": np.mean(res["iou"]["dynamic"]),
           "wFm": wfm.get_results()["wfm"], "Sm": sm.get_results()["sm"],
           "maxEm": np.max(em.get_results()["em"]["curve"]), "MAE": mae.get_results()["mae"]}
    per_image = [float(np.mean(r)) for r in fm._metric_handlers["dice"].dynamic_results]
    return out, per_image


def read_pairs(data, method, dataset, suffix=".png", transform=None):
    pairs = []
    for mask in sorted((data / "data" / "TestDataset" / dataset / "masks").iterdir()):
        pred = np.asarray(Image.open(data / "maps" / method / dataset / f"{mask.stem}{suffix}"))
        gt = np.asarray(Image.open(mask))
        pairs.append((transform(pred, gt) if transform else pred, gt))
    return pairs


def test_scores_equal_pysodmetrics_called_directly(data, tmp_path):
    methods = ["eroded2", "dilated3", "blur3"]
    res = score_maps(data / "data", {m: data / "maps" / m for m in methods}, tmp_path / "out", workers=1,
                     progress=False, log=None)
    on_disk = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(on_disk.columns) == ["dataset", "method", "n", "missing", *COLUMNS, "protocol"]
    assert list(on_disk["dataset"]) == ["Kvasir"] * 3 + ["CVC-300"] * 3  # one block per test set, paper order
    for method in methods:
        for dataset in SETS:
            ref, per_image = reference(read_pairs(data, method, dataset))
            row = on_disk[(on_disk["method"] == method) & (on_disk["dataset"] == dataset)].iloc[0]
            assert row["n"] == 5 and row["missing"] == 0 and row["protocol"] == "pranet"
            for key in COLUMNS:
                assert row[key] == pytest.approx(ref[key], abs=1e-9), (method, dataset, key)
            csv = pd.read_csv(tmp_path / "out" / "per_image" / method / f"{dataset}.csv", dtype={"name": str})
            assert list(csv["name"]) == ["0001", "0002", "0003", "0004", "0005"]
            np.testing.assert_allclose(csv["mDice"], per_image, atol=1e-9, rtol=0)
    assert len(res.report) == 0 and "every test image had exactly one map" in (tmp_path / "out" / "results.md").read_text()
    md = (tmp_path / "out" / "results.md").read_text()
    assert "### Kvasir (n = 5)" in md and "| eroded2 |" in md and "protocol `pranet`" in md
    assert (tmp_path / "out" / "score.png").read_bytes()[:4] == b"\x89PNG"


def test_the_toolbox_facts_that_the_numbers_rest_on(data):
    """Sanity of the hand-made maps: erosion and dilation really lose and add pixels; blur is a soft map."""
    gt = _masks(*SETS["Kvasir"])[0]
    assert MAKERS["eroded2"](gt).astype(bool).sum() < gt.sum() < MAKERS["dilated3"](gt).astype(bool).sum()
    assert len(np.unique(MAKERS["blur3"](gt))) > 100


def test_perfect_maps_score_perfectly(data):
    kw = dict(workers=1, progress=False, log=None)
    authors = score_maps(data / "data", {"gt": data / "maps" / "perfect"}, protocol="authors", **kw).results
    assert (authors["mDice"] == 1.0).all() and (authors["mIoU"] == 1.0).all() and (authors["MAE"] == 0.0).all()
    pranet = score_maps(data / "data", {"gt": data / "maps" / "perfect"}, **kw).results.set_index("dataset")
    assert (pranet["MAE"] == 0.0).all() and pranet["wFm"].tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    for dataset, (h, w) in SETS.items():
        # PraNet protocol: Dice is 1 at the thresholds 255 … 1; at threshold 0 every pixel is foreground
        # (Dice = 2|G| / (|G| + H·W)), so the mean over the 256 thresholds is just below 1 (docs/scoring.md).
        expected = np.mean([(255 + 2 * g.sum() / (g.sum() + h * w)) / 256 for g in _masks(h, w)])
        assert pranet.loc[dataset, "mDice"] == pytest.approx(expected, abs=1e-12)


def test_equal_to_m2s_evaluate_on_its_own_maps(data, tmp_path):
    from m2s_lib.engine.evaluate import evaluate_sets
    from m2s_lib.model import build_model

    model = build_model("m2snet", encoder_name="resnet18d", channels=16).eval()
    evaluated = evaluate_sets(model, data / "data", size=64, out=tmp_path / "eval", progress=False)
    scored = score_maps(data / "data", {"m2snet": tmp_path / "eval"}, workers=1, progress=False, log=None)
    assert len(scored.report) == 0  # per_image/ (CSV files) is not taken for a folder of maps
    ev, sc = evaluated.set_index("dataset"), scored.results.set_index("dataset")
    for dataset in SETS:
        for key in COLUMNS:
            assert sc.loc[dataset, key] == pytest.approx(ev.loc[dataset, key], abs=1e-12), (dataset, key)
        ev_img = pd.read_csv(tmp_path / "eval" / "per_image" / f"{dataset}.csv", dtype={"name": str})
        sc_img = scored.per_image[("m2snet", dataset)]
        assert list(sc_img["name"]) == list(ev_img["name"])
        np.testing.assert_allclose(sc_img["mDice"], ev_img["mDice"], atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Paired differences: a fixed table, hand-computed intervals
# ---------------------------------------------------------------------------------------------------------------
def _frame(values):
    return pd.DataFrame({"name": [f"{i:02d}" for i in range(len(values))], "mDice": values})


def test_paired_intervals_on_a_fixed_table():
    per_image = {
        ("A", "S1"): _frame([0.8, 0.7, 0.9, 0.6]), ("B", "S1"): _frame([0.7, 0.7, 0.6, 0.5]),
        ("A", "S2"): _frame([0.6, 0.62, 0.58, 0.6, 0.6]), ("B", "S2"): _frame([0.5, 0.5, 0.5, 0.5, 0.5]),
    }
    paired = paired_differences(per_image, ["A", "B"], ["S1", "S2"], baseline="B").set_index("dataset")
    # S1: Δ = 0.1, 0, 0.3, 0.1: mean 0.125, sd = sqrt(0.0475 / 3), t(0.975, 3) = 3.182446305284263
    s1 = paired.loc["S1"]
    half = 3.182446305284263 * np.sqrt(0.0475 / 3) / 2
    assert (s1["n"], s1["better"], s1["worse"], s1["tied"]) == (4, 3, 0, 1)
    assert s1["diff"] == pytest.approx(0.125, abs=1e-12) and s1["sd"] == pytest.approx(0.1258305739211792, abs=1e-12)
    assert (s1["lo"], s1["hi"]) == (pytest.approx(0.125 - half, abs=1e-12), pytest.approx(0.125 + half, abs=1e-12))
    assert s1["lo"] == pytest.approx(-0.0752245225, abs=1e-9) and s1["verdict"] == "not resolved at this scale"
    # S2: Δ = 0.1, 0.12, 0.08, 0.1, 0.1: mean 0.1, sd = sqrt(0.0008 / 4), t(0.975, 4) = 2.7764451051977987
    s2 = paired.loc["S2"]
    half = 2.7764451051977987 * np.sqrt(0.0002) / np.sqrt(5)
    assert s2["lo"] == pytest.approx(0.1 - half, abs=1e-12) and s2["hi"] == pytest.approx(0.1 + half, abs=1e-12)
    assert s2["lo"] == pytest.approx(0.08244, abs=1e-5) and s2["verdict"] == "supported"
    pooled = paired.loc[POOLED]  # the nine images of both sets together
    diffs = [0.1, 0, 0.3, 0.1, 0.1, 0.12, 0.08, 0.1, 0.1]
    assert pooled["n"] == 9 and pooled["diff"] == pytest.approx(np.mean(diffs), abs=1e-12)
    # the other way round, B against A, the same interval mirrored and the claim contradicted on S2
    flipped = paired_differences(per_image, ["B", "A"], ["S1", "S2"], baseline="A").set_index("dataset")
    assert flipped.loc["S2", "hi"] == pytest.approx(-s2["lo"], abs=1e-12)
    assert flipped.loc["S2", "verdict"] == "contradicted"


def test_every_pair_without_a_baseline():
    per_image = {(m, "S"): _frame(v) for m, v in {"A": [0.5, 0.6], "B": [0.4, 0.6], "C": [0.1, 0.2]}.items()}
    paired = paired_differences(per_image, ["A", "B", "C"], ["S"])
    assert list(zip(paired["method"], paired["baseline"])) == [("A", "B"), ("A", "C"), ("B", "C")]
    assert paired["diff"].tolist() == pytest.approx([0.05, 0.4, 0.35])


# ---------------------------------------------------------------------------------------------------------------
# Odd inputs: one line each
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def maps(data, tmp_path):
    """A private copy of the blurred maps to damage."""
    import shutil

    target = tmp_path / "maps"
    shutil.copytree(data / "maps" / "blur3", target)
    return target


def _score(data, maps, **kw):
    return score_maps(data / "data", {"blur": maps}, workers=1, progress=False, log=None, **kw)


def _single_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message
    return message


def test_missing_maps_are_refused_or_scored_as_zero(data, maps):
    (maps / "Kvasir" / "0002.png").unlink()
    (maps / "Kvasir" / "0004.png").unlink()
    with pytest.raises(DatasetError) as err:
        _score(data, maps)
    msg = _single_line(str(err.value))
    assert "blur / Kvasir: 2 of 5" in msg and "0002, 0004" in msg and "--allow-missing" in msg
    res = _score(data, maps, allow_missing=True)
    row = res.results.set_index("dataset").loc["Kvasir"]
    assert row["n"] == 5 and row["missing"] == 2  # never left out of the mean
    pairs = read_pairs(data, "blur3", "Kvasir")
    pairs = [(np.zeros_like(p) if i in (1, 3) else p, g) for i, (p, g) in enumerate(pairs)]
    assert row["mDice"] == pytest.approx(reference(pairs)[0]["mDice"], abs=1e-9)
    report = res.report.set_index("kind")
    assert report.loc["missing", "count"] == 2 and report.loc["missing", "files"] == "0002 0004"
    assert "scored as all-zero maps" in _single_line(report.loc["missing", "message"])


def test_extra_maps_and_non_image_files_are_named_not_scored(data, maps):
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(maps / "Kvasir" / "9999.png")
    (maps / "Kvasir" / "notes.txt").write_text("not a map")
    res = _score(data, maps)
    report = res.report.set_index("kind")
    assert "1 map without a mask, not scored (9999)" in _single_line(report.loc["extra", "message"])
    assert "ignored 1 non-image file (notes.txt)" in _single_line(report.loc["not an image", "message"])
    assert res.results.set_index("dataset").loc["Kvasir", "n"] == 5


def test_unreadable_map_is_one_line(data, maps):
    (maps / "Kvasir" / "0003.png").write_bytes(b"this is not a PNG")
    with pytest.raises(DatasetError, match=r"cannot read .*0003\.png.*Replace or delete this file") as err:
        _score(data, maps)
    _single_line(str(err.value))


def test_wrong_size_maps_are_resized_to_the_mask(data, maps):
    path = maps / "CVC-300" / "0001.png"
    small = np.asarray(Image.open(path).resize((32, 24), Image.Resampling.BILINEAR))
    Image.fromarray(small).save(path)
    res = _score(data, maps)
    message = _single_line(res.report.set_index("kind").loc["resized", "message"])
    assert "1 map of another size than the mask (0001.png is 32×24, its mask 64×48)" in message and "bicubic" in message
    pairs = read_pairs(data, "blur3", "CVC-300")
    bicubic = np.asarray(Image.fromarray(small).resize((64, 48), Image.Resampling.BICUBIC))  # MATLAB imresize's default
    pairs[0] = (bicubic, pairs[0][1])
    got = res.results.set_index("dataset").loc["CVC-300"]
    for key, value in reference(pairs)[0].items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_all_zero_maps_are_named(data, maps):
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(maps / "Kvasir" / "0005.png")
    res = _score(data, maps)
    assert "1 all-zero map (0005)" in _single_line(res.report.set_index("kind").loc["all-zero", "message"])


def test_sixteen_bit_maps_score_as_their_eight_bit_values(data, maps):
    for path in (maps / "Kvasir").iterdir():
        v = np.asarray(Image.open(path)).astype(np.uint16) * 257  # 8-bit v -> 16-bit 257·v, exactly v again
        Image.fromarray(v).save(path)
    assert Image.open(maps / "Kvasir" / "0001.png").mode.startswith("I;16")
    res = _score(data, maps)
    assert "5 16-bit maps: scaled to 8 bits" in _single_line(res.report.set_index("kind").loc["16-bit", "message"])
    ref = reference(read_pairs(data, "blur3", "Kvasir"))[0]
    assert res.results.set_index("dataset").loc["Kvasir", "mDice"] == pytest.approx(ref["mDice"], abs=1e-9)


def test_maps_with_another_extension_are_matched_by_name(data, maps):
    for path in list((maps / "CVC-300").iterdir()):
        Image.open(path).save(path.with_suffix(".jpg"), quality=95)
        path.unlink()
    res = _score(data, maps)
    message = _single_line(res.report.set_index("kind").loc["other extension", "message"])
    assert "5 maps with another extension than the masks (e.g. 0001.jpg for 0001.png)" in message
    masks = sorted((data / "data" / "TestDataset" / "CVC-300" / "masks").iterdir())
    ref = reference([(np.asarray(Image.open(maps / "CVC-300" / f"{m.stem}.jpg")), np.asarray(Image.open(m)))
                     for m in masks])[0]  # the decoded JPEG values
    assert res.results.set_index("dataset").loc["CVC-300", "mDice"] == pytest.approx(ref["mDice"], abs=1e-9)


def test_layouts_flat_folder_and_duplicates(data, maps, tmp_path):
    one_set = data / "data" / "TestDataset" / "CVC-300"
    flat = score_maps(one_set, {"blur": maps / "CVC-300"}, workers=1, progress=False, log=None)
    assert list(flat.results["dataset"]) == ["CVC-300"]
    with pytest.raises(DatasetError, match="holds maps directly, but the ground truth has 2 test sets") as err:
        score_maps(data / "data", {"blur": maps / "CVC-300"}, workers=1, progress=False, log=None)
    _single_line(str(err.value))
    Image.open(maps / "Kvasir" / "0001.png").save(maps / "Kvasir" / "0001.jpg")
    with pytest.raises(DatasetError, match="0001.jpg and 0001.png are maps of the same image"):
        _score(data, maps)


def test_output_folder_rule(data, maps, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    args = (data / "data", {"blur": data / "maps" / "blur3"}, out)
    with pytest.raises(RunExistsError, match="is not empty") as err:
        score_maps(*args, workers=1, progress=False, log=None)
    _single_line(str(err.value))
    score_maps(*args, overwrite=True, workers=1, progress=False, log=None)
    score_maps(*args, overwrite=True, workers=1, progress=False, log=None)  # replaces its own outputs
    assert (out / "mine.txt").read_text() == "keep" and (out / "results.csv").is_file()
    evaluated = tmp_path / "evaluated"  # a folder another command wrote: refused even with --overwrite, and
    evaluated.mkdir()                   # before any scoring (a broken map would be found while scoring)
    (evaluated / "m2s_outputs.json").write_text('{"command": "evaluate", "outputs": ["results.csv"]}')
    (maps / "Kvasir" / "0001.png").write_bytes(b"broken")
    with pytest.raises(RunExistsError, match="holds the outputs of `m2s evaluate`"):
        _score(data, maps, out=evaluated, overwrite=True)


def test_a_failed_run_writes_nothing(data, maps, tmp_path):
    (maps / "CVC-300" / "0004.png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="cannot read"):
        _score(data, maps, out=tmp_path / "new")
    assert not (tmp_path / "new").exists()  # the same command works once the map is fixed, without --overwrite


def test_two_worker_processes_give_the_same_numbers(data):
    preds = {m: data / "maps" / m for m in ("eroded2", "blur3")}
    one = score_maps(data / "data", preds, workers=1, progress=False, log=None).results
    two = score_maps(data / "data", preds, workers=2, progress=False, log=None).results
    pd.testing.assert_frame_equal(one, two)
