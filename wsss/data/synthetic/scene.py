"""Cluttered backgrounds and distractor shapes behind the pet.

Backgrounds are never flat: a gradient between two palette colours, multi-scale noise
bringing in a third, often a pattern (stripes, checkers, blobs, waves) in a fourth, sometimes
a floor, then mid-frequency texture. Some palettes borrow a colour from the pet's own breed
or from another breed, and some distractors are coat-coloured, so colour alone does not
find the pet; but the pet's own colours are borrowed rarely enough
(``PET_COLOUR_IN_BACKGROUND``) that a colour model learnt from around a box can tell pet
from background most of the time, as in real photos, where GrabCut works.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from wsss.data.synthetic.anatomy import ellipse, segment_quad
from wsss.data.synthetic.genome import Genome
from wsss.data.synthetic.textures import (
    ONE,
    SHIFT,
    fbm,
    hsv_colour,
    near,
    pattern_field,
    smoothstep,
    value_noise,
)

PET_COLOUR_IN_BACKGROUND = 0.15  # a palette colour near the pet's base or secondary colour
OTHER_BREED_IN_BACKGROUND = 0.3  # a palette colour near some breed's coat colour
PET_COLOUR_FLOOR = 0.1
COAT_COLOURED_DISTRACTOR = 0.25  # of which OWN_BREED_DISTRACTOR are the pet's own colours
OWN_BREED_DISTRACTOR = 0.3


def _palette(rng, pet: Genome, genomes: list[Genome]) -> list[np.ndarray]:
    palette = [hsv_colour(rng) for _ in range(4)]
    if rng.random() < PET_COLOUR_IN_BACKGROUND:
        palette[int(rng.integers(0, 4))] = near(rng, pet.base if rng.random() < 0.7 else pet.sec, 20)
    if rng.random() < OTHER_BREED_IN_BACKGROUND:
        other = genomes[int(rng.integers(0, len(genomes)))]
        palette[int(rng.integers(0, 4))] = near(rng, other.base if rng.random() < 0.6 else other.sec, 20)
    return palette


def _add_floor(rng, img, S, scale, pet: Genome):
    y0, slope = rng.uniform(0.45, 0.85) * S, rng.normal(0, 0.15)
    rows = np.mgrid[0:S, 0:S][0].astype(np.float32)
    floor = (rows > y0 + slope * (np.arange(S, dtype=np.float32)[None, :] - S / 2)).astype(np.float32)
    floor = cv2.GaussianBlur(floor, (0, 0), 0.8 * scale)[..., None]
    colour = near(rng, pet.base, 25) if rng.random() < PET_COLOUR_FLOOR else hsv_colour(rng)
    grain = fbm(rng, (S, S), (5, 13, 31), (0.4, 0.35, 0.25))[..., None]
    return img * (1 - floor) + (colour * (0.75 + 0.5 * grain)) * floor


def background(rng, S: int, scale: float, pet: Genome, genomes: list[Genome]) -> np.ndarray:
    """S x S x 3 float32 background (0..255 before clipping)."""
    pal = _palette(rng, pet, genomes)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    ang = rng.uniform(0, 2 * np.pi)
    grad = np.clip((xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang) + 0.5, 0, 1)[..., None]
    img = pal[0] * (1 - grad) + pal[1] * grad
    blend = 0.8 * smoothstep(fbm(rng, (S, S))[..., None], 0.35, 0.75)
    img = img * (1 - blend) + pal[2] * blend
    if rng.random() < 0.7:
        kind = ["stripes", "checkers", "blobs", "waves"][int(rng.integers(0, 4))]
        f = pattern_field(rng, kind, (S, S), scale)[..., None]
        alpha = rng.uniform(0.25, 0.9)
        img = img * (1 - alpha * f) + pal[3] * (alpha * f)
    if rng.random() < 0.4:  # floor / horizon
        img = _add_floor(rng, img, S, scale, pet)
    # mid-frequency texture so no region is flat
    tex = fbm(rng, (S, S), (11, 29, 64), (0.3, 0.4, 0.3))[..., None] - 0.5
    return img * (1 + rng.uniform(0.1, 0.5) * tex)


def _distractor_shape(rng, S):
    cx, cy = rng.uniform(-0.05, 1.05, 2) * S
    r = rng.uniform(0.06, 0.22) * S
    kind = rng.random()
    if kind < 0.4:
        return ellipse(cx, cy, r, r * rng.uniform(0.35, 1.0), rng.uniform(0, np.pi), n=40)
    if kind < 0.8:
        k = int(rng.integers(3, 9))
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        rr = r * rng.uniform(0.4, 1.0, k)
        return np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], axis=1)
    a = rng.uniform(0, 2 * np.pi)  # rotated rectangle / stick
    end = np.array([cx, cy]) + r * 1.6 * np.array([math.cos(a), math.sin(a)])
    return segment_quad(np.array([cx, cy]), end, r * rng.uniform(0.1, 0.5), r * rng.uniform(0.1, 0.5))


def draw_distractors(rng, img: np.ndarray, S: int, scale: float, pet: Genome,
                     genomes: list[Genome]) -> None:
    """Paint 1-4 shapes (plain, noisy or patterned; some coat-coloured) into ``img``."""
    for _ in range(int(rng.integers(1, 5))):
        m = np.zeros((S, S), np.uint8)
        cv2.fillPoly(m, [np.round(_distractor_shape(rng, S) * ONE).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
        alpha = (m.astype(np.float32) / 255.0)[..., None]
        if rng.random() < COAT_COLOURED_DISTRACTOR:
            og = pet if rng.random() < OWN_BREED_DISTRACTOR else genomes[int(rng.integers(0, len(genomes)))]
            c1, c2 = near(rng, og.base, 15), near(rng, og.sec, 15)
        else:
            c1, c2 = hsv_colour(rng), hsv_colour(rng)
        if rng.random() < 0.45:
            f = pattern_field(rng, ["stripes", "blobs", "checkers"][int(rng.integers(0, 3))], (S, S), scale)[..., None]
            fill = c1 * (1 - f) + c2 * f
        else:
            fill = c1 * (0.85 + 0.3 * value_noise(rng, (S, S), 5)[..., None])
        img[:] = img * (1 - alpha) + fill * alpha
