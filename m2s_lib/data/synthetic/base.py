"""Building blocks of the synthetic images: Gaussian random fields, sensor noise, smooth steps, star-shaped blobs."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import fft as sfft

__all__ = ["SyntheticDataError"]


class SyntheticDataError(ValueError):
    """A synthetic dataset cannot be written where it was asked (the message says why and what to do)."""



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
