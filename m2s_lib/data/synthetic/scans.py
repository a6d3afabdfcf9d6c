"""Grey-level scans of the other three tasks: breast ultrasound (BUSI), COVID-19 CT slices, OCT B-scans (GOALS)."""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ...constants import GOALS_CLASS_VALUES
from .base import _bbox, _blob, _field, _grid, _loguniform, _smoothstep

__all__ = ["busi_sample", "covid_sample", "oct_sample"]


# ----------------------------------------------------------------------------------------------------------------
# Breast ultrasound (BUSI-like)
# ----------------------------------------------------------------------------------------------------------------
def _speckle(rng, shape, grain_x: float, grain_y: float) -> np.ndarray:
    """Fully developed speckle intensity: |low-passed complex Gaussian|^2, mean 1 (exponential statistics)."""
    re = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (grain_y, grain_x))
    im = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (grain_y, grain_x))
    s = re * re + im * im
    return s / (s.mean() + 1e-8)


def _log_display(echo: np.ndarray, speckle: np.ndarray, dynamic_range_db: float) -> np.ndarray:
    """Envelope detection + log compression of an ultrasound/OCT scanner: amplitude = echo * sqrt(speckle),
    shown in decibels over ``dynamic_range_db`` below 1, mapped to 0..1."""
    amp = np.maximum(echo * np.sqrt(speckle), 1e-6)
    return np.clip((20.0 * np.log10(amp) + dynamic_range_db) / dynamic_range_db, 0.0, 1.0)


def busi_sample(rng: np.random.Generator, width: int, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """One breast-ultrasound-like grayscale image (uint8 H x W) and its lesion mask (0/255; empty for 'normal').

    Layers from the skin down (skin line, subcutaneous fat with hypoechoic lobules, bright fibroglandular tissue,
    pectoral muscle), a speckle pattern, depth-dependent gain. Benign lesions: oval, wider than tall, smooth
    margin, homogeneous, often posterior enhancement. Malignant lesions: irregular or spiculated margin, often
    taller than wide, heterogeneous interior, echogenic halo, posterior acoustic shadowing.
    """
    h = w = int(width)
    shape = (h, w)
    u, v = _grid(h, w)
    y = (v + 1.0) / 2.0  # depth 0..1
    wav = _field(rng, shape, 2.0, aniso=3.0)
    skin = rng.uniform(0.025, 0.05)
    fat_end = rng.uniform(0.18, 0.35) + 0.04 * wav
    gland_end = rng.uniform(0.6, 0.8) + 0.05 * _field(rng, shape, 1.5, aniso=2.0)
    streaks = _field(rng, shape, 20.0, 2.0, aniso=4.0)
    fat = 0.28 + 0.05 * streaks
    lobules = _smoothstep(0.4, 1.0, _field(rng, shape, 6.0, aniso=1.8))
    fat = fat * (1.0 - 0.6 * lobules)
    gland = 0.55 + 0.18 * streaks + 0.1 * _field(rng, shape, 5.0, aniso=2.0)
    muscle = 0.35 + 0.12 * np.sin(40.0 * (v + 0.3 * u) + 2.0 * _field(rng, shape, 3.0))
    tissue = np.where(y < fat_end, fat, np.where(y < gland_end, gland, muscle))
    tissue = np.where(y < skin + 0.01, 0.9, tissue)
    echo = np.clip(tissue, 0.02, 1.0)

    mask = np.zeros(shape, dtype=bool)
    if cls != "normal":
        malignant = cls == "malignant"
        area = _loguniform(rng, 0.01, 0.12 if malignant else 0.09)
        radius = math.sqrt(4.0 * area / math.pi)
        cx = rng.uniform(-0.6, 0.6)
        cy = rng.uniform(-0.45, 0.25)
        if malignant:
            elong = rng.uniform(0.8, 1.6)  # often taller than wide
            harm = [rng.uniform(0.05, 0.18), rng.uniform(0.03, 0.12), rng.uniform(0.02, 0.1)]
            warp_amp = rng.uniform(0.12, 0.25)
            warp = _field(rng, shape, 14.0)
        else:
            elong = rng.uniform(0.4, 0.85)  # wider than tall
            harm = [rng.uniform(0, 0.06), rng.uniform(0, 0.04), rng.uniform(0, 0.02)]
            warp_amp = rng.uniform(0.0, 0.04)
            warp = _field(rng, shape, 5.0)
        rho = _blob(u, v, cx, cy, radius, elong, rng.uniform(-0.3, 0.3), harm, rng.uniform(0, 6.3, 3), warp, warp_amp)
        mask = rho < 1.0
        edge = rng.uniform(1.5, 4.0 if malignant else 2.0) * w / 352
        soft = ndi.gaussian_filter(mask.astype(np.float32), edge)
        inner = rng.uniform(0.04, 0.12)
        if malignant:
            inner = inner * (1.0 + 0.8 * _smoothstep(0.0, 1.0, _field(rng, shape, 10.0)))
            halo = np.exp(-(((rho - 1.12) / 0.1) ** 2)) * rng.uniform(0.1, 0.3)
            echo = echo + halo
        echo = echo * (1.0 - soft) + inner * soft
        # posterior features below the lesion: shadowing (malignant, often) or enhancement (benign, often)
        col = np.clip(ndi.gaussian_filter(mask.astype(np.float32), 4 * w / 352).max(axis=0), 0, 1)[None, :]
        ys = np.asarray(np.nonzero(mask)[0])
        bottom = (ys.max() + 0.5) / h * 2 - 1 if ys.size else cy
        below = _smoothstep(bottom - 0.02, bottom + 0.08, v)
        if malignant and rng.random() < 0.75:
            echo = echo * (1.0 - rng.uniform(0.45, 0.8) * below * col)
        elif not malignant and rng.random() < 0.5:
            echo = echo * (1.0 + rng.uniform(0.2, 0.5) * below * col * np.exp(-(v - bottom) * 2))
    else:
        # normal: occasionally a large fat lobule or a cyst-like dark region that is *not* a lesion annotation
        pass

    gain = (1.0 - rng.uniform(0.2, 0.5) * y) * rng.uniform(0.5, 0.85)
    spk = _speckle(rng, shape, rng.uniform(2.0, 3.0) * w / 352, rng.uniform(1.0, 1.5) * w / 352)
    img = _log_display(np.clip(echo, 0.0, 1.5) * gain, spk, rng.uniform(38.0, 48.0))
    img = ndi.gaussian_filter(img, 0.7 * w / 352)
    out = (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return out, (mask.astype(np.uint8) * 255)


# ----------------------------------------------------------------------------------------------------------------
# Lung CT (COVID-19 infection)
# ----------------------------------------------------------------------------------------------------------------
def _infections(rng, u, v, lung_mask, dist_in, lung_img):
    """COVID-19 infections: ground-glass opacities and some consolidation, peripheral and posterior, inside the
    lungs only (about one slice in ten has none): ``(lung image with them, their mask)``."""
    h, w = u.shape
    shape = (h, w)
    n_inf = int(rng.choice(5, p=[0.1, 0.3, 0.3, 0.2, 0.1]))
    infection = np.zeros(shape, np.float32)
    inf_mask = np.zeros(shape, bool)
    if n_inf:
        ys, xs = np.nonzero(lung_mask & (dist_in < 0.12))
        ragged = _field(rng, shape, 12.0)
        for _ in range(n_inf):
            if ys.size == 0:
                break
            # posterior (lower in the image) seeds are more likely
            wts = np.exp(2.5 * (ys / h))
            k = rng.choice(ys.size, p=wts / wts.sum())
            cx, cy = (xs[k] + 0.5) / (w / 2) - 1, (ys[k] + 0.5) / (w / 2) - h / w
            radius = math.sqrt(4 * _loguniform(rng, 0.002, 0.04) / math.pi)
            box = _bbox(h, w, cx, cy, radius, margin=1.8)
            rho = _blob(u[box], v[box], cx, cy, radius, rng.uniform(0.5, 1.5), rng.uniform(0, math.pi),
                        [rng.uniform(0, 0.15), rng.uniform(0, 0.1), rng.uniform(0, 0.08)], rng.uniform(0, 6.3, 3),
                        ragged[box], rng.uniform(0.1, 0.3))
            region = (rho < 1.0) & lung_mask[box]
            inf_mask[box] |= region
            dens = rng.uniform(0.15, 0.3) + (rng.uniform(0.2, 0.45) if rng.random() < 0.3 else 0.0) * _smoothstep(
                0.3, 1.0, 1 - rho)
            infection[box] = np.maximum(infection[box], region * dens)
        infection = ndi.gaussian_filter(infection, 1.5 * w / 352) * (1 + 0.25 * _field(rng, shape, 30.0))
        lung_img = lung_img + infection
    return lung_img, inf_mask


def covid_sample(rng: np.random.Generator, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One axial lung-CT-like slice (uint8, lung window) and its infection mask (0/255).

    Body outline with a fat ring, two lungs with vessels and bronchi, mediastinum, spine, ribs and the table;
    infections are ground-glass opacities (hazy, vessels still visible) and some consolidation, mostly peripheral
    and posterior, inside the lungs only. About one slice in ten has no infection.
    """
    h = w = int(width)
    shape = (h, w)
    u, v = _grid(h, w)
    img = np.full(shape, 0.02, np.float32)
    bw, bh = rng.uniform(0.82, 0.92), rng.uniform(0.6, 0.72)
    bcy = rng.uniform(-0.05, 0.05)
    body_r = np.sqrt((u / bw) ** 2 + ((v - bcy) / bh) ** 2) + 0.02 * _field(rng, shape, 3.0)
    body = body_r < 1.0
    img[body] = 0.55  # fat
    img[body_r < rng.uniform(0.9, 0.95)] = 0.72  # muscle/soft tissue
    # ribs: bright ellipses near the body wall
    ang = np.linspace(0.35, math.pi - 0.35, 7)
    for side in (-1, 1):
        for a in ang:
            rx, ry = side * 0.86 * bw * math.sin(a) * 0.95, bcy - 0.86 * bh * math.cos(a) * 0.9
            rr = ((u - rx) / 0.035) ** 2 + ((v - ry) / 0.05) ** 2
            img = np.where(rr < 1.0, 0.95, img)
    # lungs
    lung_mask = np.zeros(shape, bool)
    lungs = []
    for side in (-1, 1):
        cx = side * bw * rng.uniform(0.42, 0.5)
        cy = bcy + rng.uniform(-0.08, 0.02)
        rho = _blob(u, v, cx, cy, bw * rng.uniform(0.36, 0.42), rng.uniform(1.3, 1.7), rng.uniform(-0.2, 0.2) * side,
                    [rng.uniform(0, 0.08), rng.uniform(0, 0.05), 0.0], rng.uniform(0, 6.3, 3))
        # flatten the mediastinal side
        lm = (rho < 1.0) & (side * u > 0.12)
        lung_mask |= lm
        lungs.append((cx, cy))
    parench = 0.1 + 0.025 * _field(rng, shape, 25.0)
    vess_f = _field(rng, shape, 40.0, 10.0)
    vessels = np.exp(-((vess_f / 0.09) ** 2)) * _smoothstep(0.2, 0.9, _field(rng, shape, 8.0))
    dots = _smoothstep(2.2, 2.8, _field(rng, shape, 45.0))
    lung_img = parench + 0.45 * vessels + 0.5 * dots
    dist_in = ndi.distance_transform_edt(lung_mask) / (w / 2)
    lung_img = lung_img * (1 - 0.1 * _smoothstep(0.0, 0.3, dist_in))
    lung_img, inf_mask = _infections(rng, u, v, lung_mask, dist_in, lung_img)
    img = np.where(lung_mask, lung_img, img)
    # mediastinum / heart and spine
    heart = ((u - rng.uniform(0.0, 0.1)) / 0.22) ** 2 + ((v - bcy + 0.05) / 0.25) ** 2 < 1.0
    img = np.where(heart & body, 0.78, img)
    spine_y = bcy + bh * rng.uniform(0.55, 0.65)
    vert = (u / 0.11) ** 2 + ((v - spine_y) / 0.1) ** 2 < 1.0
    img = np.where(vert, 0.97, img)
    img = np.where((u / 0.04) ** 2 + ((v - spine_y + 0.06) / 0.035) ** 2 < 1.0, 0.7, img)
    aorta = ((u + 0.08) / 0.06) ** 2 + ((v - spine_y + 0.17) / 0.06) ** 2 < 1.0
    img = np.where(aorta, 0.8, img)
    # table
    table_y = bcy + bh + rng.uniform(0.08, 0.12)
    img = np.where(np.abs(v - table_y - 0.08 * u * u) < 0.012, 0.6, img)
    img = ndi.gaussian_filter(img, 0.7 * w / 352)
    img = img + 0.02 * _field(rng, shape, 120.0)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out, (inf_mask.astype(np.uint8) * 255)


# ----------------------------------------------------------------------------------------------------------------
# OCT (GOALS-like circumpapillary B-scans)
# ----------------------------------------------------------------------------------------------------------------
def oct_sample(rng: np.random.Generator, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One circumpapillary-OCT-like B-scan (uint8 H x W, H = round(W * 800 / 1100)) and its GOALS label image
    (0 RNFL, 80 GCIPL, 160 choroid, 255 elsewhere).

    Layers from the vitreous down: RNFL (bright; thick superiorly and inferiorly, the "double hump" of a TSNIT
    profile, thinner in glaucoma), GCIPL, the darker nuclear layers, the bright photoreceptor/RPE complex, the
    choroid (textured, dark vessel lumens) and the sclera; shadows of retinal vessels; speckle.
    """
    w = int(width)
    h = round(w * 800 / 1100)
    xs = np.linspace(0.0, 1.0, w, dtype=np.float32)

    def curve(amp, f_hi=3.0):
        f = _field(rng, (1, w * 2), f_hi * 2)[0, :w]
        return amp * f

    top = rng.uniform(0.22, 0.35) + rng.uniform(0.0, 0.06) * np.sin(2 * math.pi * xs + rng.uniform(0, 6.3)) + curve(0.02)
    glaucoma = rng.uniform(0.4, 1.0)
    hump = np.exp(-(((xs - 0.3) / 0.09) ** 2)) + np.exp(-(((xs - 0.7) / 0.09) ** 2))
    t_rnfl = (0.025 + glaucoma * 0.07 * hump + 0.02 * glaucoma) * (1 + curve(0.1, 6))
    t_gcipl = rng.uniform(0.035, 0.05) * (1 + curve(0.1, 4))
    t_nuc = rng.uniform(0.09, 0.12) * (1 + curve(0.05, 4))
    t_rpe = rng.uniform(0.025, 0.035) * np.ones(w, np.float32)
    t_chor = rng.uniform(0.07, 0.12) * (1 + curve(0.15, 5))
    b0 = top
    b1 = b0 + t_rnfl
    b2 = b1 + t_gcipl
    b3 = b2 + t_nuc
    b4 = b3 + t_rpe
    b5 = b4 + t_chor
    y = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
    shape = (h, w)
    base = np.full(shape, 0.012, np.float32)
    tex = _field(rng, shape, 60.0, aniso=3.0)
    rn = (y >= b0) & (y < b1)
    gc = (y >= b1) & (y < b2)
    nu = (y >= b2) & (y < b3)
    rp = (y >= b3) & (y < b4)
    ch = (y >= b4) & (y < b5)
    sc = y >= b5
    base = np.where(rn, 0.7 + 0.1 * tex, base)
    base = np.where(gc, 0.35 + 0.05 * tex, base)
    # nuclear layers: INL dark, OPL thin bright, ONL dark
    rel = (y - b2) / np.maximum(t_nuc, 1e-3)
    nuc = 0.1 + 0.25 * np.exp(-(((rel - 0.35) / 0.08) ** 2)) + 0.3 * np.exp(-(((rel - 0.95) / 0.05) ** 2))
    base = np.where(nu, nuc, base)
    base = np.where(rp, 1.0, base)
    chor_tex = _field(rng, shape, 35.0, aniso=1.5)
    lumens = _smoothstep(0.6, 1.2, _field(rng, shape, 18.0, aniso=2.0))
    base = np.where(ch, (0.4 + 0.08 * chor_tex) * (1 - 0.7 * lumens), base)
    base = np.where(sc, 0.15 * np.exp(-(y - b5) * 8.0), base)
    # retinal vessel shadows below the RNFL
    n_v = rng.integers(3, 8)
    shadow = np.zeros(w, np.float32)
    for cx in rng.uniform(0.05, 0.95, n_v):
        shadow = np.maximum(shadow, np.exp(-(((xs - cx) / rng.uniform(0.004, 0.01)) ** 2)))
    base = base * (1 - 0.6 * shadow[None, :] * (y > b1 - 0.3 * t_rnfl))
    spk = _speckle(rng, shape, 1.6 * w / 352, 0.8 * w / 352)
    img = _log_display(base * rng.uniform(0.8, 1.0), spk, rng.uniform(30.0, 36.0))
    img = ndi.gaussian_filter(img, 0.6 * w / 352)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    background, rnfl, gcipl, choroid = GOALS_CLASS_VALUES
    label = np.full(shape, background, np.uint8)
    label[rn] = rnfl
    label[gc] = gcipl
    label[ch] = choroid
    return out, label
