"""``wsss data check``: decode every image and trimap of a root and report what is wrong."""

from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from wsss.data.decode import DecodeError, check_trimap, decode_image, record_class_truth, record_truth
from wsss.data.quarantine import Quarantine
from wsss.data.records import DatasetIndex, Record


def inspect_record(record: Record) -> str | None:
    """None when the image and its trimap are usable, else the reason they are not."""
    try:
        image = decode_image(record.image_path)
    except DecodeError as error:
        return error.reason
    if record.trimap_path is None:
        return None  # reported under missing_trimaps, the image itself is fine
    try:
        check_trimap(record_truth(record), image.shape, record.trimap_path)
    except DecodeError as error:
        return error.reason
    return None


def decode_all(records: list[Record], workers: int = 4, progress: bool = False) -> Quarantine:
    """Decode every record (threads: PIL releases the GIL) and quarantine the failures."""
    quarantine = Quarantine()
    step = max(1, len(records) // 10)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (record, reason) in enumerate(
            zip(records, pool.map(inspect_record, records)), start=1
        ):
            if reason is not None:
                quarantine.add(record.image_id, reason)
            if progress and (done % step == 0 or done == len(records)):
                print(f"checked {done}/{len(records)} images", file=sys.stderr, flush=True)
    return quarantine


def check_report(dataset: DatasetIndex, error_budget: float, progress: bool = False) -> dict:
    """The check report: counts, quarantine with reasons, missing annotations, and a verdict."""
    quarantine = Quarantine(list(dataset.quarantine.entries))
    quarantine.extend(decode_all(dataset.records, progress=progress))
    bad = quarantine.ids()
    usable = [r for r in dataset.records if r.image_id not in bad]
    total = len(dataset.records) + len(dataset.quarantine)
    allowed = quarantine.allowed(total, error_budget)
    splits = Counter(r.split for r in usable)
    problems = []
    if len(quarantine) > allowed:
        problems.append(f"{len(quarantine)} quarantined images exceed the error budget of {allowed}")
    if dataset.format == "oxford-pets" and len(dataset.missing_trimaps) > allowed:
        problems.append(f"{len(dataset.missing_trimaps)} missing trimaps exceed the budget of {allowed}")
    problems += [f"no usable images in split {name}" for name in ("train", "val", "test") if not splits[name]]
    per_class = dict(sorted(Counter(name for r in usable for name in
                                    ([dataset.classes[k] for k in r.labels] or [r.class_name])).items()))
    return {
        "root": dataset.root,
        "format": dataset.format,
        "task": dataset.task,
        "truth_background": truth_background(usable) if dataset.task != "binary" else None,
        "splits": {name: splits.get(name, 0) for name in ("train", "val", "test")},
        "classes": per_class,
        **({"breeds": per_class} if dataset.format == "oxford-pets" else {}),
        "with_boxes": sum(r.box is not None for r in usable),
        "skipped_files": sorted(dataset.skipped),
        "quarantine": quarantine.entries,
        "missing_trimaps": sorted(dataset.missing_trimaps),
        "missing_boxes": sorted(dataset.missing_boxes),
        "error_budget": {"fraction": error_budget, "allowed": allowed},
        "usable": not problems,
        "problems": problems,
    }


def truth_background(records: list[Record], most: int = 500) -> float | None:
    """The share of labelled ground-truth pixels that are background, over up to ``most``
    class-indexed masks: near 0 for scenes whose every pixel is one of the image's classes
    (set data.background: false); shown to the user, never read by a run."""
    background = labelled = 0
    for record in [r for r in records if r.trimap_path][:most]:
        try:
            truth = record_class_truth(record)
        except Exception:  # noqa: BLE001 - a bad truth file is the quarantine's business, not this share's
            continue
        valid = truth != 255
        background, labelled = background + int((truth[valid] == 0).sum()), labelled + int(valid.sum())
    return background / labelled if labelled else None


def format_report(report: dict) -> str:
    """Human-readable form of ``check_report``."""
    task = "" if report.get("task", "binary") == "binary" else f", {report['task']}: several classes per image"
    lines = [f"root: {report['root']} ({report['format']}{task})"]
    lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in report["splits"].items()))
    share = report.get("truth_background")
    if share is not None:
        hint = ("every labelled pixel is one of the image's classes: set data.background: false"
                if share < 0.01 else "objects on a background: data.background: true (the default)")
        lines.append(f"background in the ground truth: {100 * share:.1f}% of labelled pixels ({hint})")
    word = "breeds" if report["format"] == "oxford-pets" else "classes"
    lines.append(f"{word}: {len(report['classes'])} ("
                 + ", ".join(f"{k} {v}" for k, v in report["classes"].items()) + ")")
    lines.append(f"quarantined: {len(report['quarantine'])} "
                 f"(budget {report['error_budget']['allowed']})")
    lines += [f"  {entry['image_id']}: {entry['reason']}" for entry in report["quarantine"]]
    truth = "missing trimaps" if report["format"] == "oxford-pets" else "without ground truth (scoring only)"
    lines.append(f"{truth}: {len(report['missing_trimaps'])}"
                 + (f" ({', '.join(report['missing_trimaps'][:20])})" if report["missing_trimaps"] else ""))
    if report["format"] == "oxford-pets":
        lines.append(f"missing head boxes: {len(report['missing_boxes'])} (the study does not use them)")
    else:
        lines.append(f"with a given box: {report['with_boxes']}")
    if report["skipped_files"]:
        lines.append(f"skipped (not images): {len(report['skipped_files'])} "
                     f"({', '.join(report['skipped_files'][:10])})")
    lines.append("verdict: usable" if report["usable"] else "verdict: NOT usable")
    lines += [f"  {problem}" for problem in report["problems"]]
    return "\n".join(lines)
