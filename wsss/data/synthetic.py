"""A synthetic stand-in for the Oxford-IIIT Pet dataset, written in its exact on-disk layout.

``synthesize(root, images)`` draws cartoon animals (body, head, ears, legs, tail, muzzle)
whose breed shows in their appearance, on cluttered backgrounds, and writes::

    root/images/<image_id>.jpg
    root/annotations/list.txt            # with the real header comments
    root/annotations/trainval.txt
    root/annotations/test.txt
    root/annotations/trimaps/<image_id>.png   # 1 = pet, 2 = background, 3 = border
    root/annotations/xmls/<image_id>.xml      # head boxes, trainval only, some missing

so that everything that reads the real dataset (``torchvision.datasets.OxfordIIITPet``
included) reads this one.

Difficulty by design
--------------------
* Every breed has a fixed "genome" (derived from its class index, never from the seed):
  base and secondary colour, coat pattern (plain, stripes, spots, rosettes, patches,
  gradient, colour points, face mask), ear shape (pointed, floppy, folded), body, leg,
  head, muzzle and tail proportions, fluffiness. Cats share a family look (pointed ears,
  slim, long tails, flat faces); dogs another (muzzles, bulkier, floppy or folded ears),
  so species is easier than breed. Several breeds deliberately share colours (black,
  white, tan ...) and differ only in shape or pattern.
* Each image jitters colour, pose (flip, rotation, leg and tail angles), scale (pet covers
  roughly 10-60 % of the frame) and position; ~15 % of pets are cut by the frame.
* Backgrounds are never flat: gradients, multi-scale noise, stripes, checkers, blobs,
  a floor line, grain; they often borrow a colour from the pet or from another breed.
  1-4 distractor shapes (sometimes pet-coloured, sometimes with a coat pattern) lie
  behind the pet. Edges are anti-aliased, then mildly blurred, noised and JPEG-compressed.

Determinism
-----------
Image ``i`` (0-based, breeds assigned round robin) is drawn from
``np.random.default_rng(SeedSequence([seed, i, ...]))`` only, so images are independent
of each other and of the total count; running twice writes identical bytes. Files are
written under a temporary name and ``os.replace``d into place.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wsss.data.breeds import BREEDS, NUM_BREEDS, breed_index_within_species, species_of

__all__ = ["synthesize", "breed_genome", "render_image", "trimap_from_mask", "LIST_HEADER"]

LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#ID: 1:37 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-25:Cat 1:12:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)

JPEG_QUALITY = 90

# Part labels in the internal label map (0 = background). Drawing order matters: later
# parts cover earlier ones in colour, the mask is the union of all of them.
_FAR_LEG, _TAIL, _BODY, _NEAR_LEG, _HEAD, _MUZZLE, _EAR, _FAR_EAR = 1, 2, 3, 4, 5, 6, 7, 8
_HEAD_LABELS = (_HEAD, _MUZZLE, _EAR, _FAR_EAR)
_SHIFT = 4  # fixed-point bits for cv2 polygon filling
_ONE = 1 << _SHIFT


# --------------------------------------------------------------------------- genomes
@dataclass(frozen=True)
class Genome:
    """Appearance of one breed. Lengths are in body lengths (body ellipse = 1 long)."""

    base: tuple[float, float, float]  # RGB 0..255
    sec: tuple[float, float, float]
    pattern: str  # plain|stripes|spots|rosettes|flecks|patches|gradient|points|mask
    ears: str  # pointed|floppy|folded
    ear_len: float  # relative to head radius
    ear_w: float  # relative to head radius
    body_h: float  # full body height
    leg_len: float
    leg_w: float
    head_r: float
    muzzle: float  # muzzle length
    tail_len: float
    tail_w: float
    tail_curl: float  # radians of curl along the tail
    fluff: float  # 0 smooth .. 1 very fluffy outline
    socks: bool  # white paws
    bib: bool  # light chest / belly
    eye: tuple[float, float, float]
    pattern_scale: float  # stripe frequency / spot density multiplier


# Hand-made traits, loosely after the real breeds (colours RGB). Proportions are jittered
# per breed from a generator seeded by the breed index only.
# name: (base, sec, pattern, ears, build, extras)
# build: (body_h, leg_len, head_r, muzzle, tail_len, tail_w, tail_curl, fluff)
_TRAITS: dict[str, tuple] = {
    # ---- cats: pointed ears, slim, long tail, short muzzle
    "Abyssinian": ((196, 112, 58), (112, 62, 34), "gradient", "pointed", (0.30, 0.32, 0.16, 0.03, 0.55, 0.040, 0.9, 0.0), {"ear_len": 1.25}),
    "Bengal": ((214, 156, 72), (62, 42, 26), "rosettes", "pointed", (0.31, 0.32, 0.15, 0.03, 0.55, 0.045, 0.7, 0.0), {}),
    "Birman": ((232, 218, 190), (92, 66, 52), "points", "pointed", (0.34, 0.28, 0.16, 0.02, 0.50, 0.060, 0.6, 0.55), {"socks": True, "eye": (70, 120, 220)}),
    "Bombay": ((30, 28, 32), (58, 52, 50), "plain", "pointed", (0.31, 0.31, 0.16, 0.03, 0.55, 0.040, 0.9, 0.0), {"eye": (220, 170, 40)}),
    "British_Shorthair": ((124, 130, 142), (98, 104, 116), "plain", "pointed", (0.38, 0.25, 0.19, 0.02, 0.42, 0.060, 0.5, 0.15), {"ear_len": 0.75, "eye": (220, 150, 40)}),
    "Egyptian_Mau": ((188, 188, 180), (58, 58, 60), "spots", "pointed", (0.30, 0.34, 0.15, 0.03, 0.58, 0.040, 0.8, 0.0), {"eye": (120, 200, 80)}),
    "Maine_Coon": ((142, 102, 66), (58, 44, 30), "stripes", "pointed", (0.36, 0.32, 0.17, 0.03, 0.62, 0.075, 0.6, 0.5), {"ear_len": 1.3, "bib": True}),
    "Persian": ((236, 230, 220), (198, 188, 172), "plain", "pointed", (0.40, 0.22, 0.19, 0.01, 0.45, 0.085, 0.5, 0.9), {"ear_len": 0.6, "eye": (200, 130, 40)}),
    "Ragdoll": ((226, 220, 210), (108, 98, 96), "points", "pointed", (0.37, 0.27, 0.17, 0.02, 0.52, 0.075, 0.5, 0.65), {"eye": (70, 120, 220), "bib": True}),
    "Russian_Blue": ((108, 118, 134), (140, 148, 160), "plain", "pointed", (0.29, 0.33, 0.15, 0.03, 0.56, 0.040, 0.8, 0.0), {"ear_len": 1.35, "eye": (90, 200, 90)}),
    "Siamese": ((226, 206, 170), (60, 44, 40), "points", "pointed", (0.28, 0.34, 0.15, 0.04, 0.58, 0.035, 0.8, 0.0), {"ear_len": 1.45, "eye": (70, 120, 220)}),
    "Sphynx": ((216, 170, 156), (176, 128, 118), "patches", "pointed", (0.29, 0.33, 0.15, 0.03, 0.56, 0.030, 0.9, 0.0), {"ear_len": 1.6, "ear_w": 0.8}),
    # ---- dogs: muzzles, bulkier, floppy or folded ears, shorter tails
    "american_bulldog": ((236, 230, 224), (170, 118, 78), "patches", "folded", (0.48, 0.30, 0.24, 0.08, 0.22, 0.050, 0.2, 0.0), {}),
    "american_pit_bull_terrier": ((128, 118, 114), (230, 226, 220), "gradient", "folded", (0.45, 0.33, 0.21, 0.10, 0.30, 0.045, 0.3, 0.0), {"bib": True}),
    "basset_hound": ((176, 112, 60), (236, 230, 220), "patches", "floppy", (0.40, 0.13, 0.20, 0.14, 0.35, 0.050, 0.9, 0.0), {"ear_len": 2.1, "socks": True}),
    "beagle": ((194, 132, 70), (40, 34, 30), "patches", "floppy", (0.40, 0.30, 0.19, 0.11, 0.36, 0.045, 1.0, 0.0), {"socks": True, "bib": True}),
    "boxer": ((190, 128, 70), (236, 228, 218), "gradient", "folded", (0.42, 0.40, 0.21, 0.05, 0.20, 0.040, 0.3, 0.0), {"bib": True}),
    "chihuahua": ((212, 172, 112), (176, 134, 86), "plain", "pointed", (0.36, 0.28, 0.24, 0.06, 0.38, 0.035, 1.8, 0.0), {"ear_len": 1.6, "ear_w": 0.95}),
    "english_cocker_spaniel": ((178, 106, 48), (140, 80, 36), "plain", "floppy", (0.42, 0.30, 0.19, 0.11, 0.28, 0.060, 0.4, 0.5), {"ear_len": 1.9}),
    "english_setter": ((238, 234, 226), (64, 58, 62), "flecks", "floppy", (0.36, 0.44, 0.17, 0.16, 0.48, 0.050, 0.4, 0.35), {}),
    "german_shorthaired": ((100, 60, 46), (230, 226, 218), "flecks", "floppy", (0.36, 0.44, 0.17, 0.16, 0.32, 0.040, 0.2, 0.0), {}),
    "great_pyrenees": ((240, 238, 230), (214, 206, 188), "plain", "floppy", (0.48, 0.36, 0.20, 0.11, 0.45, 0.090, 1.1, 0.8), {}),
    "havanese": ((218, 206, 186), (150, 140, 130), "gradient", "floppy", (0.42, 0.22, 0.21, 0.06, 0.34, 0.080, 3.2, 0.85), {}),
    "japanese_chin": ((240, 238, 234), (34, 30, 30), "patches", "floppy", (0.42, 0.24, 0.23, 0.02, 0.34, 0.090, 3.6, 0.75), {}),
    "keeshond": ((150, 150, 144), (48, 48, 50), "gradient", "pointed", (0.48, 0.28, 0.20, 0.09, 0.36, 0.100, 4.2, 0.95), {"ear_len": 0.9, "bib": True}),
    "leonberger": ((184, 122, 62), (40, 32, 28), "mask", "floppy", (0.48, 0.38, 0.22, 0.12, 0.48, 0.090, 0.8, 0.75), {}),
    "miniature_pinscher": ((36, 30, 30), (176, 104, 52), "points", "pointed", (0.32, 0.44, 0.17, 0.12, 0.25, 0.030, 0.5, 0.0), {"ear_len": 1.5}),
    "newfoundland": ((26, 26, 30), (56, 50, 48), "plain", "floppy", (0.52, 0.34, 0.23, 0.11, 0.44, 0.090, 0.9, 0.7), {}),
    "pomeranian": ((222, 142, 62), (238, 200, 150), "gradient", "pointed", (0.44, 0.18, 0.22, 0.05, 0.30, 0.110, 4.4, 1.0), {"ear_len": 0.7}),
    "pug": ((212, 182, 132), (40, 36, 36), "mask", "folded", (0.48, 0.24, 0.25, 0.02, 0.18, 0.060, 4.8, 0.0), {}),
    "saint_bernard": ((236, 230, 220), (152, 82, 40), "patches", "floppy", (0.50, 0.36, 0.25, 0.12, 0.45, 0.080, 0.8, 0.45), {}),
    "samoyed": ((246, 246, 242), (226, 222, 214), "plain", "pointed", (0.46, 0.34, 0.20, 0.10, 0.38, 0.100, 4.4, 0.95), {"ear_len": 1.0}),
    "scottish_terrier": ((32, 32, 34), (60, 60, 64), "stripes", "pointed", (0.42, 0.15, 0.19, 0.15, 0.28, 0.045, 0.0, 0.45), {"ear_len": 1.1}),
    "shiba_inu": ((204, 122, 60), (238, 222, 192), "gradient", "pointed", (0.42, 0.34, 0.20, 0.10, 0.32, 0.080, 4.6, 0.3), {"ear_len": 1.0, "bib": True}),
    "staffordshire_bull_terrier": ((112, 80, 56), (48, 34, 26), "stripes", "folded", (0.46, 0.26, 0.22, 0.08, 0.26, 0.045, 0.2, 0.0), {"bib": True}),
    "wheaten_terrier": ((222, 196, 150), (196, 170, 124), "plain", "folded", (0.42, 0.34, 0.20, 0.12, 0.30, 0.060, 0.6, 0.7), {}),
    "yorkshire_terrier": ((80, 86, 98), (192, 142, 80), "points", "pointed", (0.36, 0.20, 0.19, 0.08, 0.26, 0.050, 0.4, 0.8), {"ear_len": 0.95}),
}


def breed_genome(class_index: int) -> Genome:
    """The fixed appearance of breed ``BREEDS[class_index]`` (0-based); never seed-dependent."""
    name = BREEDS[class_index]
    base, sec, pattern, ears, build, extra = _TRAITS[name]
    body_h, leg_len, head_r, muzzle, tail_len, tail_w, tail_curl, fluff = build
    g = np.random.default_rng(np.random.SeedSequence([0x9E7, class_index]))
    j = lambda x, r=0.06: float(x * (1.0 + g.uniform(-r, r)))  # noqa: E731
    cat = species_of(name) == "cat"
    return Genome(
        base=tuple(float(c) for c in base),
        sec=tuple(float(c) for c in sec),
        pattern=pattern,
        ears=ears,
        ear_len=j(extra.get("ear_len", 1.1 if cat else 1.0)),
        ear_w=j(extra.get("ear_w", 0.62 if cat else 0.7)),
        body_h=j(body_h),
        leg_len=j(leg_len),
        leg_w=j(0.075 if cat else 0.095),
        head_r=j(head_r),
        muzzle=j(muzzle),
        tail_len=j(tail_len),
        tail_w=j(tail_w),
        tail_curl=float(tail_curl + g.uniform(-0.15, 0.15)),
        fluff=float(fluff),
        socks=bool(extra.get("socks", False)),
        bib=bool(extra.get("bib", False)),
        eye=tuple(float(c) for c in extra.get("eye", (190, 170, 60) if cat else (70, 45, 30))),
        pattern_scale=j(1.0, 0.25),
    )


_GENOMES: list[Genome] | None = None


def _genomes() -> list[Genome]:
    global _GENOMES
    if _GENOMES is None:
        _GENOMES = [breed_genome(i) for i in range(NUM_BREEDS)]
    return _GENOMES


# --------------------------------------------------------------------------- geometry
def _ellipse(cx, cy, ax, ay, angle=0.0, n=40, wobble=0.0, rng=None):
    """Polygon (n,2) of an ellipse, optionally with a furry radial wobble."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    if wobble > 0 and rng is not None:
        k1, k2 = rng.integers(14, 22), rng.integers(23, 33)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        r = 1.0 + wobble * (0.6 * np.abs(np.sin(k1 * t / 2 + p1)) + 0.4 * np.sin(k2 * t + p2) - 0.3)
    x, y = ax * r * np.cos(t), ay * r * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _segment_quad(p0, p1, w0, w1):
    d = np.asarray(p1, float) - np.asarray(p0, float)
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    return np.array([p0 + n * w0, p1 + n * w1, p1 - n * w1, p0 - n * w0])


def _build_parts(gen: Genome, rng: np.random.Generator) -> tuple[list, dict]:
    """Parts of one pet in local coordinates (x forward to the head, y down).

    Returns ``(parts, info)`` where parts is a list of (label, polygon) drawn in order and
    info holds landmarks (eye, nose, head centre ...) for decoration.
    """
    fl = gen.fluff
    wob = 0.05 * fl
    a = 0.5
    b = gen.body_h / 2 * rng.uniform(0.94, 1.06)
    parts: list[tuple[int, np.ndarray]] = []

    # legs: (x of hip, far?) - walking pose with alternating swing
    leg_len = gen.leg_len * rng.uniform(0.92, 1.08)
    lw = gen.leg_w * (1.0 + 0.4 * fl)
    swing = rng.uniform(0.0, 0.35)
    phase = rng.choice([-1.0, 1.0])
    legs = [(0.30, True, phase), (0.36, False, -phase), (-0.36, True, -phase), (-0.30, False, phase)]
    leg_info = []
    for hx, far, sgn in legs:
        top = np.array([hx * 0.95 - (0.04 if far else 0.0), b * 0.35])
        ang = sgn * swing + rng.normal(0, 0.06)
        foot = top + leg_len * np.array([math.sin(ang), math.cos(ang)]) + np.array([0, b * 0.55])
        q = _segment_quad(top, foot, lw * 0.62, lw * 0.45)
        paw = _ellipse(foot[0] + lw * 0.25, foot[1], lw * 0.62, lw * 0.4, n=16)
        lab = _FAR_LEG if far else _NEAR_LEG
        parts += [(lab, q), (lab, paw)]
        leg_info.append(foot)

    # tail: a curve of tapered segments
    tl = gen.tail_len * rng.uniform(0.9, 1.1)
    tw = gen.tail_w * (1.0 + 0.3 * fl)
    elev = rng.uniform(0.25, 0.9) if gen.tail_curl < 2 else rng.uniform(0.9, 1.3)
    curl = gen.tail_curl * rng.uniform(0.85, 1.15)
    nseg = 14
    theta = math.pi - elev  # pointing backwards and up (y down => up is -y)
    p = np.array([-a * 0.9, -b * 0.35])
    tail_pts = [p.copy()]
    for k in range(nseg):
        th = theta + curl * (k + 0.5) / nseg
        p = p + (tl / nseg) * np.array([math.cos(th), -math.sin(th)])
        tail_pts.append(p.copy())
    for k in range(nseg):
        w0 = tw * (1.0 - 0.45 * k / nseg) * (1.0 + (0.5 * fl if k > 2 else 0.0))
        w1 = tw * (1.0 - 0.45 * (k + 1) / nseg) * (1.0 + (0.5 * fl if k + 1 > 2 else 0.0))
        parts.append((_TAIL, _segment_quad(tail_pts[k], tail_pts[k + 1], w0, w1)))
        parts.append((_TAIL, _ellipse(*tail_pts[k + 1], w1, w1, n=12)))

    # body
    parts.append((_BODY, _ellipse(0.0, 0.0, a, b, rng.normal(0, 0.03), n=56, wobble=wob, rng=rng)))

    # head & neck
    hr = gen.head_r * rng.uniform(0.94, 1.06)
    up = rng.uniform(-0.03, 0.08)
    hc = np.array([a * 0.92 + 0.25 * hr, -b * 0.85 - 0.55 * hr - up])
    neck_base = np.array([a * 0.62, -b * 0.3])
    mid = (hc + neck_base) / 2
    d = hc - neck_base
    parts.append((_BODY, _ellipse(mid[0], mid[1], np.hypot(*d) / 2 + hr * 0.35, hr * 0.72,
                                  math.atan2(d[1], d[0]), n=28, wobble=wob, rng=rng)))
    tilt = rng.normal(0, 0.08)
    # ears (drawn before the head so the head covers their bases)
    ears = []
    if gen.ears == "pointed":
        for phi, far in ((-math.pi / 2 + 0.45, False), (-math.pi / 2 - 0.55, True)):
            phi = phi + tilt
            base_c = hc + 0.8 * hr * np.array([math.cos(phi), math.sin(phi)])
            dirn = phi + (0.12 if not far else -0.12)
            dvec = np.array([math.cos(dirn), math.sin(dirn)])
            nvec = np.array([-dvec[1], dvec[0]])
            el = gen.ear_len * hr * rng.uniform(0.9, 1.1)
            ew = gen.ear_w * hr
            tip = base_c + el * dvec
            tri = np.array([base_c + nvec * ew, base_c + nvec * ew * 0.3 + dvec * el * 0.7,
                            tip, base_c - nvec * ew * 0.3 + dvec * el * 0.7, base_c - nvec * ew])
            ears.append((_FAR_EAR if far else _EAR, tri))
    elif gen.ears == "folded":  # rose/button ears: rounded flaps folded forward
        for phi, far in ((-math.pi / 2 + 0.5, False), (-math.pi / 2 - 0.45, True)):
            phi = phi + tilt
            base_c = hc + 0.82 * hr * np.array([math.cos(phi), math.sin(phi)])
            el = 0.75 * gen.ear_len * hr * rng.uniform(0.9, 1.1)
            ew = 0.8 * gen.ear_w * hr
            ang = rng.uniform(-0.1, 0.5) + tilt
            c = base_c + 0.45 * el * np.array([math.cos(ang), math.sin(ang)]) + np.array([0, -0.15 * el])
            ears.append((_FAR_EAR if far else _EAR, _ellipse(c[0], c[1], 0.6 * el, 0.42 * ew, ang, n=20)))
    else:  # floppy: long ellipses hanging at the side/back of the head
        el = 0.55 * gen.ear_len * hr * rng.uniform(0.9, 1.1)
        ew = 0.42 * gen.ear_w * hr
        swing_e = rng.normal(0.15, 0.12)
        far_c = hc + np.array([0.15 * hr, -0.55 * hr + el * 0.8])
        ears.append((_FAR_EAR, _ellipse(far_c[0], far_c[1], ew * 0.8, el * 0.8, swing_e, n=20, wobble=wob, rng=rng)))
    parts += ears
    parts.append((_HEAD, _ellipse(hc[0], hc[1], hr * rng.uniform(0.98, 1.06), hr * rng.uniform(0.92, 1.0),
                                  tilt, n=36, wobble=wob * 0.8, rng=rng)))
    ml = gen.muzzle
    mc = hc + np.array([hr * 0.72 + ml * 0.45, hr * 0.28])
    parts.append((_MUZZLE, _ellipse(mc[0], mc[1], ml * 0.5 + hr * 0.32, hr * 0.42, 0.12 + tilt, n=24)))
    if gen.ears == "floppy":  # near ear hangs over the head
        near_c = hc + np.array([-0.25 * hr, -0.45 * hr + el])
        parts.append((_EAR, _ellipse(near_c[0], near_c[1], ew, el, swing_e, n=24, wobble=wob, rng=rng)))
    info = {
        "b": b, "head_c": hc, "head_r": hr, "muzzle_c": mc, "muzzle_l": ml,
        "eye": hc + np.array([hr * (0.38 + 0.12 * (ml < 0.05)), -hr * 0.12]),
        "nose": mc + np.array([ml * 0.5 + hr * 0.3, -hr * 0.12]),
        "leg_len": leg_len, "feet": leg_info,
    }
    return parts, info


# --------------------------------------------------------------------------- textures
def _value_noise(rng, shape, cells, interp=cv2.INTER_CUBIC):
    """Smooth noise in roughly [0, 1] of ``shape`` (h, w) from a ``cells`` x ``cells`` grid."""
    h, w = shape
    g = rng.random((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(g, (w + 2 * (w // cells + 1), h + 2 * (h // cells + 1)), interpolation=interp)
    oy, ox = h // cells + 1, w // cells + 1
    return big[oy:oy + h, ox:ox + w]


def _fbm(rng, shape, cells=(3, 7, 17), weights=(0.55, 0.3, 0.15)):
    out = np.zeros(shape, np.float32)
    for c, wt in zip(cells, weights):
        out += wt * _value_noise(rng, shape, c)
    return out


def _remap_noise(rng, u, v, cells, extent=1.2):
    """Smooth noise sampled at local coordinates (u, v) in [-extent, extent]."""
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    g = cv2.resize(g, (8 * cells, 8 * cells), interpolation=cv2.INTER_CUBIC)
    n = g.shape[0]
    mx = ((u + extent) / (2 * extent) * (n - 1)).astype(np.float32)
    my = ((v + extent) / (2 * extent) * (n - 1)).astype(np.float32)
    return cv2.remap(g, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _smoothstep(x, e0, e1):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _hsv_colour(rng, s_range=(0.03, 0.8), v_range=(0.15, 0.95)):
    h = rng.uniform(0, 1)
    s = s_range[0] + (s_range[1] - s_range[0]) * rng.uniform(0, 1) ** 1.6  # mostly muted
    v = rng.uniform(*v_range)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32) * 255


def _near(rng, colour, spread=18.0):
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, spread, 3), 0, 255).astype(np.float32)


def _pattern_field(rng, kind, shape, scale):
    """A 0..1 pattern in image space (for backgrounds and distractors)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    c, s = math.cos(ang), math.sin(ang)
    rot = xx * c + yy * s
    if kind == "stripes":
        period = rng.uniform(4, 22) * scale
        duty = rng.uniform(-0.5, 0.5)
        return _smoothstep(np.sin(2 * np.pi * rot / period) - duty, -0.25, 0.25)
    if kind == "checkers":
        cell = rng.uniform(5, 24) * scale
        rot2 = -xx * s + yy * c
        return ((np.floor(rot / cell) + np.floor(rot2 / cell)) % 2).astype(np.float32)
    if kind == "waves":
        period = rng.uniform(8, 30) * scale
        warp = _value_noise(rng, shape, 4) * rng.uniform(5, 25) * scale
        return 0.5 + 0.5 * np.sin(2 * np.pi * (rot + warp) / period)
    # blobs
    m = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(4, 14))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ax, ay = rng.uniform(0.03, 0.18) * w, rng.uniform(0.03, 0.18) * h
        cv2.ellipse(m, (int(cx * _ONE), int(cy * _ONE)), (int(ax * _ONE), int(ay * _ONE)),
                    float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.5, 1.0)), -1, cv2.LINE_AA, _SHIFT)
    return cv2.GaussianBlur(m, (0, 0), rng.uniform(0.5, 2.5) * scale)


def _background(rng, S, scale, pet_gen, genomes):
    shape = (S, S)
    # palette: random colours, often borrowing the pet's or another breed's colours
    pal = [_hsv_colour(rng) for _ in range(4)]
    if rng.random() < 0.45:
        pal[int(rng.integers(0, 4))] = _near(rng, pet_gen.base if rng.random() < 0.7 else pet_gen.sec, 20)
    if rng.random() < 0.45:
        og = genomes[int(rng.integers(0, len(genomes)))]
        pal[int(rng.integers(0, 4))] = _near(rng, og.base if rng.random() < 0.6 else og.sec, 20)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    ang = rng.uniform(0, 2 * np.pi)
    grad = np.clip((xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang) + 0.5, 0, 1)[..., None]
    img = pal[0] * (1 - grad) + pal[1] * grad
    n = _fbm(rng, shape)[..., None]
    img = img * (1 - 0.8 * _smoothstep(n, 0.35, 0.75)) + pal[2] * 0.8 * _smoothstep(n, 0.35, 0.75)
    if rng.random() < 0.7:
        kind = ["stripes", "checkers", "blobs", "waves"][int(rng.integers(0, 4))]
        f = _pattern_field(rng, kind, shape, scale)[..., None]
        alpha = rng.uniform(0.25, 0.9)
        img = img * (1 - alpha * f) + pal[3] * (alpha * f)
    if rng.random() < 0.4:  # floor / horizon
        y0 = rng.uniform(0.45, 0.85) * S
        slope = rng.normal(0, 0.15)
        yyp = np.mgrid[0:S, 0:S][0].astype(np.float32)
        floor = (yyp > y0 + slope * (np.arange(S, dtype=np.float32)[None, :] - S / 2)).astype(np.float32)
        floor = cv2.GaussianBlur(floor, (0, 0), 0.8 * scale)[..., None]
        fc = _hsv_colour(rng) if rng.random() < 0.7 else _near(rng, pet_gen.base, 25)
        fn = _fbm(rng, shape, (5, 13, 31), (0.4, 0.35, 0.25))[..., None]
        img = img * (1 - floor) + (fc * (0.75 + 0.5 * fn)) * floor
    # mid-frequency texture + grain so no region is flat
    tex = _fbm(rng, shape, (11, 29, 64), (0.3, 0.4, 0.3))[..., None] - 0.5
    img = img * (1 + rng.uniform(0.1, 0.5) * tex)
    return img


def _draw_distractors(rng, img, S, scale, pet_gen, genomes):
    for _ in range(int(rng.integers(1, 5))):
        m = np.zeros((S, S), np.uint8)
        cx, cy = rng.uniform(-0.05, 1.05, 2) * S
        r = rng.uniform(0.06, 0.22) * S
        kind = rng.random()
        if kind < 0.4:
            poly = _ellipse(cx, cy, r, r * rng.uniform(0.35, 1.0), rng.uniform(0, np.pi), n=40)
        elif kind < 0.8:
            k = int(rng.integers(3, 9))
            t = np.sort(rng.uniform(0, 2 * np.pi, k))
            rr = r * rng.uniform(0.4, 1.0, k)
            poly = np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], axis=1)
        else:  # rotated rectangle / stick
            poly = _segment_quad(np.array([cx, cy]), np.array([cx, cy]) + r * 1.6 * np.array(
                [math.cos(a := rng.uniform(0, 2 * np.pi)), math.sin(a)]), r * rng.uniform(0.1, 0.5), r * rng.uniform(0.1, 0.5))
        cv2.fillPoly(m, [np.round(poly * _ONE).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
        alpha = (m.astype(np.float32) / 255.0)[..., None]
        u = rng.random()
        if u < 0.45:  # pet-like colours
            og = pet_gen if rng.random() < 0.4 else genomes[int(rng.integers(0, len(genomes)))]
            c1, c2 = _near(rng, og.base, 15), _near(rng, og.sec, 15)
        else:
            c1, c2 = _hsv_colour(rng), _hsv_colour(rng)
        if rng.random() < 0.45:
            f = _pattern_field(rng, ["stripes", "blobs", "checkers"][int(rng.integers(0, 3))], (S, S), scale)[..., None]
            fill = c1 * (1 - f) + c2 * f
        else:
            fill = c1 * (0.85 + 0.3 * _value_noise(rng, (S, S), 5)[..., None])
        img[:] = img * (1 - alpha) + fill * alpha


# --------------------------------------------------------------------------- rendering
def _rasterise(parts, M, S, out=None):
    """Fill the parts, transformed by the 2x3 affine ``M``, into a uint8 label map."""
    lab = np.zeros((S, S), np.uint8) if out is None else out
    for label, poly in parts:
        pts = poly @ M[:, :2].T + M[:, 2]
        cv2.fillPoly(lab, [np.round(pts * _ONE).astype(np.int32)], int(label), cv2.LINE_8, _SHIFT)
    return lab


def _affine(scale, rot, flip, tx, ty):
    c, s = math.cos(rot) * scale, math.sin(rot) * scale
    f = -1.0 if flip else 1.0
    return np.array([[c * f, -s, tx], [s * f, c, ty]], np.float64)


def render_image(seed: int, index: int, size: int = 128) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Draw image ``index`` of the dataset for ``seed``.

    Returns ``(rgb uint8 HxWx3, mask bool HxW, head_box)`` where head_box is the VOC
    ``(xmin, ymin, xmax, ymax)`` (1-based, inclusive, clipped) of the drawn head, or None
    when no head pixel is inside the frame.
    """
    S = int(size)
    scale = S / 128.0
    cls = index % NUM_BREEDS
    genomes = _genomes()
    gen = genomes[cls]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x5EED]))

    parts, info = _build_parts(gen, rng)

    # ---- pose and placement
    flip = bool(rng.random() < 0.5)
    rot = float(rng.normal(0, 0.12))
    allpts = np.concatenate([p for _, p in parts])
    # area of the silhouette in local units, from a provisional rasterisation
    ext = allpts.max(0) - allpts.min(0)
    s0 = 120.0 / float(ext.max())
    M0 = _affine(s0, rot, flip, 0, 0)
    tp = allpts @ M0[:, :2].T
    M0[:, 2] = -tp.min(0) + 4
    probe = _rasterise(parts, M0, int(math.ceil(tp.max(0).max() - tp.min(0).min() + 10)))
    area_local = float(np.count_nonzero(probe)) / s0 ** 2
    head_local = float(np.count_nonzero(np.isin(probe, _HEAD_LABELS))) / s0 ** 2
    cut = bool(rng.random() < 0.15)
    frac = rng.uniform(0.10, 0.75) if not cut else rng.uniform(0.3, 0.8)
    s = math.sqrt(frac * S * S / area_local)
    M = _affine(s, rot, flip, 0, 0)
    tp = allpts @ M[:, :2].T
    lo, hi = tp.min(0), tp.max(0)
    span = hi - lo
    limit = S * (1.45 if cut else 1.0)
    if span.max() > limit:  # shrink to fit the frame
        s *= limit / span.max()
        M = _affine(s, rot, flip, 0, 0)
        tp = allpts @ M[:, :2].T
        lo, hi = tp.min(0), tp.max(0)
        span = hi - lo
    head_right = not flip  # the head is at +x locally
    # position: anywhere the bounding box fits; where it does not, keep the head side in
    t = np.empty(2)
    for k in range(2):
        room = S - span[k]
        if room >= 0:
            t[k] = rng.uniform(0, room) - lo[k]
        elif k == 0:
            t[k] = (S - hi[0]) if head_right else -lo[0]
        else:
            t[k] = -lo[1]
    if cut:  # push out through the bottom or the tail side, keeping the head in
        amount = rng.uniform(0.1, 0.3)
        if rng.random() < 0.5:
            t[1] = max(t[1], S - hi[1] + amount * span[1])
        elif head_right:
            t[0] = min(t[0], -lo[0] - amount * span[0])
        else:
            t[0] = max(t[0], S - hi[0] + amount * span[0])
    M[:, 2] = t
    lab = _rasterise(parts, M, S)
    head_px = np.isin(lab, _HEAD_LABELS)
    if np.count_nonzero(head_px) < 0.8 * head_local * s * s:
        # the head went out of the frame: centre the pet instead
        M[:, 2] = (S - span) / 2 - lo
        lab = _rasterise(parts, M, S)
        head_px = np.isin(lab, _HEAD_LABELS)
    mask = lab > 0

    # ---- local coordinates of every pixel
    A = M[:, :2]
    Ainv = np.linalg.inv(A)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    px, py = xx - np.float32(M[0, 2]), yy - np.float32(M[1, 2])
    u = (Ainv[0, 0] * px + Ainv[0, 1] * py).astype(np.float32)
    v = (Ainv[1, 0] * px + Ainv[1, 1] * py).astype(np.float32)

    # ---- coat
    jit = rng.normal(0, 7, 3)
    bright = rng.uniform(0.9, 1.1)
    base = np.clip((np.array(gen.base) + jit) * bright, 0, 255).astype(np.float32)
    sec = np.clip((np.array(gen.sec) + jit * 0.7 + rng.normal(0, 5, 3)) * bright, 0, 255).astype(np.float32)
    b = info["b"]
    w = np.zeros((S, S), np.float32)
    pat = gen.pattern
    ps = gen.pattern_scale
    is_leg = (lab == _NEAR_LEG) | (lab == _FAR_LEG)
    if pat == "stripes":
        warp = _remap_noise(rng, u, v, 6) * 0.9
        coord = np.where(is_leg, v * 1.3, u + 0.25 * v)
        w = _smoothstep(np.sin(2 * np.pi * 7.5 * ps * coord + 5 * warp) - 0.1, -0.35, 0.35)
    elif pat in ("spots", "rosettes", "flecks"):
        w = np.zeros((S, S), np.float32)
        n_sp = int((70 if pat == "flecks" else 34) * ps)
        rad = {"spots": 0.035, "rosettes": 0.042, "flecks": 0.02}[pat]
        cu = rng.uniform(-0.55, 0.6, n_sp)
        cv = rng.uniform(-b * 1.1, b + 0.5 * info["leg_len"], n_sp)
        cpts = np.stack([cu, cv], 1) @ A.T + M[:, 2]
        rpx = rad * s
        for (x, y), rr in zip(cpts, rng.uniform(0.7, 1.3, n_sp) * rpx):
            if pat == "rosettes":
                cv2.circle(w, (int(x * _ONE), int(y * _ONE)), int(rr * _ONE), 1.0,
                           max(1, int(round(rr * 0.45))), cv2.LINE_AA, _SHIFT)
            else:
                cv2.circle(w, (int(x * _ONE), int(y * _ONE)), int(max(rr, 0.8) * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
        w = np.minimum(cv2.GaussianBlur(w, (0, 0), 0.6 * scale) * 1.3, 1.0)
    elif pat == "patches":
        n = _remap_noise(rng, u, v, 5)
        thr = rng.uniform(0.45, 0.6)
        w = _smoothstep(n, thr - 0.04, thr + 0.04)
    elif pat == "gradient":
        vr = (v + b) / (2 * b)
        w = 1.0 - _smoothstep(vr, 0.2, 0.75)  # secondary colour on the back (top)
        if np.mean(gen.sec) > np.mean(gen.base):
            w = 1.0 - w  # light belly instead
        w = np.where(lab == _TAIL, 0.6, w)
    elif pat == "points":
        leg_w = _smoothstep(v, b * 0.5, b * 0.5 + info["leg_len"])
        w = np.select([np.isin(lab, (_EAR, _FAR_EAR)), lab == _MUZZLE, lab == _HEAD, lab == _TAIL, is_leg],
                      [1.0, 1.0, 0.75, 0.9, leg_w], 0.0).astype(np.float32)
        w = cv2.GaussianBlur(w, (0, 0), 1.2 * scale)
    elif pat == "mask":
        hc = info["head_c"]
        d = np.hypot(u - info["muzzle_c"][0], v - info["muzzle_c"][1])
        w = 1.0 - _smoothstep(d, info["head_r"] * 0.45, info["head_r"] * 1.0)
        w = np.where(np.isin(lab, (_EAR, _FAR_EAR, _MUZZLE)), 1.0, w)
        w = np.where(lab == _HEAD, np.maximum(w, 0.3 * (u > hc[0])), w).astype(np.float32)
    else:  # plain: gentle mottling only
        w = 0.25 * _remap_noise(rng, u, v, 7)
    w = w.astype(np.float32)
    coat = base * (1 - w[..., None]) + sec * w[..., None]

    light = np.array([236, 232, 224], np.float32)
    if gen.bib:
        d = np.hypot((u - (0.45 + 0.1)) / 0.22, (v - b * 0.1) / (b * 1.1 + 0.05))
        wb = (1 - _smoothstep(d, 0.6, 1.0)) * (lab == _BODY)
        coat = coat * (1 - wb[..., None]) + light * wb[..., None]
    if gen.socks:
        ws = _smoothstep(v, b * 0.5 + info["leg_len"] * 0.65, b * 0.5 + info["leg_len"] * 0.8) * is_leg
        coat = coat * (1 - ws[..., None]) + light * ws[..., None]

    # shading: light from above, far limbs darker, fur mottling
    shade = 1.08 - 0.22 * _smoothstep(v, -b, b + info["leg_len"])
    shade = shade * np.where((lab == _FAR_LEG) | (lab == _FAR_EAR), 0.78, 1.0)
    fur = _remap_noise(rng, u, v, 23) - 0.5
    shade = shade * (1 + (0.18 + 0.25 * gen.fluff) * fur)
    coat = coat * shade[..., None].astype(np.float32)
    # outline darkening between overlapping parts (legs vs body etc.) for structure
    edges = cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    coat = np.where((edges & mask)[..., None], coat * 0.85, coat)

    # face: eyes and nose (decoration only; inside the silhouette)
    er = max(0.9, info["head_r"] * s * 0.16)
    ex, ey = A @ info["eye"] + M[:, 2]
    nx, ny = A @ info["nose"] + M[:, 2]
    face = np.zeros((S, S), np.float32)
    eye_col = np.clip(np.array(gen.eye, np.float32) + rng.normal(0, 10, 3), 0, 255)
    cv2.circle(face, (int(ex * _ONE), int(ey * _ONE)), int(er * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
    fa = (face * mask)[..., None]
    coat = coat * (1 - fa) + eye_col * fa
    face[:] = 0
    cv2.circle(face, (int(ex * _ONE), int(ey * _ONE)), int(er * 0.5 * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(face, (int(nx * _ONE), int(ny * _ONE)), int(er * 0.9 * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
    fa = (face * mask)[..., None]
    coat = coat * (1 - fa) + np.float32(20) * fa

    # ---- background, distractors, composite
    img = _background(rng, S, scale, gen, genomes)
    _draw_distractors(rng, img, S, scale, gen, genomes)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.55 * scale)[..., None]
    alpha = np.maximum(alpha, mask[..., None] * 0.5)  # keep the silhouette dominant inside
    img = img * (1 - alpha) + coat * alpha

    # ---- camera: blur, noise
    if rng.random() < 0.75:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9) * scale)
    img = img + rng.normal(0, rng.uniform(2, 7), img.shape).astype(np.float32)
    rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    box = None
    if head_px.any():
        ys, xs = np.nonzero(head_px)
        box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
    return rgb, mask, box


def trimap_from_mask(mask: np.ndarray, size: int | None = None) -> np.ndarray:
    """Oxford-style trimap (1 pet, 2 background, 3 border band straddling the outline)."""
    S = size if size is not None else max(mask.shape)
    width = max(2, int(round(S / 128.0)) + 1)  # 2 px at 128, 3 at 256, 5 at 512
    ro, ri = (width + 1) // 2, width // 2
    m = mask.astype(np.uint8)
    dil = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ro + 1, 2 * ro + 1)))
    ero = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ri + 1, 2 * ri + 1)),
                    borderType=cv2.BORDER_CONSTANT, borderValue=1)
    tri = np.full(m.shape, 2, np.uint8)
    tri[dil > 0] = 3
    tri[ero > 0] = 1
    tri[(dil > 0) & (ero == 0)] = 3
    return tri


def _xml(image_id: str, W: int, H: int, species: str, box) -> str:
    x0, y0, x1, y1 = box
    return (
        f"<annotation><folder>OXIIIT</folder><filename>{image_id}.jpg</filename>"
        f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size>"
        f"<segmented>0</segmented><object><name>{species}</name><pose>Frontal</pose>"
        f"<truncated>0</truncated><occluded>0</occluded><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox><difficult>0</difficult>"
        f"</object></annotation>\n"
    )


# --------------------------------------------------------------------------- dataset
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _plan(images: int, seed: int, missing_box_fraction: float):
    """Image ids, classes, splits and which trainval images lack a box (all deterministic)."""
    rows = []  # (index, image_id, class_idx, n)
    for i in range(images):
        c, n = i % NUM_BREEDS, i // NUM_BREEDS + 1
        rows.append((i, f"{BREEDS[c]}_{n}", c, n))
    # split: within each breed, images (1,2), (3,4), ... are pairs; one of each pair goes
    # to trainval and one to test; an unpaired last image goes to trainval.
    trainval = set()
    counts = [0] * NUM_BREEDS
    for _, _, c, _ in rows:
        counts[c] += 1
    for i, _, c, n in rows:
        if n % 2 == 1 and n == counts[c]:
            trainval.add(i)
            continue
        pair = (n - 1) // 2
        first_in_tv = np.random.default_rng(np.random.SeedSequence([int(seed), c, pair, 0x5917])).random() < 0.5
        if (n % 2 == 1) == first_in_tv:
            trainval.add(i)
    tv = [i for i, *_ in rows if i in trainval]
    n_missing = int(round(missing_box_fraction * len(tv)))
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB0C5])).permutation(len(tv))
    missing = {tv[k] for k in perm[:n_missing]}
    return rows, trainval, missing


def _encode_one(seed, index, size, image_id, want_box):
    rgb, mask, box = render_image(seed, index, size)
    ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    ok, png = cv2.imencode(".png", trimap_from_mask(mask, size))
    assert ok
    xml = None
    if want_box and box is not None:
        xml = _xml(image_id, size, size, species_of(BREEDS[index % NUM_BREEDS]), box).encode()
    return jpg.tobytes(), png.tobytes(), xml


def _work(job):
    root, seed, size, chunk = job
    root = Path(root)
    boxes = 0
    for index, image_id, want_box in chunk:
        jpg, png, xml = _encode_one(seed, index, size, image_id, want_box)
        _write_atomic(root / "images" / f"{image_id}.jpg", jpg)
        _write_atomic(root / "annotations" / "trimaps" / f"{image_id}.png", png)
        xml_path = root / "annotations" / "xmls" / f"{image_id}.xml"
        if xml is not None:
            _write_atomic(xml_path, xml)
            boxes += 1
        elif xml_path.exists():  # left over from a run with other arguments
            xml_path.unlink()
    return len(chunk), boxes


def synthesize(
    root: str | os.PathLike,
    images: int,
    size: int = 128,
    seed: int = 0,
    *,
    missing_box_fraction: float = 0.1,
    progress: bool = False,
    workers: int = 1,
) -> dict:
    """Write a synthetic Oxford-IIIT Pet dataset of ``images`` square ``size`` px images.

    ``workers`` > 1 renders in that many processes (same bytes as ``workers=1``).
    Returns ``{"root", "images", "trainval", "test", "boxes", "seconds", "size", "seed"}``.
    """
    t0 = time.perf_counter()
    images, size = int(images), int(size)
    if images < 0 or size < 16:
        raise ValueError("images must be >= 0 and size >= 16")
    if not 0.0 <= missing_box_fraction <= 1.0:
        raise ValueError("missing_box_fraction must be in [0, 1]")
    root = Path(root)
    for d in ("images", "annotations", "annotations/trimaps", "annotations/xmls"):
        (root / d).mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(root / d):  # temporaries left by a killed run
            if entry.name.startswith(".") and ".tmp" in entry.name and entry.is_file():
                os.unlink(entry.path)

    rows, trainval, missing = _plan(images, seed, missing_box_fraction)
    order = sorted(rows, key=lambda r: (r[2], r[3]))

    def line(r):
        _, image_id, c, _ = r
        b = BREEDS[c]
        return f"{image_id} {c + 1} {1 if species_of(b) == 'cat' else 2} {breed_index_within_species(b)}\n"

    _write_atomic(root / "annotations" / "list.txt", (LIST_HEADER + "".join(line(r) for r in order)).encode())
    _write_atomic(root / "annotations" / "trainval.txt", "".join(line(r) for r in order if r[0] in trainval).encode())
    _write_atomic(root / "annotations" / "test.txt", "".join(line(r) for r in order if r[0] not in trainval).encode())

    jobs_all = [(i, image_id, i in trainval and i not in missing) for i, image_id, _, _ in rows]
    chunk = max(1, min(64, -(-images // 20)))  # ~20 chunks: progress every ~10 %
    jobs = [(str(root), seed, size, jobs_all[k:k + chunk]) for k in range(0, len(jobs_all), chunk)]
    done = boxes = 0
    next_report = 0.1
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn" if sys.platform == "darwin" else None)
        with ctx.Pool(workers) as pool:
            results = pool.imap_unordered(_work, jobs)
            for n, nb in results:
                done, boxes = done + n, boxes + nb
                next_report = _report(progress, done, images, t0, next_report)
    else:
        for job in jobs:
            n, nb = _work(job)
            done, boxes = done + n, boxes + nb
            next_report = _report(progress, done, images, t0, next_report)
    n_tv = len(trainval)
    return {
        "root": str(root),
        "images": images,
        "trainval": n_tv,
        "test": images - n_tv,
        "boxes": boxes,
        "seconds": round(time.perf_counter() - t0, 3),
        "size": size,
        "seed": seed,
    }


def _report(progress, done, total, t0, next_report):
    if not progress or total == 0:
        return next_report
    if done / total + 1e-9 >= next_report or done == total:
        dt = time.perf_counter() - t0
        print(f"synthesize: {done}/{total} images ({100 * done // total}%) {dt:.1f}s "
              f"{done / max(dt, 1e-9):.0f} img/s", file=sys.stderr, flush=True)
        while next_report <= done / total + 1e-9:
            next_report += 0.1
    return next_report
