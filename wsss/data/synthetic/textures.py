"""Noise, colours and pattern fields shared by backgrounds, distractors and coats."""

from __future__ import annotations

import math

import cv2
import numpy as np

SHIFT = 4  # fixed-point bits for cv2 polygon filling
ONE = 1 << SHIFT


def value_noise(rng, shape, cells, interp=cv2.INTER_CUBIC):
    """Smooth noise in roughly [0, 1] of ``shape`` (h, w) from a ``cells`` x ``cells`` grid."""
    h, w = shape
    g = rng.random((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(g, (w + 2 * (w // cells + 1), h + 2 * (h // cells + 1)), interpolation=interp)
    oy, ox = h // cells + 1, w // cells + 1
    return big[oy:oy + h, ox:ox + w]


def fbm(rng, shape, cells=(3, 7, 17), weights=(0.55, 0.3, 0.15)):
    """Fractal noise: value noise at several cell counts, weighted and summed."""
    out = np.zeros(shape, np.float32)
    for c, wt in zip(cells, weights):
        out += wt * value_noise(rng, shape, c)
    return out


def remap_noise(rng, u, v, cells, extent=1.2):
    """Smooth noise sampled at local coordinates (u, v) in [-extent, extent]."""
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    g = cv2.resize(g, (8 * cells, 8 * cells), interpolation=cv2.INTER_CUBIC)
    n = g.shape[0]
    mx = ((u + extent) / (2 * extent) * (n - 1)).astype(np.float32)
    my = ((v + extent) / (2 * extent) * (n - 1)).astype(np.float32)
    return cv2.remap(g, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def smoothstep(x, e0, e1):
    """0 below ``e0``, 1 above ``e1``, a smooth cubic between."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def hsv_colour(rng, s_range=(0.03, 0.8), v_range=(0.15, 0.95)):
    """A random RGB colour (0..255), any hue, saturation skewed towards muted."""
    h = rng.uniform(0, 1)
    s = s_range[0] + (s_range[1] - s_range[0]) * rng.uniform(0, 1) ** 1.6  # mostly muted
    v = rng.uniform(*v_range)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32) * 255


def near(rng, colour, spread=18.0):
    """``colour`` jittered by Gaussian noise of ``spread`` per channel."""
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, spread, 3), 0, 255).astype(np.float32)


def pattern_field(rng, kind, shape, scale):
    """A 0..1 pattern in image space (for backgrounds and distractors)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    c, s = math.cos(ang), math.sin(ang)
    rot = xx * c + yy * s
    if kind == "stripes":
        period = rng.uniform(4, 22) * scale
        duty = rng.uniform(-0.5, 0.5)
        return smoothstep(np.sin(2 * np.pi * rot / period) - duty, -0.25, 0.25)
    if kind == "checkers":
        cell = rng.uniform(5, 24) * scale
        rot2 = -xx * s + yy * c
        return ((np.floor(rot / cell) + np.floor(rot2 / cell)) % 2).astype(np.float32)
    if kind == "waves":
        period = rng.uniform(8, 30) * scale
        warp = value_noise(rng, shape, 4) * rng.uniform(5, 25) * scale
        return 0.5 + 0.5 * np.sin(2 * np.pi * (rot + warp) / period)
    # blobs
    m = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(4, 14))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ax, ay = rng.uniform(0.03, 0.18) * w, rng.uniform(0.03, 0.18) * h
        cv2.ellipse(m, (int(cx * ONE), int(cy * ONE)), (int(ax * ONE), int(ay * ONE)),
                    float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.5, 1.0)), -1, cv2.LINE_AA, SHIFT)
    return cv2.GaussianBlur(m, (0, 0), rng.uniform(0.5, 2.5) * scale)

