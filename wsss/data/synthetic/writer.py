"""Writing a synthetic dataset in the Oxford-IIIT Pet layout: lists, images, trimaps, XMLs.

Image ``i`` goes to breed ``i % 37``; within a breed, images (1, 2), (3, 4) ... are pairs, one
of each pair in trainval and one in test. Head boxes (XMLs) exist for trainval images only,
minus a seeded ``missing_box_fraction``. Every file is written under a temporary name and
renamed into place; images are rendered in chunks, optionally in worker processes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from wsss.data.breeds import BREEDS, NUM_BREEDS, breed_index_within_species, species_of
from wsss.data.synthetic.render import render_image
from wsss.storage import write_bytes

LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#ID: 1:37 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-25:Cat 1:12:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)

JPEG_QUALITY = 90


def trimap_from_mask(mask: np.ndarray, size: int | None = None) -> np.ndarray:
    """Oxford-style trimap (1 pet, 2 background, 3 border band straddling the outline)."""
    S = size if size is not None else max(mask.shape)
    width = max(2, round(S / 128.0) + 1)  # 2 px at 128, 3 at 256, 5 at 512
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


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` whole or not at all (``storage.write_bytes``)."""
    write_bytes(path, data)


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
    n_missing = round(missing_box_fraction * len(tv))
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


def _prepare_dirs(root: Path) -> None:
    for d in ("images", "annotations", "annotations/trimaps", "annotations/xmls"):
        (root / d).mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(root / d):  # temporaries left by a killed run
            if entry.name.startswith(".") and ".tmp" in entry.name and entry.is_file():
                os.unlink(entry.path)


def _write_lists(root: Path, rows, trainval) -> None:
    """annotations/list.txt (with the header), trainval.txt and test.txt, sorted by breed."""
    order = sorted(rows, key=lambda r: (r[2], r[3]))

    def line(row):
        _, image_id, c, _ = row
        b = BREEDS[c]
        return f"{image_id} {c + 1} {1 if species_of(b) == 'cat' else 2} {breed_index_within_species(b)}\n"

    annotations = root / "annotations"
    _write_atomic(annotations / "list.txt", (LIST_HEADER + "".join(line(r) for r in order)).encode())
    _write_atomic(annotations / "trainval.txt", "".join(line(r) for r in order if r[0] in trainval).encode())
    _write_atomic(annotations / "test.txt", "".join(line(r) for r in order if r[0] not in trainval).encode())


def _render_all(jobs, workers: int, progress: bool, total: int, t0: float) -> int:
    """Run the render jobs (in ``workers`` processes when > 1); the number of XMLs written."""
    done = boxes = 0
    next_report = 0.1
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn" if sys.platform == "darwin" else None)
        with ctx.Pool(workers) as pool:
            for n, nb in pool.imap_unordered(_work, jobs):
                done, boxes = done + n, boxes + nb
                next_report = _report(progress, done, total, t0, next_report)
    else:
        for job in jobs:
            n, nb = _work(job)
            done, boxes = done + n, boxes + nb
            next_report = _report(progress, done, total, t0, next_report)
    return boxes


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
    _prepare_dirs(root)
    rows, trainval, missing = _plan(images, seed, missing_box_fraction)
    planned = [(i, image_id, i in trainval and i not in missing) for i, image_id, _, _ in rows]
    chunk = max(1, min(64, -(-images // 20)))  # ~20 chunks: progress every ~10 %
    jobs = [(str(root), seed, size, planned[k:k + chunk]) for k in range(0, len(planned), chunk)]
    boxes = _render_all(jobs, workers, progress, images, t0)
    _write_lists(root, rows, trainval)  # last: a killed run leaves no lists, so it is redone
    return {"root": str(root), "images": images, "trainval": len(trainval),
            "test": images - len(trainval), "boxes": boxes,
            "seconds": round(time.perf_counter() - t0, 3), "size": size, "seed": seed}


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
