"""Figure grids in the study's style: one row per image, one titled panel per column."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wsss.storage import writing

GREEN, RED = np.array([0, 200, 0]), np.array([220, 0, 0])


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """{0, 1, 255} mask -> RGB: foreground white, background black, ignore grey."""
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    rgb[mask == 1] = 255
    rgb[mask == 255] = 128
    return rgb


def class_map_to_rgb(mask: np.ndarray) -> np.ndarray:
    """Class map (0 background, k class, 255 ignore) -> RGB: background black, ignore grey,
    each class its own colour from a fixed palette (the same class, the same colour)."""
    import matplotlib

    palette = (np.asarray(matplotlib.colormaps["tab10"].colors) * 255).astype(np.uint8)
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    classes = (mask > 0) & (mask != 255)
    rgb[classes] = palette[(mask[classes].astype(np.int64) - 1) % len(palette)]
    rgb[mask == 255] = 128
    return rgb


def heatmap_to_rgb(heatmap: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """Heatmap in [0, 1] -> jet colours, blended over ``image`` when given."""
    import cv2

    coloured = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    if image is None:
        return coloured
    return np.uint8(alpha * coloured + (1 - alpha) * image)


def overlay(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The study's overlay: ground truth in green, prediction in red, both where they agree."""
    out = image.astype(np.float32)
    for mask, colour in ((truth == 1, GREEN), (prediction == 1, RED)):
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return np.uint8(np.clip(out, 0, 255))


def save_grid(rows: list[list[np.ndarray]], titles: list[str], path: str | os.PathLike,
              row_labels: list[str] | None = None, panel_inches: float = 2.0,
              title: str | None = None) -> Path:
    """Write a grid of RGB panels (rows x columns) with column titles (and an optional figure
    title) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count, columns = len(rows), len(titles)
    figure, axes = plt.subplots(count, columns, figsize=(panel_inches * columns, panel_inches * count),
                                squeeze=False)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            axis = axes[r][c]
            axis.imshow(panel, interpolation="nearest")
            axis.set_xticks([]), axis.set_yticks([])
            if r == 0:
                axis.set_title(titles[c], fontsize=10)
            if c == 0 and row_labels:
                axis.set_ylabel(row_labels[r], fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
        figure.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (panel_inches * count)))  # room for it
    else:
        figure.tight_layout()
    with writing(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return Path(path)


def sample_ids(image_ids: list[str], count: int) -> list[str]:
    """A fixed, spread-out sample: the same ids for every method and every run."""
    import hashlib

    ranked = sorted(image_ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    return sorted(ranked[:count])
