"""The stages Ray Data maps over batches: decode, heatmaps, CPU labelers, SAM2, write.

Column names: ``image``, ``image_id``, the one form of labels (``wsss.labelers.classwise``:
``labels`` and ``classes`` N x K, ``given_box`` N x K x 4), ``error`` (decode failure reason,
'' if none), ``todo`` (the ids of the mask sets that miss the row), ``heatmap__<method>-<target>``
(one per distinct heatmap, N x K x H x W), and per labeler id ``mask__<id>``, ``box__<id>``
(N x K x 4), ``prompts__<id>``, ``error__<id>``. Each stage also adds ``seconds__<stage>``: its
busy time spread over the batch's rows, for the summary.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import numpy as np

from wsss.data.arrays import resize_image, scale_box
from wsss.data.decode import DecodeError, decode_image
from wsss.labelers.base import HeatmapRef, LabelerContext, cut_heatmaps
from wsss.labelers.heatmap import share_heatmaps
from wsss.labelers.registry import get_labeler_class
from wsss.masks.fitting import load_fitted
from wsss.masks.specs import SourceRef, StageSpec
from wsss.masks.store import MaskSetWriter

FAULT_ENV = "WSSS_INJECT_FAULT"  # testing hook: "<stage>:<marker file>" kills one attempt
TODO_SEPARATOR = "\n"  # between the set ids of a row's ``todo`` column (the sets that miss it)


def task_threads() -> None:
    """OpenCV's threads to the task's CPUs. Ray sets OMP_NUM_THREADS to a task's ``num_cpus``,
    which OpenCV does not read: every 1-CPU task would run cv2 on all the cores, so N tasks
    oversubscribe them N times (GrabCut ran 8% slower per image with two tasks on two cores)."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import cv2

        if cv2.getNumThreads() != int(threads):
            cv2.setNumThreads(int(threads))


def maybe_inject_fault(stage: str, fault: str | None) -> None:
    """Kill this worker once for ``stage`` (the first attempt creates the marker file)."""
    if not fault:
        return
    wanted, marker = fault.split(":", 1)
    if wanted != stage:
        return
    try:
        handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(handle)
    os._exit(1)  # like a node or worker dying mid-task, not a Python exception


def _timed(batch: dict[str, np.ndarray], stage: str, started: float) -> dict[str, np.ndarray]:
    rows = len(batch["image_id"])
    batch[f"seconds__{stage}"] = np.full(rows, (time.perf_counter() - started) / max(rows, 1))
    return batch


def decode_stage(batch: dict[str, np.ndarray], size: int, fault: str | None = None,
                 originals: bool = False) -> dict[str, np.ndarray]:
    """image_path -> image (size x size RGB); failures get a black image and a reason. With
    ``originals`` the decoded images also travel at their own sizes (``original``, for SAM2)."""
    started = time.perf_counter()
    task_threads()
    maybe_inject_fault("decode", fault)
    images = np.zeros((len(batch["image_id"]), size, size, 3), np.uint8)
    errors, kept = [], []
    for row, path in enumerate(batch["image_path"]):
        try:
            decoded = decode_image(str(path))
            images[row] = resize_image(decoded, size)
            errors.append("")
        except DecodeError as error:
            decoded = images[row]
            errors.append(error.reason)
        kept.append(decoded)
    labels = np.stack([np.asarray(row, np.int64) for row in batch["labels"]])
    out = {"image_id": batch["image_id"], "image": images, "labels": labels,
           "classes": np.stack([np.asarray(row, np.int64) for row in batch["classes"]]),
           "given_box": _class_boxes(batch, kept, errors, size, labels.shape[1]),
           "error": np.asarray(errors, dtype=object)}
    if "todo" in batch:
        out["todo"] = batch["todo"]
    if originals:
        out["original"] = _ragged(kept)
    return _timed(out, "decode", started)


def _class_boxes(batch: dict[str, np.ndarray], decoded: list[np.ndarray], errors: list[str], size: int,
                 width: int) -> np.ndarray:
    """N x K x 4 boxes the data gives per entry (``boxes``, flattened K x 4 in each image's own
    pixels) on the working image; -1s where it gives none (and for images that failed)."""
    boxes = np.full((len(decoded), width, 4), -1, np.int32)
    for row, image in enumerate(decoded):
        if errors[row]:
            continue
        given = np.asarray(batch["boxes"][row], np.float64).reshape(-1, 4)[:width]
        for k, box in enumerate(given):
            boxes[row, k] = scale_box(box, image.shape, size)
    return boxes


def _ragged(images: list[np.ndarray]) -> np.ndarray:
    """An object column of images of any sizes (Ray Data stores it as a variable-shaped tensor)."""
    column = np.empty(len(images), dtype=object)
    column[:] = images
    return column


def source_masks(batch: dict[str, np.ndarray], sources: tuple[SourceRef, ...], rows: np.ndarray) -> np.ndarray:
    """N x K x H x W uint8 masks of a labeler's sources for ``rows``: mask columns as they are,
    heatmap columns cut with the source set's own threshold (as reading that set would)."""
    stacked = []
    for source in sources:
        values = batch[source.column][rows]
        if source.cut is not None:
            values = cut_heatmaps(values, batch["classes"][rows], source.cut)
        stacked.append(np.asarray(values, np.uint8))
    return np.stack(stacked, axis=1)


def usable_rows(batch: dict[str, np.ndarray], sources: tuple[SourceRef, ...] | None) -> np.ndarray:
    """Rows that decoded and whose every source made a mask (a source's failure is its reader's)."""
    ok = batch["error"] == ""
    for source in sources or ():
        errors = batch.get(f"error__{source.id}")
        if errors is not None:
            ok &= errors == ""
    return np.flatnonzero(ok)


def _visible(batch: dict[str, np.ndarray], rows: np.ndarray, heatmap_column: str | None,
             sources: tuple[SourceRef, ...] | None = None) -> dict:
    visible = {"image": batch["image"][rows], "labels": batch["labels"][rows],
               "classes": batch["classes"][rows], "image_id": batch["image_id"][rows]}
    if sources:
        visible["source_masks"] = source_masks(batch, sources, rows)
    if "original" in batch:
        visible["original"] = [batch["original"][row] for row in rows]
    if "given_box" in batch:
        visible["given_box"] = batch["given_box"][rows]
    if heatmap_column is not None:
        visible["heatmap"] = batch[heatmap_column][rows].astype(np.float32)
    return visible


def run_labeler(labeler: Any, batch: dict[str, np.ndarray], key: str,
                heatmap_column: str | None = None, sources: tuple[SourceRef, ...] | None = None) -> None:
    """Run one labeler on the batch's good rows, adding its columns; isolate failing images.

    Adds ``mask__<key>``, ``error__<key>`` and one column per by-product the labeler returns
    (``box``, ``prompts``, or ``heatmap`` for the CAM family).
    """
    count = len(batch["image_id"])
    batch[f"mask__{key}"] = np.zeros((count, *batch["image"].shape[1:3]), np.uint8)
    errors = np.asarray([""] * count, dtype=object)
    good = usable_rows(batch, sources)
    for row in np.setdiff1d(np.flatnonzero(batch["error"] == ""), good):
        errors[row] = f"{labeler.name}: a source set has no mask for this image"
    try:
        results = [(good, labeler(_visible(batch, good, heatmap_column, sources)))] if len(good) else []
    except Exception:  # noqa: BLE001 - retry image by image to find the bad one
        results = []
        for row in good:
            try:
                one = np.array([row])
                results.append((one, labeler(_visible(batch, one, heatmap_column, sources))))
            except Exception as error:  # noqa: BLE001 - quarantined with its reason
                errors[row] = f"{labeler.name}: {type(error).__name__}: {error}"
    for rows, output in results:
        for name, values in output.items():
            column = f"{name}__{key}"
            if column not in batch:
                fill = -1 if name in ("box", "prompts") else 0
                dtype = np.float16 if name == "heatmap" else values.dtype
                batch[column] = np.full((count, *values.shape[1:]), fill, dtype=dtype)
            batch[column][rows] = values
    batch[f"error__{key}"] = errors


class HeatmapOnly:
    """A heatmap labeler as the heatmap stage uses it: maps only, as float16. Masks are
    thresholded when the set is read, so computing and checking them here is waste (at
    64 x 256 px the mask check took 30 ms a batch, the classifier pass on an H100 12 ms), and
    torch casts to float16 ~4x faster than numpy (numpy's cast took 42 ms a batch there)."""

    def __init__(self, labeler: Any):
        self.labeler, self.name = labeler, labeler.name

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        maps = self.labeler.class_heatmaps(batch["image"], batch["labels"])  # one map per entry
        return {"heatmap": torch.from_numpy(np.ascontiguousarray(maps)).half().numpy()}


def actor_device(configured: str) -> str:
    """The device of a model stage: in a Ray actor, CUDA when Ray gave it (a share of) a GPU
    and CUDA is there, else the CPU (a pool planned for GPUs still runs where none is usable);
    called in-process (tests, the benchmark), the configured one."""
    import ray
    import torch

    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return configured
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


class HeatmapStage:
    """One actor per GPU (or CPU slot): builds every needed heatmap labeler once, eagerly.

    The labelers share one classifier and one fast CAM pass per batch (``share_heatmaps``):
    the first labeler's call computes every heatmap kind, the others read it.
    """

    def __init__(self, refs: list[dict], context: LabelerContext, fault: str | None = None):
        self.fault = fault
        context = replace(context, device=actor_device(context.device))
        self.labelers = {}
        for ref_dict in refs:
            ref = HeatmapRef(**ref_dict)
            self.labelers[ref.key()] = get_labeler_class(ref.method)(ref.labeler_params(), context)
        share_heatmaps(list(self.labelers.values()))  # loads the classifier: a bad one fails here

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        maybe_inject_fault("heatmap", self.fault)
        batch = dict(batch)
        for key, labeler in self.labelers.items():
            run_labeler(HeatmapOnly(labeler), batch, key)
            batch.pop(f"mask__{key}")
            shape = batch["labels"].shape + batch["image"].shape[1:3]
            batch.setdefault(f"heatmap__{key}", np.zeros(shape, np.float16))
            failed = batch.pop(f"error__{key}")
            batch["error"] = np.where(failed != "", failed, batch["error"])
        return _timed(batch, "heatmap", started)


_CPU_LABELERS: dict[str, Any] = {}  # per worker process: labelers are cheap but not free


def _cpu_labeler(spec: StageSpec, context: LabelerContext) -> Any:
    cache_key = f"{spec.id}:{spec.fingerprint}"
    if cache_key not in _CPU_LABELERS:
        labeler = get_labeler_class(spec.name)(spec.params, context)
        _CPU_LABELERS[cache_key] = load_fitted(labeler, spec.uri, spec.fingerprint)
    return _CPU_LABELERS[cache_key]


def _grabcut_donor(spec: StageSpec, done: list[StageSpec]) -> StageSpec | None:
    """A grabcut spec already run in this stage whose params are this mix spec's GrabCut part."""
    if spec.name != "mix":
        return None
    for other in done:
        if other.name == "grabcut" and other.heatmap_column == spec.heatmap_column \
                and all(spec.params.get(k) == v for k, v in other.params.items()):
            return other
    return None


def cpu_stage(batch: dict[str, np.ndarray], specs: list[StageSpec], context: LabelerContext,
              fault: str | None = None) -> dict[str, np.ndarray]:
    """Box, GrabCut, mix and baselines for every configured CPU labeler, on the batch's rows.

    A mix set whose GrabCut params match a grabcut set's reuses that set's GrabCut masks,
    so GrabCut runs once per image for both (grabcut specs are ordered first).
    """
    started = time.perf_counter()
    task_threads()
    maybe_inject_fault("cpu", fault)
    batch = dict(batch)
    done: list[StageSpec] = []
    for spec in sorted(specs, key=lambda s: s.name != "grabcut"):
        labeler = _cpu_labeler(spec, context)
        donor = _grabcut_donor(spec, done)
        if donor is None:
            run_labeler(labeler, batch, spec.id, spec.heatmap_column, spec.sources)
        else:
            mix_from_donor(labeler, batch, spec.id, donor.id, spec.heatmap_column)
        done.append(spec)
    for column in [c for c in batch if c.startswith("class_masks__")]:
        del batch[column]  # GrabCut's per-class masks serve the mix above; nothing downstream reads them
    return _timed(batch, "cpu", started)


def mix_from_donor(labeler: Any, batch: dict[str, np.ndarray], key: str, donor: str,
                   heatmap_column: str | None = None) -> None:
    """The mix columns from the GrabCut set ``donor`` of this batch, image by image, so that an
    image SLIC fails on is quarantined with its reason and the rest of the batch is kept: the
    donor's per-class masks, merged as the mix merges them."""
    boxes, class_masks = batch[f"box__{donor}"], batch[f"class_masks__{donor}"]
    errors = batch[f"error__{donor}"].copy()
    masks = np.zeros_like(batch[f"mask__{donor}"])
    for row in np.flatnonzero((batch["error"] == "") & (errors == "")):
        try:
            one = {"labels": batch["labels"][row:row + 1], "classes": batch["classes"][row:row + 1]}
            if heatmap_column is not None:
                one["heatmap"] = batch[heatmap_column][row:row + 1].astype(np.float32)
            mixed = labeler.mix_classes(batch["image"][row:row + 1], boxes[row:row + 1], one["labels"],
                                        class_masks[row:row + 1])
            masks[row] = labeler.paint_classes(one, mixed, boxes[row:row + 1])[0]
        except Exception as error:  # noqa: BLE001 - quarantined with its reason
            errors[row] = f"{labeler.name}: {type(error).__name__}: {error}"
    batch[f"mask__{key}"], batch[f"box__{key}"], batch[f"error__{key}"] = masks, boxes, errors


class Sam2Stage:
    """One actor per GPU (or CPU slot) running every SAM2 labeler; one embedding per image.

    The labelers share an engine (``wsss.labelers.sam2_engine``) that keeps the last batch's
    image embedding, so prompts of every kind reuse it instead of re-encoding.
    """

    def __init__(self, specs: list[StageSpec], context: LabelerContext, fault: str | None = None):
        self.fault = fault
        self.specs = specs
        context = replace(context, device=actor_device(context.device))
        self.labelers = [get_labeler_class(spec.name)(spec.params, context) for spec in specs]
        for labeler in self.labelers:
            _ = labeler.engine.predictor  # load weights now: a missing checkpoint fails the job here

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        maybe_inject_fault("sam2", self.fault)
        batch = dict(batch)
        for spec, labeler in zip(self.specs, self.labelers):
            run_labeler(labeler, batch, spec.id, spec.heatmap_column, spec.sources)
        return _timed(batch, "sam2", started)


def write_stage(batch: dict[str, np.ndarray], plans: list[StageSpec], one_class: bool,
                fault: str | None = None) -> dict[str, np.ndarray]:
    """Write each labeler's outputs for the rows it still misses (the row's ``todo``); return one
    status row each, with the digests of the files it wrote (``files``: see ``encode_digests``).
    ``one_class``: the images carry one class each, stored in the one-class layout (``_write_row``)."""
    started = time.perf_counter()
    task_threads()
    maybe_inject_fault("write", fault)
    ids, keys, statuses, reasons, files = [], [], [], [], []
    todo = [set(str(sets).split(TODO_SEPARATOR)) for sets in batch["todo"]]
    for plan in plans:
        writer = MaskSetWriter(plan.uri)
        for row, image_id in enumerate(batch["image_id"]):
            reason = batch["error"][row] or batch.get(f"error__{plan.id}", batch["error"])[row]
            status = "quarantined" if reason else ("written" if plan.id in todo[row] else "skipped")
            written = _write_row(writer, plan, batch, row, str(image_id), one_class) if status == "written" else {}
            ids.append(str(image_id)), keys.append(plan.id), statuses.append(status)
            reasons.append(str(reason)), files.append(encode_digests(written))
    rows = len(ids)
    out = {"image_id": np.asarray(ids, dtype=object), "labeler_id": np.asarray(keys, dtype=object),
           "status": np.asarray(statuses, dtype=object), "reason": np.asarray(reasons, dtype=object),
           "files": np.asarray(files, dtype=object)}
    for column in [c for c in batch if c.startswith("seconds__")]:
        out[column] = np.repeat(batch[column], len(plans)) / max(len(plans), 1)
    out["seconds__write"] = np.full(rows, (time.perf_counter() - started) / max(rows, 1))
    return out


def encode_digests(written: dict[str, str]) -> str:
    """``{relative path: digest}`` of one row's files as its status row carries them (Arrow has
    no map column that every block agrees on): ``path=digest`` lines; '' for none."""
    return "\n".join(f"{relative}={digest}" for relative, digest in written.items())


def decode_digests(text: str) -> dict[str, str]:
    """``encode_digests``'s text back; a digest is hex, so the last '=' splits each line."""
    return dict(line.rpartition("=")[::2] for line in text.split("\n") if line)


def _write_row(writer: Any, plan: StageSpec, batch: dict[str, np.ndarray], row: int, image_id: str,
               one_class: bool) -> dict[str, str]:
    """Store one row's output for one set; {relative path: digest} of the files written. The
    store keeps one class per image in its own layout (the map alone, a ``box``, the
    ``prompts``) and images of several classes with the classes their maps and boxes are of."""
    if plan.kind == "heatmaps":
        heatmap = batch[plan.heatmap_column][row]
        if one_class:
            return writer.write_heatmap(image_id, heatmap[0])
        present = [int(k) for k in batch["classes"][row] if k >= 0]
        return writer.write_heatmap(image_id, heatmap[:len(present)], {"labels": present})
    extras = {}
    box = batch.get(f"box__{plan.id}")
    if box is not None and one_class and box[row][0][0] >= 0:
        extras["box"] = [int(v) for v in box[row][0]]
    elif box is not None and not one_class:
        classes = batch["classes"][row]
        found = {str(int(k)): [int(v) for v in b] for k, b in zip(classes, box[row]) if k >= 0 and b[0] >= 0}
        if found:
            extras["class_boxes"] = found
    prompts = batch.get(f"prompts__{plan.id}")
    if prompts is not None and one_class:
        extras["prompts"] = [p for p in np.asarray(prompts[row][0], np.float64).round(2).tolist() if p[-1] >= 0]
    return writer.write_mask(image_id, batch[f"mask__{plan.id}"][row], extras or None)
