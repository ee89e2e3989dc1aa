"""Exchange formats, one module each with its reader and its writer: ``coco``, ``labelstudio``, ``png``.

A shared leaf: the modules speak class maps (uint8, 0 background, k + 1 class k, 255 ignore) and
boolean regions at an image's own size, and know nothing of mask sets or studies. Ground truth
(``wsss.data.coco``), exports (``wsss.masks.export``) and reviews (``wsss.masks.reviewed``) read
and write through them, so a polygon is rasterised the same way (pycocotools) wherever it
comes from.
"""


class EntryError(ValueError):
    """One entry of a file (a task, an annotation, a PNG) that cannot be read; the message says
    why, and the caller names the entry."""
