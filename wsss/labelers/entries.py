"""The one form of a labeler's batch, and the short form one-class callers give.

The one form (every task): ``labels`` N x K (the class whose heatmap an entry takes, -1
padded), ``classes`` N x K (the pixel class it paints, value k + 1), ``heatmap`` N x K x H x W
and ``given_box`` N x K x 4; outputs with an entry per class (``ENTRY_OUTPUTS``) are N x K x ...
One class per image is K = 1 painting class 0 (value 1) with the image's class as its label.
The short form is what callers outside the pipeline give for one class per image: ``label`` N,
``heatmap`` N x H x W, ``given_box`` N x 4, and they get N x 4 boxes and N x H x W maps back.
``Labeler.__call__`` converts at its door, so every ``label_batch`` reads the one form, and a
labeler that makes one-class masks (``per_class = False``) reads the short form.
"""

from __future__ import annotations

import numpy as np

ENTRY_OUTPUTS = ("heatmap", "box", "prompts", "class_masks")  # outputs with one entry per class


def padded(rows: list[tuple[int, ...]] | list[list[int]], width: int | None = None) -> np.ndarray:
    """N x K int64 of ragged rows of class indices, -1 padded to ``width`` (default the longest)."""
    width = max((len(row) for row in rows), default=0) if width is None else width
    return np.array([list(row)[:width] + [-1] * (width - len(row)) for row in rows], np.int64).reshape(-1, width)


def as_entries(batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """The batch in the one form labelers read, and whether it came in the short form.

    The one form: ``labels`` N x K (the classes whose maps are taken, -1 padded), ``classes``
    N x K (the pixel class each entry paints, value k + 1), ``heatmap`` N x K x H x W and
    ``given_box`` N x K x 4. The short form, what callers outside the pipeline give for one
    class per image (``label`` N, ``heatmap`` N x H x W, ``given_box`` N x 4), becomes K = 1
    painting class 0 (value 1); a batch with ``labels`` and no ``classes`` paints its labels.
    ``Labeler.__call__`` refuses a batch that names no class to a labeler that takes a class's map.
    """
    out = dict(batch)
    if "labels" in batch:
        out["labels"] = np.asarray(batch["labels"], np.int64)
        out["classes"] = np.asarray(batch.get("classes", out["labels"]), np.int64)
        return out, False
    count = len(batch["image"])  # a batch that names no class (a CRF, an agreement) is one class
    out["labels"] = np.asarray(batch.get("label", np.zeros(count)), np.int64).reshape(-1, 1)
    out["classes"] = np.zeros_like(out["labels"])
    if "heatmap" in batch:
        out["heatmap"] = np.asarray(batch["heatmap"])[:, None]
    if "given_box" in batch:
        out["given_box"] = np.asarray(batch["given_box"]).reshape(-1, 1, 4)
    return out, True


def short_form(output: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A labeler's outputs for a short-form batch: its one entry per image taken out of every
    per-class output (``box`` N x 4, ``heatmap`` N x H x W ...)."""
    return {name: values[:, 0] if name in ENTRY_OUTPUTS else values for name, values in output.items()}


def one_class_view(batch: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The short form of a one-class batch, for a labeler that makes one-class masks; a clear
    error where images carry several classes."""
    classes = batch["classes"]
    if classes.shape[1] != 1 or (classes[:, 0] != 0).any():
        raise ValueError(f"labeler {name!r} makes one-class masks; these images carry several classes")
    view = {key: value for key, value in batch.items() if key not in ("labels", "classes")}
    view["label"] = batch["labels"][:, 0]
    for key in ("heatmap", "given_box"):
        if key in batch:
            view[key] = np.asarray(batch[key])[:, 0]
    return view


def entry_outputs(output: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A one-class labeler's outputs in the one form (``short_form`` undone)."""
    return {name: values[:, None] if name in ENTRY_OUTPUTS else values for name, values in output.items()}
