"""Procedural datasets that stand in for the paper's four tasks when no real data can be downloaded.

Every task is written to disk in the layout the real dataset has after ``m2s data download`` normalised it, so the
same loaders, commands and notebooks run on either. Images are deterministic functions of ``(seed, task, split,
index)``: the same seed gives the same bytes whatever the number of worker processes; different seeds differ.

Layouts (``size`` is the image width in pixels; heights follow each imitated dataset's aspect ratio):

``polyp`` (PraNet split, DESIGN.md §3)::

    out/TrainDataset/{images/*.jpg, masks/*.png}                      n images
    out/TestDataset/<set>/{images/*.jpg, masks/*.png}                 n_test images per set
        <set> in CVC-300 (H = 0.87 W), CVC-ClinicDB (0.75 W), CVC-ColonDB (0.87 W), ETIS-LaribPolypDB (0.79 W),
        Kvasir (square); W = size

    Like the real training set (900 Kvasir + 550 CVC-ClinicDB frames), 62 % of the training frames follow the
    Kvasir style (square) and 38 % the CVC-ClinicDB style (4:3). The five test styles differ a little, as the real sets do:
    polyp size (ETIS and ColonDB: many small polyps; Kvasir: large ones), illumination, blur, texture scale and the
    black frame of the CVC cameras.

``busi`` (Dataset_BUSI_with_GT after normalisation)::

    out/images/*.png, out/masks/*.png (grayscale, size x size)
    out/labels.csv                    columns name,class with class in benign / malignant / normal
    Classes in the real proportions 437 : 210 : 133. Normal images have an empty mask. No test split: the paper
    uses 4-fold cross-validation (``m2s_lib.data.busi_folds``).

``covid`` (COVID-19 lung infection, Inf-Net style split)::

    out/TrainDataset/{images/*.jpg, masks/*.png}            n slices, size x size
    out/TestDataset/COVID-19/{images/*.jpg, masks/*.png}    n_test slices

``oct`` (GOALS 2022 layer segmentation after ``m2s data download goals --source ...``)::

    out/TrainDataset/{images/*.png, masks/*.png}            n B-scans, W = size, H = round(size * 800 / 1100)
    out/TestDataset/GOALS/{images/*.png, masks/*.png}       n_test B-scans
    Label PNGs hold the GOALS values: 0 RNFL, 80 GCIPL, 160 choroid, 255 everything else
    (``GOALS_CLASS_VALUES`` maps them to class ids 0 background, 1 RNFL, 2 GCIPL, 3 choroid).

Each dataset folder holds ``m2s_synthetic.json`` (the generator's parameters and the file counts) so that
:func:`ensure_synthetic` can tell whether a folder already holds what was asked for.

Masks are written as PNG with values 0/255 (binary tasks). The image generators are plain numpy/scipy; ~20-40 ms
per 352x352 image on one core.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import fft as sfft
from scipy import ndimage as ndi

__all__ = [
    "BUSI_CLASSES",
    "DIFFICULTIES",
    "GENERATOR_VERSION",
    "GOALS_CLASS_NAMES",
    "GOALS_CLASS_VALUES",
    "MANIFEST",
    "POLYP_TEST_SETS",
    "TASKS",
    "SyntheticDataError",
    "busi_sample",
    "covid_sample",
    "dataset_name",
    "default_n_test",
    "ensure_dataset",
    "ensure_synthetic",
    "gallery",
    "generate",
    "mask_statistics",
    "oct_sample",
    "polyp_sample",
    "polyp_style",
    "read_manifest",
]

TASKS = ("polyp", "busi", "covid", "oct")
POLYP_TEST_SETS = ("CVC-300", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "Kvasir")
# GOALS label-image convention (challenge description): 0 RNFL, 80 GCIPL, 160 choroid, 255 anything else.
# Index = class id used by the library: 0 background, 1 RNFL, 2 GCIPL, 3 choroid.
GOALS_CLASS_VALUES = (255, 0, 80, 160)
GOALS_CLASS_NAMES = ("background", "RNFL", "GCIPL", "choroid")
BUSI_CLASSES = ("benign", "malignant", "normal")
BUSI_PROPORTIONS = (437 / 780, 210 / 780, 133 / 780)
MANIFEST = "m2s_synthetic.json"
GENERATOR_VERSION = 1
_TASK_CODE = {"polyp": 1, "busi": 2, "covid": 3, "oct": 4}
_JPEG_QUALITY = 92


class SyntheticDataError(ValueError):
    """A synthetic dataset cannot be written where it was asked (the message says why and what to do)."""


# ----------------------------------------------------------------------------------------------------------------
# Random fields
# ----------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _filter(h: int, w: int, f_hi: float, f_lo: float, aniso: float) -> np.ndarray:
    """Spectral filter on an ``rfft2`` grid of an h x w image; frequencies in cycles per image *width*."""
    fy = (np.fft.fftfreq(h) * w).astype(np.float32)[:, None]
    fx = (np.fft.rfftfreq(w) * w).astype(np.float32)[None, :]
    fr2 = (fx * aniso) ** 2 + fy**2
    filt = np.exp(-fr2 / f_hi**2)
    if f_lo > 0:
        filt = filt * (1.0 - np.exp(-fr2 / f_lo**2))
    return filt.astype(np.float32)


def _field(rng: np.random.Generator, shape, f_hi: float, f_lo: float = 0.0, aniso: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with its energy between ``f_lo`` and ``f_hi`` cycles per image
    width (a Gaussian low-pass minus a Gaussian low-pass at ``f_lo``); ``aniso`` > 1 stretches it horizontally.

    Smooth fields are synthesised on a coarse grid that still resolves ``f_hi`` and resized bilinearly."""
    h, w = shape
    gw = min(w, max(8, math.ceil(6.0 * f_hi / 4.0) * 4))
    gh = h if gw == w else min(h, max(4, math.ceil(gw * h / w)))
    white = rng.standard_normal((gh, gw), dtype=np.float32)
    spec = sfft.rfft2(white, workers=1)
    spec *= _filter(gh, gw, float(f_hi), float(f_lo), float(aniso))
    out = sfft.irfft2(spec, s=(gh, gw), workers=1).astype(np.float32, copy=False)
    out -= out.mean()
    out /= out.std() + 1e-8
    if (gh, gw) != (h, w):
        out = np.asarray(Image.fromarray(out).resize((w, h), Image.BILINEAR))
    return out


@lru_cache(maxsize=16)
def _gaussian_lut(sigma: float) -> np.ndarray:
    from scipy.special import ndtri

    return np.round(ndtri((np.arange(256) + 0.5) / 256.0) * sigma).astype(np.int16)


def _gaussian_bytes(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Integer Gaussian noise (std ``sigma``) from random bytes through a 256-level inverse-CDF table: 3-4x cheaper
    than ``standard_normal`` for sensor noise on whole images."""
    idx = np.frombuffer(rng.bytes(int(np.prod(shape))), dtype=np.uint8).reshape(shape)
    return _gaussian_lut(float(sigma))[idx]


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - np.float32(e0)) * np.float32(1.0 / (e1 - e0)), 0.0, 1.0)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@lru_cache(maxsize=16)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred coordinates: u in [-1, 1] across the width, v with the same unit (|v| <= h / w)."""
    s = w / 2.0
    u = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2.0) / s)[None, :]
    v = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2.0) / s)[:, None]
    return np.broadcast_to(u, (h, w)), np.broadcast_to(v, (h, w))


def _blob(u, v, cx, cy, radius, elong, angle, harmonics, phases, warp=None, warp_amp=0.0):
    """Normalised radius rho of a star-shaped blob (rho < 1 inside): an ellipse whose boundary is modulated by the
    harmonics k = 2, 3, 4 (lobulated or irregular shapes) and, optionally, by a random field (ragged margins).
    cos(k phi) and sin(k phi) come from multiple-angle formulas (no arctan2/cos on the whole grid)."""
    f32 = np.float32
    c, s = math.cos(angle), math.sin(angle)
    du, dv = u - f32(cx), v - f32(cy)
    p = (du * f32(c) + dv * f32(s)) * f32(math.sqrt(elong) / radius)
    q = (dv * f32(c) - du * f32(s)) * f32(1.0 / (radius * math.sqrt(elong)))
    rad = np.sqrt(p * p + q * q)
    inv = f32(1.0) / np.maximum(rad, f32(1e-6))
    c1, s1 = p * inv, q * inv
    c2, s2 = c1 * c1 - s1 * s1, f32(2.0) * s1 * c1
    c3, s3 = c2 * c1 - s2 * s1, s2 * c1 + c2 * s1
    c4, s4 = c2 * c2 - s2 * s2, f32(2.0) * s2 * c2
    boundary = np.ones_like(rad)
    for (ck, sk), amp, ph in zip(((c2, s2), (c3, s3), (c4, s4)), harmonics, phases):
        # amp * cos(k phi + ph)
        boundary += ck * f32(amp * math.cos(ph)) - sk * f32(amp * math.sin(ph))
    if warp is not None:
        boundary += f32(warp_amp) * warp
    return rad / np.maximum(boundary, f32(0.2))


def _bbox(h, w, cx, cy, r, margin=1.6):
    """Pixel slice around a blob centred at (cx, cy) (u, v units) with radius r, or None when off-image."""
    s = w / 2.0
    x0, x1 = int((cx - margin * r) * s + w / 2) - 2, int((cx + margin * r) * s + w / 2) + 3
    y0, y1 = int((cy - margin * r) * s + h / 2) - 2, int((cy + margin * r) * s + h / 2) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


# ----------------------------------------------------------------------------------------------------------------
# Polyp (colonoscopy)
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolypStyle:
    """What differs between the imitated polyp datasets."""

    aspect: float = 1.0  # height / width
    area: tuple[float, float] = (0.01, 0.3)  # polyp area fraction, log-uniform
    counts: tuple[float, float, float, float] = (0.04, 0.78, 0.14, 0.04)  # P(0..3 polyps)
    frame: float = 0.0  # probability of the CVC cameras' black octagonal frame
    brightness: tuple[float, float] = (0.9, 1.15)
    blur: tuple[float, float] = (0.4, 1.0)  # camera blur sigma in pixels at 352 px width
    texture: float = 1.0  # spatial-frequency multiplier of mucosa/polyp textures
    contrast: float = 1.0  # scales the polyp's albedo/texture difference from the mucosa
    tint: tuple[float, float, float] = (0.80, 0.45, 0.36)  # mean mucosa albedo (RGB)
    noise: float = 0.012


POLYP_STYLES: dict[str, PolypStyle] = {
    "Kvasir": PolypStyle(area=(0.015, 0.35), brightness=(0.95, 1.2), blur=(0.3, 0.9)),
    "CVC-ClinicDB": PolypStyle(aspect=0.75, area=(0.008, 0.2), frame=0.9, tint=(0.78, 0.38, 0.30),
                               blur=(0.4, 1.0), counts=(0.02, 0.85, 0.11, 0.02)),
    "CVC-300": PolypStyle(aspect=0.87, area=(0.008, 0.12), frame=1.0, tint=(0.80, 0.44, 0.33),
                          blur=(0.3, 0.8), counts=(0.0, 0.92, 0.08, 0.0)),
    "CVC-ColonDB": PolypStyle(aspect=0.87, area=(0.003, 0.12), frame=0.8, brightness=(0.75, 1.0),
                              blur=(0.7, 1.4), tint=(0.76, 0.42, 0.34), contrast=0.9, counts=(0.0, 0.9, 0.08, 0.02)),
    "ETIS-LaribPolypDB": PolypStyle(aspect=0.79, area=(0.0015, 0.05), frame=0.6, brightness=(0.8, 1.05),
                                    blur=(0.4, 0.9), texture=1.5, contrast=0.85, tint=(0.82, 0.50, 0.38),
                                    counts=(0.0, 0.85, 0.12, 0.03)),
}
# Difficulty levels. "realistic": the styles above, as hard as the real data is for a from-scratch network (the best
# colour threshold reaches Dice ~0.15). "teaching": the same scenes with polyps that stand out more (albedo/texture
# contrast x TEACHING_CONTRAST_GAIN, the main polyp no smaller than TEACHING_MIN_AREA of the frame) so that the CPU ``tiny``
# profile learns them in minutes (benchmarks/train_tiny.py); still far from trivial after one epoch.
DIFFICULTIES = ("realistic", "teaching")
TEACHING_CONTRAST_GAIN = 3.5
TEACHING_MIN_AREA = 0.02


def _task_difficulty(task: str, difficulty: str) -> str:
    """``difficulty`` checked, and as it applies to ``task``: the other tasks than polyp have one level, realistic."""
    if difficulty not in DIFFICULTIES:
        raise SyntheticDataError(f"unknown difficulty {difficulty!r}: choose one of {', '.join(DIFFICULTIES)}")
    return difficulty if task == "polyp" else "realistic"


def polyp_style(name: str, difficulty: str = "realistic") -> PolypStyle:
    """The style imitating polyp dataset ``name`` (a key of ``POLYP_STYLES``) at ``difficulty``."""
    style = POLYP_STYLES[name]
    if _task_difficulty("polyp", difficulty) == "teaching":
        lo, hi = style.area
        style = replace(style, contrast=style.contrast * TEACHING_CONTRAST_GAIN,
                        area=(max(lo, TEACHING_MIN_AREA), max(hi, 2 * TEACHING_MIN_AREA)))
    return style


# The real training set is 900 Kvasir + 550 CVC-ClinicDB frames.
POLYP_TRAIN_MIX = (("Kvasir", 900 / 1450), ("CVC-ClinicDB", 550 / 1450))


def _octagon_frame(u, v, h, w, rng):
    """The black, cut-corner frame of the CVC cameras (True inside the visible field)."""
    half_w = 1.0 - rng.uniform(0.02, 0.06)
    half_h = h / w - rng.uniform(0.02, 0.05) * h / w
    cut = rng.uniform(0.25, 0.45) * min(half_w, half_h)
    return (np.abs(u) <= half_w) & (np.abs(v) <= half_h) & (np.abs(u) / half_w * half_w + np.abs(v) <= half_w + half_h - cut)


def polyp_sample(rng: np.random.Generator, width: int, style: PolypStyle = PolypStyle()) -> tuple[np.ndarray, np.ndarray]:
    """One colonoscopy-like RGB frame (uint8 H x W x 3) and its polyp mask (uint8 0/255).

    Scene: a tube-shaped colon wall (height field) with haustral folds around a dark lumen; polyps are domes on
    the wall. The image is shading (Lambert + specular, light at the camera) times an albedo texture (mottling,
    vessels) times the illumination fall-off (dark lumen, vignetting), then camera blur and sensor noise. A
    polyp's albedo is 6-16 % lighter *or* darker than the mucosa (at random) with a slight hue shift, while the
    illumination varies far more across a frame: what gives a polyp away is local - its dome shading, its
    highlights, the shadow at its base, its granular texture with fewer vessels - not a colour threshold
    (the best single-channel threshold reaches Dice ~0.15; ``tests/test_synthetic.py``).
    """
    H = round(width * style.aspect)
    W = int(width)
    # The smooth scene is rendered at half resolution (4x fewer pixels) and resized; the mask is drawn at full
    # resolution from the same shapes. Camera blur and sensor noise are applied at full resolution.
    r = 2 if W >= 192 else 1
    h, w = round(H / r), round(W / r)
    shape = (h, w)
    u, v = _grid(h, w)
    ts = style.texture
    px = 2.0 / w  # one working pixel in u units
    k352 = w / 352.0  # pixel sizes below are quoted for a 352-px-wide image
    f32 = np.float32

    # --- geometry: tube wall, folds, lumen ---------------------------------------------------------------------
    if rng.random() < 0.8:
        lx, ly = rng.uniform(-0.7, 0.7), rng.uniform(-0.6, 0.6) * h / w
    else:  # lumen out of view: the camera looks at the wall
        ang = rng.uniform(0, 2 * math.pi)
        lx, ly = 1.7 * math.cos(ang), 1.7 * math.sin(ang) * h / w
    ax = rng.uniform(0.7, 1.4)
    d = np.sqrt(f32(ax) * (u - f32(lx)) ** 2 + (v - f32(ly)) ** 2 / f32(ax)) + f32(0.08) * _field(rng, shape, 2.5)
    np.maximum(d, 0.0, out=d)
    tube = f32(rng.uniform(0.35, 0.8))
    period = rng.uniform(0.28, 0.55)
    fold_amp = f32(rng.uniform(0.015, 0.05))
    fold_phase = d * f32(2 * math.pi / period) + f32(rng.uniform(0, 2 * math.pi)) + f32(1.2) * _field(rng, shape, 1.5)
    fs = f32(0.5) + f32(0.5) * np.sin(fold_phase)
    height = tube * np.sqrt(d * d + f32(0.05)) + fold_amp * fs * fs * fs + f32(0.012) * _field(rng, shape, 5.0)

    # --- polyps -------------------------------------------------------------------------------------------------
    n_polyps = int(rng.choice(4, p=np.asarray(style.counts) / sum(style.counts)))
    mask = np.zeros((H, W), dtype=bool)
    polyp_alpha = np.zeros(shape, dtype=f32)  # footprint, blurred below for the albedo blend
    rim = np.zeros(shape, dtype=f32)
    placed: list[tuple[float, float, float]] = []
    if n_polyps:
        edge_warp = _field(rng, shape, 6.0)
        edge_warp_full = edge_warp if r == 1 else np.asarray(Image.fromarray(edge_warp).resize((W, H), Image.BILINEAR))
        U, V = _grid(H, W)
    for i in range(n_polyps):
        area = _loguniform(rng, *style.area) * (1.0 if i == 0 else rng.uniform(0.2, 0.7))
        radius = math.sqrt(4.0 * area * (h / w) / math.pi)
        for _attempt in range(20):
            cx = rng.uniform(-0.95, 0.95)
            cy = rng.uniform(-0.95, 0.95) * h / w
            far = all(math.hypot(cx - qx, cy - qy) > 1.1 * (radius + qr) for qx, qy, qr in placed)
            lum = math.hypot((cx - lx) * math.sqrt(ax), (cy - ly) / math.sqrt(ax))
            if far and lum > 0.5 * radius + 0.1:
                break
        placed.append((cx, cy, radius))
        shape_args = (cx, cy, radius, rng.uniform(0.65, 1.0), rng.uniform(0, math.pi),
                      [rng.uniform(0, 0.12), rng.uniform(0, 0.08), rng.uniform(0, 0.05)],
                      rng.uniform(0, 2 * math.pi, size=3))
        tall = f32(rng.uniform(0.35, 0.9) * radius)  # flat (sessile) to tall
        expo = f32(rng.uniform(0.6, 1.3))  # shapes the flanks of the dome
        full_box = _bbox(H, W, cx, cy, radius)
        if full_box is not None:
            mask[full_box] |= _blob(U[full_box], V[full_box], *shape_args, edge_warp_full[full_box], 0.05) < 1.0
        box = _bbox(h, w, cx, cy, radius)
        if box is None:
            continue
        rho = _blob(u[box], v[box], *shape_args, edge_warp[box], 0.05)
        inside = rho < 1.0
        height[box] += tall * np.clip(1.0 - rho * rho, 0.0, None) ** expo
        polyp_alpha[box] = np.maximum(polyp_alpha[box], inside)
        rim[box] += np.exp(-(((rho - f32(1.03)) / f32(0.08)) ** 2))

    # blurry boundaries: in the shading (smoothed height) and in the albedo blend
    if n_polyps:
        height = ndi.gaussian_filter(height, rng.uniform(0.8, 2.5) * k352, mode="nearest", truncate=3.0)
        polyp_alpha = ndi.gaussian_filter(polyp_alpha, rng.uniform(1.0, 4.0) * k352, truncate=3.0)

    # --- shading (light at the camera, slightly offset) -----------------------------------------------------------
    gy, gx = np.gradient(height, f32(px))
    inv = f32(1.0) / np.sqrt(f32(1.0) + gx * gx + gy * gy)
    lxd, lyd = (f32(x) for x in rng.uniform(-0.35, 0.35, size=2))
    ln = f32(1.0 / math.sqrt(1 + lxd * lxd + lyd * lyd))
    n_dot_l = np.clip((f32(1.0) - gx * lxd - gy * lyd) * inv * ln, 0.0, 1.0)
    hx, hy = lxd / 2, lyd / 2  # half vector between light and camera
    hn = f32(1.0 / math.sqrt(1 + hx * hx + hy * hy))
    n_dot_h = (f32(1.0) - gx * hx - gy * hy) * inv * hn
    shin = f32(rng.uniform(60, 200))
    wet = _smoothstep(-0.2, 1.2, _field(rng, shape, 30.0 * ts))
    spec = np.zeros(shape, f32)
    hot = n_dot_h > 0.96
    spec[hot] = np.exp(shin * np.log(n_dot_h[hot])) * wet[hot] * f32(rng.uniform(1.2, 2.5))
    np.clip(spec, 0.0, 1.0, out=spec)

    # --- albedo: mucosa and polyp textures ----------------------------------------------------------------------
    tint = (np.asarray(style.tint) * rng.uniform(0.9, 1.1, size=3)).astype(f32)
    mottle = f32(0.05) * _field(rng, shape, 12.0 * ts)
    vessel_field = _field(rng, shape, 28.0 * ts, 6.0 * ts)
    vessels = np.exp(-((vessel_field * f32(1 / 0.12)) ** 2)) * _smoothstep(-0.3, 0.6, _field(rng, shape, 4.0))
    vessels *= f32(rng.uniform(0.15, 0.4))
    c = style.contrast
    pol_lum = f32(rng.choice((-1.0, 1.0)) * rng.uniform(0.06, 0.16) * c)  # lighter *or* darker than the mucosa
    pol_hue = (rng.uniform(-0.08, 0.08, size=3) * c).astype(f32)
    pol_gran = f32(rng.uniform(0.06, 0.12) * c)
    a = polyp_alpha
    if n_polyps:
        granular = _field(rng, shape, 40.0 * ts, 14.0 * ts)
        lum = f32(1.0) + mottle * (f32(1.0) - f32(0.5) * a) + a * (pol_lum + pol_gran * granular)
        vess = vessels * (f32(1.0) - f32(min(1.0, rng.uniform(0.5, 0.9) * c)) * a)
        lum *= f32(1.0) - f32(rng.uniform(0.1, 0.25) * c) * np.minimum(rim, 1.0)  # shadow at the base
    else:
        lum = f32(1.0) + mottle
        vess = vessels

    # --- illumination: light fall-off into the lumen, vignetting; then the camera -------------------------------
    r2 = u * u + v * v
    q = d * f32(1.0 / rng.uniform(0.15, 0.35))
    illum = (f32(1.0) - f32(0.92) * np.exp(-q * q)) * (f32(1.0) - f32(rng.uniform(0.2, 0.45)) * r2)
    illum *= f32(rng.uniform(*style.brightness))
    ambient = f32(0.18)
    base = lum * (ambient + (f32(1.0) - ambient) * n_dot_l) * illum
    spec *= illum * f32(0.9)
    img = np.empty((h, w, 3), f32)
    vessel_tint = (0.25, 0.8, 0.7)
    for ch in range(3):
        chan = base * tint[ch] * (f32(1.0) - vess * f32(vessel_tint[ch]))
        if n_polyps:
            chan *= f32(1.0) + a * pol_hue[ch]
        chan += spec
        img[..., ch] = chan
    np.clip(img, 0.0, 1.0, out=img)
    img **= f32(1 / 1.15)  # display gamma
    # camera blur (on the working grid: the bilinear resize that follows adds the rest), then sensor noise
    sigma = rng.uniform(*style.blur) * k352
    img = ndi.gaussian_filter(img, (sigma, sigma, 0), truncate=3.0)
    pil = Image.fromarray((img * 255.0 + 0.5).astype(np.uint8))
    if r != 1:
        pil = pil.resize((W, H), Image.BILINEAR)
    out = np.asarray(pil, dtype=np.int16) + _gaussian_bytes(rng, (H, W, 3), style.noise * 255)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < style.frame:
        inside_frame = _octagon_frame(*_grid(H, W), H, W, rng)
        out *= inside_frame[..., None]
        mask &= inside_frame
    return out, (mask.astype(np.uint8) * 255)


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
    # infection: ground-glass and consolidation, peripheral/posterior preference, inside the lungs only
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
    label = np.full(shape, 255, np.uint8)
    label[rn] = 0
    label[gc] = 80
    label[ch] = 160
    return out, label


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
        for k, test_set in enumerate(POLYP_TEST_SETS, start=1):
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
        from tqdm.auto import tqdm

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
def _all_pairs(root: Path) -> list[tuple[str, str, Path, Path]]:
    """(split, name, image path, mask path) for every pair under root (loader rules of m2s_lib.data)."""
    from .data import (
        IMAGE_DIR_NAMES,
        MASK_DIR_NAMES,
        _find_child,
        _list_images,
        find_pair_dirs,
        pair_files,
    )

    out = []
    for folder in find_pair_dirs(root):  # (lazy import above: m2s_lib.data imports torch)
        rel = folder.relative_to(root).as_posix()
        split = root.name if rel == "." else rel
        img_dir, mask_dir = _find_child(folder, IMAGE_DIR_NAMES), _find_child(folder, MASK_DIR_NAMES)
        if not _list_images(img_dir):
            continue
        images, masks = pair_files(img_dir, mask_dir)
        out += [(split, i.stem, i, m) for i, m in zip(images, masks)]
    return out


def gallery(root, n: int = 8, seed: int = 0, cols: int = 4):
    """A figure of ``n`` random image/mask pairs found under ``root`` (all splits), with the mask contours drawn
    on the images (one colour per class for label images). Returns a ``matplotlib.figure.Figure``."""
    from .viz import Figure  # renders as PNG in notebooks whatever the backend

    root = Path(root)
    pairs = _all_pairs(root)
    if not pairs:
        raise FileNotFoundError(f"no images/masks pairs under {root}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)
    cols = max(1, min(cols, len(pick)))
    rows = math.ceil(len(pick) / cols)
    fig = Figure(figsize=(3.0 * cols, 3.0 * rows), layout="constrained")
    colours = ["#00ff66", "#ffdd00", "#00ccff", "#ff3366"]
    for k, idx in enumerate(pick):
        split, name, ip, mp_ = pairs[int(idx)]
        ax = fig.add_subplot(rows, cols, k + 1)
        img = np.asarray(Image.open(ip).convert("RGB"))
        mask = np.asarray(Image.open(mp_).convert("L"))
        ax.imshow(img)
        values = [v for v in np.unique(mask) if v != 255] if set(np.unique(mask)) - {0, 255} else [255]
        for j, val in enumerate(values):
            ax.contour(mask == val, levels=[0.5], colors=colours[j % len(colours)], linewidths=1.0)
        ax.set_title(f"{split}/{name}", fontsize=8)
        ax.axis("off")
    return fig


def mask_statistics(root) -> pd.DataFrame:  # noqa: F821
    """One row per mask under ``root``: split, name, height, width, area_fraction (foreground pixels / all, mask
    binarised at 128) and components (8-connected foreground regions). For the polyp size distribution plot."""
    import pandas as pd

    root = Path(root)
    rows = []
    structure = np.ones((3, 3), dtype=bool)
    from .data import load_mask

    for split, name, _ip, mp_ in _all_pairs(root):
        m = load_mask(mp_).astype(bool)
        _, k = ndi.label(m, structure=structure)
        rows.append({"split": split, "name": name, "height": m.shape[0], "width": m.shape[1],
                     "area_fraction": float(m.mean()), "components": int(k)})
    return pd.DataFrame(rows, columns=["split", "name", "height", "width", "area_fraction", "components"])
