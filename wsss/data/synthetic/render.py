"""One synthetic image: a posed pet placed anywhere in the frame over a cluttered background.

Placement is what keeps the "no information" baselines honest: the pet's area is drawn
log-uniformly between ``AREA_RANGE`` of the frame (small pets as often as large ones) and its
bounding box anywhere it fits, so a centred ellipse is a weak prior; ``CUT_FRACTION`` of pets
are pushed partly out of the frame (never the head).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from wsss.data.breeds import NUM_BREEDS
from wsss.data.synthetic.anatomy import HEAD_LABELS, POSE_WEIGHTS, POSES, build_parts
from wsss.data.synthetic.coat import PetFrame, paint_coat
from wsss.data.synthetic.genome import all_genomes
from wsss.data.synthetic.scene import background, draw_distractors
from wsss.data.synthetic.textures import ONE, SHIFT

AREA_RANGE = (0.05, 0.55)  # pet area / frame area, log-uniform
CUT_AREA_RANGE = (0.25, 0.7)
CUT_FRACTION = 0.15


def rasterise(parts, M: np.ndarray, S: int) -> np.ndarray:
    """Fill the parts, transformed by the 2x3 affine ``M``, into an S x S uint8 label map."""
    lab = np.zeros((S, S), np.uint8)
    for label, poly in parts:
        pts = poly @ M[:, :2].T + M[:, 2]
        cv2.fillPoly(lab, [np.round(pts * ONE).astype(np.int32)], int(label), cv2.LINE_8, SHIFT)
    return lab


def _affine(scale, rot, flip):
    c, s = math.cos(rot) * scale, math.sin(rot) * scale
    f = -1.0 if flip else 1.0
    return np.array([[c * f, -s, 0.0], [s * f, c, 0.0]], np.float64)


def _local_areas(parts, rot, flip) -> tuple[float, float]:
    """Silhouette and head areas in local units, from a provisional rasterisation."""
    pts = np.concatenate([p for _, p in parts])
    s0 = 120.0 / float((pts.max(0) - pts.min(0)).max())
    M0 = _affine(s0, rot, flip)
    tp = pts @ M0[:, :2].T
    M0[:, 2] = -tp.min(0) + 4
    probe = rasterise(parts, M0, math.ceil((tp.max(0) - tp.min(0)).max() + 10))
    return np.count_nonzero(probe) / s0 ** 2, np.count_nonzero(np.isin(probe, HEAD_LABELS)) / s0 ** 2


def _translation(rng, lo, hi, S, head_right, cut):
    """Offset putting the pet's box anywhere it fits; a cut pet leaves by the bottom or tail side."""
    span, t = hi - lo, np.empty(2)
    for k in range(2):
        if span[k] <= S:
            t[k] = rng.uniform(0, S - span[k]) - lo[k]
        elif k == 0:  # wider than the frame: keep the head side in
            t[k] = (S - hi[0]) if head_right else -lo[0]
        else:
            t[k] = -lo[1]
    if cut:
        amount = rng.uniform(0.1, 0.3)
        if rng.random() < 0.5:
            t[1] = max(t[1], S - hi[1] + amount * span[1])
        elif head_right:
            t[0] = min(t[0], -lo[0] - amount * span[0])
        else:
            t[0] = max(t[0], S - hi[0] + amount * span[0])
    return t


def place(rng, parts, S: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Pose the pet in the frame: ``(M, pixels per body length, label map)``."""
    flip, rot = bool(rng.random() < 0.5), float(rng.normal(0, 0.12))
    area_local, head_local = _local_areas(parts, rot, flip)
    cut = bool(rng.random() < CUT_FRACTION)
    lo_area, hi_area = CUT_AREA_RANGE if cut else AREA_RANGE
    frac = math.exp(rng.uniform(math.log(lo_area), math.log(hi_area)))
    s = math.sqrt(frac * S * S / area_local)
    pts = np.concatenate([p for _, p in parts])
    span = np.ptp(pts @ _affine(s, rot, flip)[:, :2].T, axis=0)
    limit = S * (1.45 if cut else 1.0)
    if span.max() > limit:  # shrink to fit the frame
        s *= limit / span.max()
    M = _affine(s, rot, flip)
    tp = pts @ M[:, :2].T
    lo, hi = tp.min(0), tp.max(0)
    M[:, 2] = _translation(rng, lo, hi, S, not flip, cut)  # the head is at +x locally
    lab = rasterise(parts, M, S)
    if np.count_nonzero(np.isin(lab, HEAD_LABELS)) < 0.8 * head_local * s * s:
        M[:, 2] = (S - (hi - lo)) / 2 - lo  # the head left the frame: centre the pet instead
        lab = rasterise(parts, M, S)
    return M, s, lab


def _frame(M, s, lab, S) -> PetFrame:
    inv = np.linalg.inv(M[:, :2])
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    px, py = xx - np.float32(M[0, 2]), yy - np.float32(M[1, 2])
    u = (inv[0, 0] * px + inv[0, 1] * py).astype(np.float32)
    v = (inv[1, 0] * px + inv[1, 1] * py).astype(np.float32)
    return PetFrame(lab=lab, u=u, v=v, M=M, s=s, scale=S / 128.0)


def _head_box(lab) -> tuple[int, int, int, int] | None:
    head = np.isin(lab, HEAD_LABELS)
    if not head.any():
        return None
    ys, xs = np.nonzero(head)
    return int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1


def render_image(seed: int, index: int, size: int = 128) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Draw image ``index`` of the dataset for ``seed``.

    Returns ``(rgb uint8 HxWx3, mask bool HxW, head_box)`` where head_box is the VOC
    ``(xmin, ymin, xmax, ymax)`` (1-based, inclusive, clipped) of the drawn head, or None
    when no head pixel is inside the frame.
    """
    S, genomes = int(size), all_genomes()
    gen = genomes[index % NUM_BREEDS]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x5EED]))
    pose = POSES[int(rng.choice(len(POSES), p=POSE_WEIGHTS))]
    parts, info = build_parts(gen, rng, pose)
    frame = _frame(*place(rng, parts, S), S)
    coat = paint_coat(rng, gen, frame, info)
    img = background(rng, S, frame.scale, gen, genomes)
    draw_distractors(rng, img, S, frame.scale, gen, genomes)
    mask = frame.mask
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.55 * frame.scale)[..., None]
    alpha = np.maximum(alpha, mask[..., None] * 0.5)  # keep the silhouette dominant inside
    img = img * (1 - alpha) + coat * alpha
    if rng.random() < 0.75:  # camera: defocus, then sensor noise
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9) * frame.scale)
    img = img + rng.normal(0, rng.uniform(2, 7), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask, _head_box(frame.lab)
