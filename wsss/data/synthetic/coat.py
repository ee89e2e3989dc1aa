"""The pet's coat: breed pattern, bib and socks, shading, outline and face, in image space.

Patterns are computed in the pet's local frame (``u``, ``v`` per pixel) so stripes, spots
and colour points follow the body whatever the pose, scale and rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from wsss.data.synthetic.anatomy import (
    BODY,
    EAR,
    FAR_EAR,
    FAR_LEG,
    HEAD,
    MUZZLE,
    NEAR_LEG,
    TAIL,
)
from wsss.data.synthetic.genome import Genome
from wsss.data.synthetic.textures import ONE, SHIFT, remap_noise, smoothstep

LIGHT = np.array([236, 232, 224], np.float32)  # bib and socks


@dataclass
class PetFrame:
    """A placed pet: part label map, local coordinates of every pixel, and the transform."""

    lab: np.ndarray  # S x S uint8 part labels (0 = background)
    u: np.ndarray  # S x S float32 local x of each pixel
    v: np.ndarray  # S x S float32 local y
    M: np.ndarray  # 2 x 3 local -> image affine
    s: float  # pixels per body length
    scale: float  # image size / 128

    @property
    def mask(self) -> np.ndarray:
        return self.lab > 0

    def to_image(self, point) -> np.ndarray:
        return self.M[:, :2] @ np.asarray(point, float) + self.M[:, 2]


def _spots(rng, frame: PetFrame, info: dict, kind: str, density: float) -> np.ndarray:
    w = np.zeros(frame.lab.shape, np.float32)
    count = int((70 if kind == "flecks" else 34) * density)
    radius = {"spots": 0.035, "rosettes": 0.042, "flecks": 0.02}[kind] * frame.s
    b = info["b"]
    centres = np.stack([rng.uniform(-0.55, 0.6, count),
                        rng.uniform(-b * 1.1, b + 0.5 * info["leg_len"], count)], 1)
    centres = centres @ frame.M[:, :2].T + frame.M[:, 2]
    for (x, y), rr in zip(centres, rng.uniform(0.7, 1.3, count) * radius):
        centre = (int(x * ONE), int(y * ONE))
        if kind == "rosettes":
            cv2.circle(w, centre, int(rr * ONE), 1.0, max(1, round(rr * 0.45)), cv2.LINE_AA, SHIFT)
        else:
            cv2.circle(w, centre, int(max(rr, 0.8) * ONE), 1.0, -1, cv2.LINE_AA, SHIFT)
    return np.minimum(cv2.GaussianBlur(w, (0, 0), 0.6 * frame.scale) * 1.3, 1.0)


def pattern_weight(rng, gen: Genome, frame: PetFrame, info: dict) -> np.ndarray:
    """S x S weight of the secondary colour (0 base .. 1 secondary) for the breed's pattern."""
    lab, u, v, b, pat = frame.lab, frame.u, frame.v, info["b"], gen.pattern
    is_leg = (lab == NEAR_LEG) | (lab == FAR_LEG)
    if pat == "stripes":
        warp = remap_noise(rng, u, v, 6) * 0.9
        coord = np.where(is_leg, v * 1.3, u + 0.25 * v)
        return smoothstep(np.sin(2 * np.pi * 7.5 * gen.pattern_scale * coord + 5 * warp) - 0.1, -0.35, 0.35)
    if pat in ("spots", "rosettes", "flecks"):
        return _spots(rng, frame, info, pat, gen.pattern_scale)
    if pat == "patches":
        thr = rng.uniform(0.45, 0.6)
        return smoothstep(remap_noise(rng, u, v, 5), thr - 0.04, thr + 0.04)
    if pat == "gradient":
        w = 1.0 - smoothstep((v + b) / (2 * b), 0.2, 0.75)  # secondary colour on the back (top)
        if np.mean(gen.sec) > np.mean(gen.base):
            w = 1.0 - w  # light belly instead
        return np.where(lab == TAIL, 0.6, w)
    if pat == "points":
        leg_w = smoothstep(v, b * 0.5, b * 0.5 + info["leg_len"])
        w = np.select([np.isin(lab, (EAR, FAR_EAR)), lab == MUZZLE, lab == HEAD, lab == TAIL, is_leg],
                      [1.0, 1.0, 0.75, 0.9, leg_w], 0.0).astype(np.float32)
        return cv2.GaussianBlur(w, (0, 0), 1.2 * frame.scale)
    if pat == "mask":
        d = np.hypot(u - info["muzzle_c"][0], v - info["muzzle_c"][1])
        w = 1.0 - smoothstep(d, info["head_r"] * 0.45, info["head_r"] * 1.0)
        w = np.where(np.isin(lab, (EAR, FAR_EAR, MUZZLE)), 1.0, w)
        return np.where(lab == HEAD, np.maximum(w, 0.3 * (u > info["head_c"][0])), w)
    return 0.25 * remap_noise(rng, u, v, 7)  # plain: gentle mottling only


def _markings(coat, gen: Genome, frame: PetFrame, info: dict):
    """Light bib on the chest and white socks, where the breed has them."""
    u, v, lab, b = frame.u, frame.v, frame.lab, info["b"]
    if gen.bib:
        d = np.hypot((u - 0.55) / 0.22, (v - b * 0.1) / (b * 1.1 + 0.05))
        wb = (1 - smoothstep(d, 0.6, 1.0)) * (lab == BODY)
        coat = coat * (1 - wb[..., None]) + LIGHT * wb[..., None]
    if gen.socks:
        is_leg = (lab == NEAR_LEG) | (lab == FAR_LEG)
        ws = smoothstep(v, b * 0.5 + info["leg_len"] * 0.65, b * 0.5 + info["leg_len"] * 0.8) * is_leg
        coat = coat * (1 - ws[..., None]) + LIGHT * ws[..., None]
    return coat


def _shade(rng, coat, gen: Genome, frame: PetFrame, info: dict):
    """Light from above, far limbs darker, fur mottling, dark seams between parts."""
    b, lab = info["b"], frame.lab
    shade = 1.08 - 0.22 * smoothstep(frame.v, -b, b + info["leg_len"])
    shade = shade * np.where((lab == FAR_LEG) | (lab == FAR_EAR), 0.78, 1.0)
    shade = shade * (1 + (0.18 + 0.25 * gen.fluff) * (remap_noise(rng, frame.u, frame.v, 23) - 0.5))
    coat = coat * shade[..., None].astype(np.float32)
    edges = cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    return np.where((edges & frame.mask)[..., None], coat * 0.85, coat)


def _face(rng, coat, gen: Genome, frame: PetFrame, info: dict):
    """Eye (iris and pupil) and nose, clipped to the silhouette."""
    radius = max(0.9, info["head_r"] * frame.s * 0.16)
    (ex, ey), (nx, ny) = frame.to_image(info["eye"]), frame.to_image(info["nose"])
    mask = frame.mask
    face = np.zeros(mask.shape, np.float32)
    iris = np.clip(np.array(gen.eye, np.float32) + rng.normal(0, 10, 3), 0, 255)
    cv2.circle(face, (int(ex * ONE), int(ey * ONE)), int(radius * ONE), 1.0, -1, cv2.LINE_AA, SHIFT)
    fa = (face * mask)[..., None]
    coat = coat * (1 - fa) + iris * fa
    face[:] = 0
    cv2.circle(face, (int(ex * ONE), int(ey * ONE)), int(radius * 0.5 * ONE), 1.0, -1, cv2.LINE_AA, SHIFT)
    cv2.circle(face, (int(nx * ONE), int(ny * ONE)), int(radius * 0.9 * ONE), 1.0, -1, cv2.LINE_AA, SHIFT)
    fa = (face * mask)[..., None]
    return coat * (1 - fa) + np.float32(20) * fa


def paint_coat(rng, gen: Genome, frame: PetFrame, info: dict) -> np.ndarray:
    """S x S x 3 float32 colours of the pet (meaningful inside ``frame.mask`` only)."""
    jit, bright = rng.normal(0, 7, 3), rng.uniform(0.9, 1.1)
    base = np.clip((np.array(gen.base) + jit) * bright, 0, 255).astype(np.float32)
    sec = np.clip((np.array(gen.sec) + jit * 0.7 + rng.normal(0, 5, 3)) * bright, 0, 255).astype(np.float32)
    w = pattern_weight(rng, gen, frame, info).astype(np.float32)[..., None]
    coat = base * (1 - w) + sec * w
    coat = _shade(rng, _markings(coat, gen, frame, info), gen, frame, info)
    return _face(rng, coat, gen, frame, info)
