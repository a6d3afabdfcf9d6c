"""m2s_lib.metrics against direct numpy re-implementations, on random and edge-case maps."""
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from m2s_lib import metrics as M

EPS = np.spacing(1)


def scores(preds, gts, metric=None) -> dict:
    """The results of ``metric`` (default: the polyp measures) over paired maps and masks."""
    metric = M.PolypMetrics() if metric is None else metric
    for pred, gt in zip(preds, gts, strict=True):
        metric.update(pred, gt)
    return metric.results()


# ---------------------------------------------------------------------------------------------------------------
# Reference implementations (plain numpy/scipy, written from the measures' definitions)
# ---------------------------------------------------------------------------------------------------------------
def ref_normalise(pred8):
    """PraNet/MATLAB: im2double then mapminmax (a constant map stays as it is)."""
    p = pred8.astype(np.float64) / 255.0
    if p.max() != p.min():
        p = (p - p.min()) / (p.max() - p.min())
    return p


def ref_threshold_curves(pred8, gt):
    """Dice and IoU of (level >= t) for t = 0..255, level = floor(255·p) of the normalised map."""
    level = (ref_normalise(pred8) * 255).astype(np.uint8)
    dice, iou = np.zeros(256), np.zeros(256)
    for t in range(256):
        b = level >= t
        tp = np.sum(b & gt)
        den_d, den_i = b.sum() + gt.sum(), np.sum(b | gt)
        dice[t] = 2 * tp / den_d if den_d else 0.0
        iou[t] = tp / den_i if den_i else 0.0
    return dice, iou


def ref_smeasure(p, gt, alpha=0.5):
    y = gt.mean()
    if y == 0:
        return 1 - p.mean()
    if y == 1:
        return p.mean()

    def s_obj(x):
        mu = x.mean()
        sd = x.std(ddof=1) if x.size > 1 else 0.0
        return 2 * mu / (mu**2 + 1 + sd + EPS)

    obj = y * s_obj(p[gt]) + (1 - y) * s_obj(1 - p[~gt])
    h, w = gt.shape
    rows, cols = np.nonzero(gt)
    cy, cx = int(np.round(rows.mean())) + 1, int(np.round(cols.mean())) + 1

    def ssim(a, b):
        n = a.size
        if n == 0:
            return 0.0
        b = b.astype(np.float64)
        ma, mb = a.mean(), b.mean()
        va = ((a - ma) ** 2).sum() / (n - 1 + EPS)
        vb = ((b - mb) ** 2).sum() / (n - 1 + EPS)
        cov = ((a - ma) * (b - mb)).sum() / (n - 1 + EPS)
        num, den = 4 * ma * mb * cov, (ma**2 + mb**2) * (va + vb)
        if num != 0:
            return num / (den + EPS)
        return 1.0 if den == 0 else 0.0

    area = h * w
    quads = [
        (slice(0, cy), slice(0, cx), cx * cy),
        (slice(0, cy), slice(cx, w), cy * (w - cx)),
        (slice(cy, h), slice(0, cx), (h - cy) * cx),
        (slice(cy, h), slice(cx, w), (h - cy) * (w - cx)),
    ]
    region = sum(ssim(p[r, c], gt[r, c]) * n / area for r, c, n in quads)
    return max(0.0, alpha * obj + (1 - alpha) * region)


def ref_emeasure_curve(p, gt):
    """E-measure of the binary map (level >= t) for t = 255..0, from the per-pixel enhanced alignment matrix."""
    level = (p * 255).astype(np.uint8)
    g = gt.astype(np.float64)
    n = gt.size
    out = []
    for t in range(255, -1, -1):
        fm = (level >= t).astype(np.float64)
        if gt.sum() == 0:
            enhanced = 1 - fm
        elif gt.sum() == n:
            enhanced = fm
        else:
            a, b = fm - fm.mean(), g - g.mean()
            align = 2 * a * b / (a * a + b * b + EPS)
            enhanced = (align + 1) ** 2 / 4
        out.append(enhanced.sum() / (n - 1 + EPS))
    return np.array(out)


def ref_wfm(p, gt, beta=1.0):
    if not gt.any():
        return 0.0
    dist, idx = ndimage.distance_transform_edt(~gt, return_indices=True)
    err = np.abs(p - gt)
    err_t = err.copy()
    err_t[~gt] = err[idx[0][~gt], idx[1][~gt]]
    k = np.exp(-(np.arange(-3, 4)[:, None] ** 2 + np.arange(-3, 4)[None, :] ** 2) / (2 * 25.0))
    k /= k.sum()
    ea = ndimage.convolve(err_t, k, mode="constant", cval=0.0)
    min_e = np.where(gt & (ea < err), ea, err)
    b = np.where(gt, 1.0, 2 - np.exp(np.log(0.5) / 5 * dist))
    ew = min_e * b
    tpw = gt.sum() - ew[gt].sum()
    fpw = ew[~gt].sum()
    r = 1 - ew[gt].mean()
    prec = tpw / (tpw + fpw + EPS)
    return (1 + beta) * r * prec / (r + beta * prec + EPS)


# ---------------------------------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------------------------------
def _maps():
    rng = np.random.default_rng(7)
    h, w = 24, 30
    yy, xx = np.mgrid[:h, :w]
    cases = []
    for k in range(3):  # random smooth predictions of blob masks
        gt = (yy - 8 - 3 * k) ** 2 + (xx - 12 - k) ** 2 < (5 + k) ** 2
        pred = np.clip(ndimage.gaussian_filter(gt.astype(float), 2) + 0.3 * rng.random((h, w)), 0, 1)
        cases.append((f"random{k}", pred, gt))
    cases.append(("noise", rng.random((h, w)), rng.random((h, w)) > 0.7))
    blob = cases[0][2]
    cases += [
        ("empty_mask", rng.random((h, w)) * 0.4, np.zeros((h, w), bool)),
        ("full_mask", rng.random((h, w)), np.ones((h, w), bool)),
        ("zero_pred", np.zeros((h, w)), blob),
        ("constant_pred", np.full((h, w), 0.5), blob),
        ("zero_pred_empty_mask", np.zeros((h, w)), np.zeros((h, w), bool)),
        ("perfect", blob.astype(float), blob),
    ]
    return cases


CASES = _maps()
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,pred,gt", CASES, ids=IDS)
def test_polyp_measures_match_reference(name, pred, gt):
    m = M.PolypMetrics("pranet")
    m.update(pred, gt, name=name)
    res = m.results()
    pred8 = M.to_uint8(pred)
    p = ref_normalise(pred8)
    dice, iou = ref_threshold_curves(pred8, gt)
    assert res["mDice"] == pytest.approx(dice.mean(), abs=1e-12)
    assert res["mIoU"] == pytest.approx(iou.mean(), abs=1e-12)
    assert res["MAE"] == pytest.approx(np.abs(p - gt).mean(), abs=1e-12)
    assert res["Sm"] == pytest.approx(ref_smeasure(p, gt), abs=1e-9)
    em = ref_emeasure_curve(p, gt)
    assert res["maxEm"] == pytest.approx(em.max(), abs=1e-9)
    assert res["meanEm"] == pytest.approx(em.mean(), abs=1e-9)
    assert res["wFm"] == pytest.approx(ref_wfm(p, gt), abs=1e-9)


def test_pranet_mean_dice_is_mean_over_256_thresholds_of_per_image_dice():
    m = M.PolypMetrics("pranet")
    curves = []
    for name, pred, gt in CASES:
        m.update(pred, gt, name=name)
        curves.append(ref_threshold_curves(M.to_uint8(pred), gt))
    dice = np.array([c[0] for c in curves])  # images x 256 thresholds
    assert dice.shape == (len(CASES), 256)
    res, per_image = m.results(), m.per_image()
    assert res["n"] == len(CASES)
    assert res["mDice"] == pytest.approx(dice.mean(axis=1).mean(), abs=1e-12)
    np.testing.assert_allclose(per_image["mDice"], dice.mean(axis=1), atol=1e-12)
    assert res["maxDice"] == pytest.approx(dice.mean(axis=0).max(), abs=1e-12)
    assert list(per_image["name"]) == IDS
    # dataset maxEm is the maximum of the image-averaged curve, not the mean of per-image maxima
    em = np.array([ref_emeasure_curve(ref_normalise(M.to_uint8(p)), g) for _, p, g in CASES])
    assert res["maxEm"] == pytest.approx(em.mean(axis=0).max(), abs=1e-9)


def test_edge_case_values_are_the_documented_conventions():
    blob = CASES[0][2]
    zero = scores([np.zeros(blob.shape)], [blob])
    assert zero["MAE"] == pytest.approx(blob.mean())
    perfect = scores([blob.astype(float)], [blob])
    assert perfect["MAE"] == 0 and perfect["Sm"] == pytest.approx(1.0)
    # empty prediction + empty mask: Dice is 0 at every threshold (0/0 counts 0), S-measure is 1
    both_empty = scores([np.zeros((8, 8))], [np.zeros((8, 8), bool)])
    assert both_empty["mDice"] == 0 and both_empty["Sm"] == 1


def test_authors_protocol_soft_dice_and_iou_at_half():
    m = M.PolypMetrics("authors")
    for name, pred, gt in CASES:
        m.update(pred, gt, name=name)
    res = m.results()
    dices, ious = [], []
    for _, pred, gt in CASES:
        p = ref_normalise(M.to_uint8(pred))
        dices.append((2 * (p * gt).sum() + 1e-5) / (p.sum() + gt.sum() + 1e-5))
        ious.append((np.sum((p > 0.5) & gt) + 1e-5) / (np.sum((p > 0.5) | gt) + 1e-5))
    assert res["mDice"] == pytest.approx(np.mean(dices), abs=1e-12)
    assert res["mIoU"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert m.per_image().attrs["protocol"] == "authors"


def test_float_uint8_and_mask_encodings_agree():
    _, pred, gt = CASES[0]
    a = scores([pred], [gt])
    b = scores([M.to_uint8(pred)], [gt.astype(np.uint8) * 255])
    c = scores([pred], [gt.astype(np.float32)])
    d = scores([pred], [gt.astype(np.uint8)])  # {0, 1} integer mask
    assert a == b == c == d


def test_binary_measures_match_reference():
    metric = M.BinaryMetrics()
    refs = []
    for name, pred, gt in CASES:
        metric.update(pred, gt, name=name)
        b = pred > 0.5
        tp, fp = np.sum(b & gt), np.sum(b & ~gt)
        fn, tn = np.sum(~b & gt), np.sum(~b & ~gt)
        div = lambda a, c: a / c if c else 0.0  # noqa: E731
        refs.append({
            "Precision": div(tp, tp + fp), "Recall": div(tp, tp + fn), "Dice": div(2 * tp, 2 * tp + fp + fn),
            "Jaccard": div(tp, tp + fp + fn), "Specificity": div(tn, tn + fp),
            "Sm": ref_smeasure(pred.astype(float), gt), "MAE": np.abs(pred - gt).mean(),
        })  # fmt: skip
    res = metric.results()
    for key in ("Precision", "Recall", "Dice", "Jaccard", "Specificity", "Sm", "MAE"):
        assert res[key] == pytest.approx(np.mean([r[key] for r in refs]), abs=1e-9), key
    assert res["DSC"] == res["Dice"]
    assert set(M.COVID_COLUMNS) <= set(res) and set(M.BUSI_COLUMNS) <= set(res)  # Tables 3 and 4 from one metric


def test_fold_summary_mean_and_std():
    folds = [{"fold": i, "n": 10, "Jaccard": 0.5 + 0.1 * i, "Dice": 0.6 + 0.05 * i} for i in range(4)]
    s = M.fold_summary(folds)
    assert s.loc["mean", "Jaccard"] == pytest.approx(np.mean([0.5, 0.6, 0.7, 0.8]))
    assert s.loc["std", "Dice"] == pytest.approx(np.std([0.6, 0.65, 0.7, 0.75], ddof=1))
    assert s.attrs["protocol"] == "binary@0.5" and set(s["protocol"]) == {"binary@0.5"}
    text = M.mean_std_text(s)
    assert text.loc["mean ± std", "Jaccard"] == "65.00 ± 12.91"


def test_oct_dice_per_layer_and_boundary_distance():
    h, w = 40, 30
    gt = np.zeros((h, w), np.int64)
    gt[5:10], gt[10:20], gt[25:30] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[7:12], pred[12:22], pred[25:30] = 1, 2, 3  # layers 1 and 2 shifted down by 2 rows
    res = scores([pred], [gt], M.OCTMetrics(4, ["RNFL", "GCIPL", "choroid"]))
    assert res["MED_RNFL"] == pytest.approx(2.0) and res["MED_GCIPL"] == pytest.approx(2.0)
    assert res["MED_choroid"] == 0 and res["Dice_choroid"] == 1
    assert res["Dice_RNFL"] == pytest.approx(2 * 3 / 10)
    assert res["Dice_GCIPL"] == pytest.approx(2 * 8 / 20)
    missing = pred.copy()
    missing[:, :10][missing[:, :10] == 3] = 0  # choroid absent in 10 of 30 columns: those count the image height
    assert scores([missing], [gt], M.OCTMetrics(4))["MED_layer3"] == pytest.approx(10 * h / 30)
    label_scores = np.zeros((4, h, w))
    label_scores[gt, np.arange(h)[:, None], np.arange(w)[None, :]] = 1  # K×H×W scores are arg-maxed
    assert scores([label_scores], [gt], M.OCTMetrics(4))["mDice"] == 1


def test_tables_name_their_protocol():
    preds, gts = [c[1] for c in CASES[:4]], [c[2] for c in CASES[:4]]
    rows = {s: scores(preds, gts) for s in ("CVC-300", "Kvasir")}
    table = M.results_table(rows, "pranet", columns=M.POLYP_COLUMNS)
    assert list(table.columns) == ["dataset", "n", "mDice", "mIoU", "wFm", "Sm", "maxEm", "MAE", "protocol"]
    assert set(table["protocol"]) == {"pranet"} and table.attrs["protocol"] == "pranet"
    t1 = M.table1(table)
    assert list(t1.columns.get_level_values(0).unique()) == ["Kvasir", "CVC-300"]  # the paper's order
    assert t1.attrs["protocol"] == "pranet"
    md = M.to_markdown(t1)
    assert "Kvasir / mDice" in md and "Protocol: pranet" in md
    assert isinstance(M.PolypMetrics().per_image(), pd.DataFrame)


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ in size"):
        scores([np.zeros((4, 5))], [np.zeros((5, 4), bool)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scores([np.full((4, 4), 3.0)], [np.zeros((4, 4), bool)])
    with pytest.raises(ValueError, match="protocol"):
        M.PolypMetrics("nope")
    with pytest.raises(ValueError, match="no image"):
        M.PolypMetrics().results()
