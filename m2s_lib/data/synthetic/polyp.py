"""Colonoscopy-like frames imitating the five polyp datasets (styles), at two difficulty levels."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from .base import SyntheticDataError, _bbox, _blob, _field, _gaussian_bytes, _grid, _loguniform, _smoothstep

__all__ = ["DIFFICULTIES", "POLYP_STYLES", "POLYP_TRAIN_MIX", "PolypStyle", "polyp_sample", "polyp_style"]


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
    (the best single-channel threshold reaches Dice ~0.15; ``tests/data/test_synthetic.py``).
    """
    H = round(width * style.aspect)
    W = int(width)
    # The smooth scene is rendered at half resolution (4x fewer pixels) and resized; the mask is drawn at full
    # resolution from the same shapes. Camera blur and sensor noise are applied at full resolution.
    r = 2 if W >= 192 else 1
    h, w = round(H / r), round(W / r)
    u, v = _grid(h, w)
    k352 = w / 352.0  # pixel sizes below are quoted for a 352-px-wide image
    d, height, lumen = _colon_wall(rng, u, v)
    mask, height, alpha, rim, n_polyps = _polyps(rng, style, u, v, (H, W), r, height, lumen, k352)
    n_dot_l, spec = _shading(rng, height, 2.0 / w, style.texture)
    tint, lum, vess, pol_hue = _albedo(rng, style, (h, w), alpha, rim, n_polyps)
    img = _compose(rng, style, u, v, d, lum, vess, tint, pol_hue, alpha, n_dot_l, spec, n_polyps)
    return _camera(rng, style, img, mask, (H, W), r, k352)


def _colon_wall(rng: np.random.Generator, u: np.ndarray, v: np.ndarray):
    """The tube-shaped wall with haustral folds around the lumen: ``(distance to the lumen, height, lumen)``."""
    f32 = np.float32
    h, w = u.shape
    if rng.random() < 0.8:
        lx, ly = rng.uniform(-0.7, 0.7), rng.uniform(-0.6, 0.6) * h / w
    else:  # lumen out of view: the camera looks at the wall
        ang = rng.uniform(0, 2 * math.pi)
        lx, ly = 1.7 * math.cos(ang), 1.7 * math.sin(ang) * h / w
    ax = rng.uniform(0.7, 1.4)
    d = np.sqrt(f32(ax) * (u - f32(lx)) ** 2 + (v - f32(ly)) ** 2 / f32(ax)) + f32(0.08) * _field(rng, (h, w), 2.5)
    np.maximum(d, 0.0, out=d)
    tube = f32(rng.uniform(0.35, 0.8))
    period = rng.uniform(0.28, 0.55)
    fold_amp = f32(rng.uniform(0.015, 0.05))
    fold_phase = d * f32(2 * math.pi / period) + f32(rng.uniform(0, 2 * math.pi)) + f32(1.2) * _field(rng, (h, w), 1.5)
    fs = f32(0.5) + f32(0.5) * np.sin(fold_phase)
    height = tube * np.sqrt(d * d + f32(0.05)) + fold_amp * fs * fs * fs + f32(0.012) * _field(rng, (h, w), 5.0)
    return d, height, (lx, ly, ax)


def _polyps(rng, style: PolypStyle, u, v, full: tuple[int, int], r: int, height, lumen, k352: float):
    """Domes on the wall: ``(full-size mask, height with the domes, blurred footprint, base rim, count)``."""
    f32 = np.float32
    (H, W), (h, w) = full, u.shape
    lx, ly, ax = lumen
    n_polyps = int(rng.choice(4, p=np.asarray(style.counts) / sum(style.counts)))
    mask = np.zeros((H, W), dtype=bool)
    polyp_alpha = np.zeros((h, w), dtype=f32)  # footprint, blurred below for the albedo blend
    rim = np.zeros((h, w), dtype=f32)
    placed: list[tuple[float, float, float]] = []
    if n_polyps:
        edge_warp = _field(rng, (h, w), 6.0)
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
    return mask, height, polyp_alpha, rim, n_polyps


def _shading(rng, height, px: float, ts: float):
    """Lambert and specular shading with the light at the camera, slightly offset: ``(n·l, specular)``."""
    f32 = np.float32
    gy, gx = np.gradient(height, f32(px))
    inv = f32(1.0) / np.sqrt(f32(1.0) + gx * gx + gy * gy)
    lxd, lyd = (f32(x) for x in rng.uniform(-0.35, 0.35, size=2))
    ln = f32(1.0 / math.sqrt(1 + lxd * lxd + lyd * lyd))
    n_dot_l = np.clip((f32(1.0) - gx * lxd - gy * lyd) * inv * ln, 0.0, 1.0)
    hx, hy = lxd / 2, lyd / 2  # half vector between light and camera
    hn = f32(1.0 / math.sqrt(1 + hx * hx + hy * hy))
    n_dot_h = (f32(1.0) - gx * hx - gy * hy) * inv * hn
    shin = f32(rng.uniform(60, 200))
    wet = _smoothstep(-0.2, 1.2, _field(rng, height.shape, 30.0 * ts))
    spec = np.zeros(height.shape, f32)
    hot = n_dot_h > 0.96
    spec[hot] = np.exp(shin * np.log(n_dot_h[hot])) * wet[hot] * f32(rng.uniform(1.2, 2.5))
    np.clip(spec, 0.0, 1.0, out=spec)
    return n_dot_l, spec


def _albedo(rng, style: PolypStyle, shape, a, rim, n_polyps: int):
    """Mucosa and polyp textures: ``(tint, luminance, vessel strength, polyp hue shift)``."""
    f32 = np.float32
    ts = style.texture
    tint = (np.asarray(style.tint) * rng.uniform(0.9, 1.1, size=3)).astype(f32)
    mottle = f32(0.05) * _field(rng, shape, 12.0 * ts)
    vessel_field = _field(rng, shape, 28.0 * ts, 6.0 * ts)
    vessels = np.exp(-((vessel_field * f32(1 / 0.12)) ** 2)) * _smoothstep(-0.3, 0.6, _field(rng, shape, 4.0))
    vessels *= f32(rng.uniform(0.15, 0.4))
    c = style.contrast
    pol_lum = f32(rng.choice((-1.0, 1.0)) * rng.uniform(0.06, 0.16) * c)  # lighter *or* darker than the mucosa
    pol_hue = (rng.uniform(-0.08, 0.08, size=3) * c).astype(f32)
    pol_gran = f32(rng.uniform(0.06, 0.12) * c)
    if n_polyps:
        granular = _field(rng, shape, 40.0 * ts, 14.0 * ts)
        lum = f32(1.0) + mottle * (f32(1.0) - f32(0.5) * a) + a * (pol_lum + pol_gran * granular)
        vess = vessels * (f32(1.0) - f32(min(1.0, rng.uniform(0.5, 0.9) * c)) * a)
        lum *= f32(1.0) - f32(rng.uniform(0.1, 0.25) * c) * np.minimum(rim, 1.0)  # shadow at the base
    else:
        lum = f32(1.0) + mottle
        vess = vessels
    return tint, lum, vess, pol_hue


def _compose(rng, style: PolypStyle, u, v, d, lum, vess, tint, pol_hue, a, n_dot_l, spec, n_polyps: int):
    """Illumination (fall-off into the lumen, vignetting) times shading times albedo, plus highlights; gamma."""
    f32 = np.float32
    r2 = u * u + v * v
    q = d * f32(1.0 / rng.uniform(0.15, 0.35))
    illum = (f32(1.0) - f32(0.92) * np.exp(-q * q)) * (f32(1.0) - f32(rng.uniform(0.2, 0.45)) * r2)
    illum *= f32(rng.uniform(*style.brightness))
    ambient = f32(0.18)
    base = lum * (ambient + (f32(1.0) - ambient) * n_dot_l) * illum
    spec *= illum * f32(0.9)
    img = np.empty((*u.shape, 3), f32)
    vessel_tint = (0.25, 0.8, 0.7)
    for ch in range(3):
        chan = base * tint[ch] * (f32(1.0) - vess * f32(vessel_tint[ch]))
        if n_polyps:
            chan *= f32(1.0) + a * pol_hue[ch]
        chan += spec
        img[..., ch] = chan
    np.clip(img, 0.0, 1.0, out=img)
    img **= f32(1 / 1.15)  # display gamma
    return img


def _camera(rng, style: PolypStyle, img, mask, full: tuple[int, int], r: int, k352: float):
    """Camera blur (on the working grid: the bilinear resize that follows adds the rest), sensor noise, and the
    CVC cameras' black frame: ``(uint8 image, uint8 0/255 mask)``."""
    H, W = full
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
