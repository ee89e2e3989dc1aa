"""Breed genomes: the fixed look of each of the 37 breeds (colours, coat pattern, build).

A genome depends on the class index only, never on the dataset seed, so a breed looks the
same in every synthetic dataset. Cats share a family look (pointed ears, slim, long tails,
flat faces), dogs another (muzzles, bulkier, floppy or folded ears), so species is easier
to tell than breed; several breeds share colours (black, white, tan ...) and differ only in
shape or pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsss.data.breeds import BREEDS, NUM_BREEDS, species_of


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
    def j(x: float, r: float = 0.06) -> float:
        return float(x * (1.0 + g.uniform(-r, r)))

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


def all_genomes() -> list[Genome]:
    """Every breed's genome, in class-index order (computed once)."""
    global _GENOMES
    if _GENOMES is None:
        _GENOMES = [breed_genome(i) for i in range(NUM_BREEDS)]
    return _GENOMES
