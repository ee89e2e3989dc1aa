"""A pet's silhouette as labelled polygons in local coordinates, in one of three poses.

Local frame: x runs forward to the head, y down, lengths in body lengths (the body ellipse
is 1 long). Parts are drawn in list order (later parts cover earlier ones in colour); the
mask is the union of all of them. Poses: ``stand`` (walking, legs and tail out: a sparse
silhouette), ``sit`` (front raised about the rump, hind legs folded into a haunch) and
``lie`` (legs tucked or stretched along the ground). Sitting and lying pets fill more of
their bounding box, as most pets in photos do, so a box around a pet is mostly pet.
"""

from __future__ import annotations

import math

import numpy as np

from wsss.data.synthetic.genome import Genome

# Part labels in the label map (0 = background).
FAR_LEG, TAIL, BODY, NEAR_LEG, HEAD, MUZZLE, EAR, FAR_EAR = 1, 2, 3, 4, 5, 6, 7, 8
HEAD_LABELS = (HEAD, MUZZLE, EAR, FAR_EAR)
POSES = ("stand", "sit", "lie")
POSE_WEIGHTS = (0.3, 0.35, 0.35)


def ellipse(cx, cy, ax, ay, angle=0.0, n=40, wobble=0.0, rng=None):
    """Polygon (n, 2) of an ellipse, optionally with a furry radial wobble."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    if wobble > 0 and rng is not None:
        k1, k2 = rng.integers(14, 22), rng.integers(23, 33)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        r = 1.0 + wobble * (0.6 * np.abs(np.sin(k1 * t / 2 + p1)) + 0.4 * np.sin(k2 * t + p2) - 0.3)
    x, y = ax * r * np.cos(t), ay * r * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def segment_quad(p0, p1, w0, w1):
    """Quadrilateral around the segment p0 -> p1, half-widths w0 at p0 and w1 at p1."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    return np.array([p0 + n * w0, p1 + n * w1, p1 - n * w1, p0 - n * w0])


def _rotate_about(points: np.ndarray, pivot: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    d = np.asarray(points, float) - pivot
    return np.stack([pivot[0] + c * d[..., 0] - s * d[..., 1],
                     pivot[1] + s * d[..., 0] + c * d[..., 1]], axis=-1)


def _leg(top, foot, lw, label):
    """A tapered leg from hip/shoulder ``top`` to ``foot``, with a paw."""
    paw = ellipse(foot[0] + lw * 0.25, foot[1], lw * 0.62, lw * 0.4, n=16)
    return [(label, segment_quad(top, foot, lw * 0.62, lw * 0.45)), (label, paw)]


def _standing_legs(b, leg_len, lw, rng):
    """Four legs in a walking pose with alternating swing; returns parts and feet."""
    swing, phase = rng.uniform(0.0, 0.35), rng.choice([-1.0, 1.0])
    parts, feet = [], []
    for hx, far, sgn in ((0.30, True, phase), (0.36, False, -phase),
                         (-0.36, True, -phase), (-0.30, False, phase)):
        top = np.array([hx * 0.95 - (0.04 if far else 0.0), b * 0.35])
        ang = sgn * swing + rng.normal(0, 0.06)
        foot = top + leg_len * np.array([math.sin(ang), math.cos(ang)]) + np.array([0, b * 0.55])
        parts += _leg(top, foot, lw, FAR_LEG if far else NEAR_LEG)
        feet.append(foot)
    return parts, feet


def _haunches(hip, ground, lw, b, rng):
    """Folded hind legs: a thigh over the hip and a paw forward along the ground."""
    parts = []
    for far in (True, False):
        dx = -0.04 if far else 0.0
        thigh = ellipse(hip[0] + dx, hip[1], 0.17 + 0.05 * rng.random(), b * 0.75, -0.3, n=24)
        foot = np.array([hip[0] + dx + 0.18, ground])
        parts += [(FAR_LEG if far else NEAR_LEG, thigh)]
        parts += _leg(np.array([hip[0] + dx, hip[1] + b * 0.3]), foot, lw * 0.9,
                      FAR_LEG if far else NEAR_LEG)
    return parts


def _tail(gen, rng, start, elevation):
    """Tapered segments curling from ``start``; elevation in radians above pointing backwards."""
    fl, nseg = gen.fluff, 14
    tl, tw = gen.tail_len * rng.uniform(0.9, 1.1), gen.tail_w * (1.0 + 0.3 * fl)
    curl, theta = gen.tail_curl * rng.uniform(0.85, 1.15), math.pi - elevation
    points, p = [np.asarray(start, float)], np.asarray(start, float)
    for k in range(nseg):
        th = theta + curl * (k + 0.5) / nseg
        p = p + (tl / nseg) * np.array([math.cos(th), -math.sin(th)])
        points.append(p)
    parts = []
    for k in range(nseg):
        widths = [tw * (1.0 - 0.45 * j / nseg) * (1.0 + (0.5 * fl if j > 2 else 0.0))
                  for j in (k, k + 1)]
        parts.append((TAIL, segment_quad(points[k], points[k + 1], *widths)))
        parts.append((TAIL, ellipse(*points[k + 1], widths[1], widths[1], n=12)))
    return parts


def _ears(gen, rng, hc, hr, tilt, wob):
    """Ears drawn before the head (which covers their bases); a floppy near ear comes later."""
    ears, near = [], []
    if gen.ears == "pointed":
        for phi, far in ((-math.pi / 2 + 0.45, False), (-math.pi / 2 - 0.55, True)):
            phi = phi + tilt
            base_c = hc + 0.8 * hr * np.array([math.cos(phi), math.sin(phi)])
            dirn = phi + (0.12 if not far else -0.12)
            dvec = np.array([math.cos(dirn), math.sin(dirn)])
            nvec = np.array([-dvec[1], dvec[0]])
            el, ew = gen.ear_len * hr * rng.uniform(0.9, 1.1), gen.ear_w * hr
            tri = np.array([base_c + nvec * ew, base_c + nvec * ew * 0.3 + dvec * el * 0.7,
                            base_c + el * dvec, base_c - nvec * ew * 0.3 + dvec * el * 0.7,
                            base_c - nvec * ew])
            ears.append((FAR_EAR if far else EAR, tri))
    elif gen.ears == "folded":  # rose/button ears: rounded flaps folded forward
        for phi, far in ((-math.pi / 2 + 0.5, False), (-math.pi / 2 - 0.45, True)):
            phi = phi + tilt
            base_c = hc + 0.82 * hr * np.array([math.cos(phi), math.sin(phi)])
            el = 0.75 * gen.ear_len * hr * rng.uniform(0.9, 1.1)
            ew = 0.8 * gen.ear_w * hr
            ang = rng.uniform(-0.1, 0.5) + tilt
            c = base_c + 0.45 * el * np.array([math.cos(ang), math.sin(ang)]) + np.array([0, -0.15 * el])
            ears.append((FAR_EAR if far else EAR, ellipse(c[0], c[1], 0.6 * el, 0.42 * ew, ang, n=20)))
    else:  # floppy: long ellipses hanging at the side/back of the head
        el = 0.55 * gen.ear_len * hr * rng.uniform(0.9, 1.1)
        ew = 0.42 * gen.ear_w * hr
        swing = rng.normal(0.15, 0.12)
        far_c = hc + np.array([0.15 * hr, -0.55 * hr + el * 0.8])
        ears.append((FAR_EAR, ellipse(far_c[0], far_c[1], ew * 0.8, el * 0.8, swing, n=20, wobble=wob, rng=rng)))
        near_c = hc + np.array([-0.25 * hr, -0.45 * hr + el])
        near.append((EAR, ellipse(near_c[0], near_c[1], ew, el, swing, n=24, wobble=wob, rng=rng)))
    return ears, near


def _head(gen, rng, a, b, wob):
    """Neck, ears, head and muzzle; and the landmarks (head centre, eye, nose ...)."""
    hr = gen.head_r * rng.uniform(0.94, 1.06)
    hc = np.array([a * 0.92 + 0.25 * hr, -b * 0.85 - 0.55 * hr - rng.uniform(-0.03, 0.08)])
    neck_base = np.array([a * 0.62, -b * 0.3])
    mid, d = (hc + neck_base) / 2, hc - neck_base
    parts = [(BODY, ellipse(mid[0], mid[1], np.hypot(*d) / 2 + hr * 0.35, hr * 0.72,
                            math.atan2(d[1], d[0]), n=28, wobble=wob, rng=rng))]
    tilt = rng.normal(0, 0.08)
    ears, near_ear = _ears(gen, rng, hc, hr, tilt, wob)
    parts += ears
    parts.append((HEAD, ellipse(hc[0], hc[1], hr * rng.uniform(0.98, 1.06), hr * rng.uniform(0.92, 1.0),
                                tilt, n=36, wobble=wob * 0.8, rng=rng)))
    ml = gen.muzzle
    mc = hc + np.array([hr * 0.72 + ml * 0.45, hr * 0.28])
    parts.append((MUZZLE, ellipse(mc[0], mc[1], ml * 0.5 + hr * 0.32, hr * 0.42, 0.12 + tilt, n=24)))
    info = {"head_c": hc, "head_r": hr, "muzzle_c": mc, "muzzle_l": ml,
            "eye": hc + np.array([hr * (0.38 + 0.12 * (ml < 0.05)), -hr * 0.12]),
            "nose": mc + np.array([ml * 0.5 + hr * 0.3, -hr * 0.12])}
    return parts + near_ear, info


def _tail_elevation(gen, rng, resting: bool) -> float:
    """Curled tails stand up in every pose; others point back and up, or, on a resting pet,
    wrap forward along the ground (elevation near pi: pointing to +x)."""
    if gen.tail_curl >= 2:
        return rng.uniform(0.9, 1.3) if not resting else rng.uniform(0.6, 1.0)
    return rng.uniform(0.25, 0.9) if not resting else math.pi + rng.uniform(-0.35, 0.05)


def _sitting(gen, rng, a, b, lw, body, head, info):
    """Front raised about the rump; front legs straight down, hind legs folded."""
    theta, pivot = -rng.uniform(0.45, 0.8), np.array([-a * 0.7, b * 0.55])
    body = [(lab, _rotate_about(p, pivot, theta)) for lab, p in body]
    head = [(lab, _rotate_about(p, pivot, theta)) for lab, p in head]
    for key in ("head_c", "muzzle_c", "eye", "nose"):
        info[key] = _rotate_about(info[key], pivot, theta)
    ground = float(body[0][1][:, 1].max())
    front = []
    for hx, label in ((0.30 * 0.95 - 0.04, FAR_LEG), (0.36 * 0.95, NEAR_LEG)):
        top = _rotate_about(np.array([hx, b * 0.35]), pivot, theta)
        front.append(_leg(top, np.array([top[0] + rng.normal(0, 0.03), ground]), lw, label))
    hind = _haunches(_rotate_about(np.array([-0.28, b * 0.25]), pivot, theta), ground, lw, b, rng)
    tail = _tail(gen, rng, pivot + np.array([0.0, b * 0.35]), _tail_elevation(gen, rng, True))
    return front[0] + tail + hind[:3] + body + hind[3:] + front[1] + head, ground


def _lying(gen, rng, a, b, lw, leg_len, body, head):
    """Belly on the ground: front legs stretched forward, hind legs folded."""
    ground = b * 1.05
    front = []
    for hx, label in ((0.30 * 0.95 - 0.04, FAR_LEG), (0.36 * 0.95, NEAR_LEG)):
        top = np.array([hx, b * 0.45])
        reach = 0.15 + leg_len * rng.uniform(0.4, 0.7)
        front.append(_leg(top, np.array([top[0] + reach, ground - lw * 0.3]), lw, label))
    hind = _haunches(np.array([-0.28, b * 0.3]), ground, lw, b, rng)
    tail = _tail(gen, rng, np.array([-a * 0.7, b * 0.6]), _tail_elevation(gen, rng, True))
    return front[0] + tail + hind[:3] + body + hind[3:] + front[1] + head, ground


def build_parts(gen: Genome, rng: np.random.Generator, pose: str = "stand") -> tuple[list, dict]:
    """Parts ``[(label, polygon)]`` of one pet in ``pose``, in drawing order, and landmarks.

    ``info`` holds ``b`` (body half-height), ``leg_len`` (legs' reach below the body),
    ``head_c``, ``head_r``, ``muzzle_c``, ``eye``, ``nose`` for the coat and the face.
    """
    if pose not in POSES:
        raise ValueError(f"pose {pose!r}; allowed: {', '.join(POSES)}")
    wob = 0.05 * gen.fluff
    a, b = 0.5, gen.body_h / 2 * rng.uniform(0.94, 1.06)
    leg_len = gen.leg_len * rng.uniform(0.92, 1.08)
    lw = gen.leg_w * (1.0 + 0.4 * gen.fluff)
    body = [(BODY, ellipse(0.0, 0.0, a, b, rng.normal(0, 0.03), n=56, wobble=wob, rng=rng))]
    head, info = _head(gen, rng, a, b, wob)
    if pose == "sit":
        parts, ground = _sitting(gen, rng, a, b, lw, body, head, info)
    elif pose == "lie":
        parts, ground = _lying(gen, rng, a, b, lw, leg_len, body, head)
    else:
        legs, feet = _standing_legs(b, leg_len, lw, rng)
        tail = _tail(gen, rng, np.array([-a * 0.9, -b * 0.35]), _tail_elevation(gen, rng, False))
        parts, ground = legs + tail + body + head, max(float(f[1]) for f in feet)
    info.update(b=b, leg_len=max(ground - b * 0.9, 0.05), pose=pose)
    return parts, info
