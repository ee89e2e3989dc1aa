"""Pseudo-mask generators, one file each over ``base.Labeler``; importing the package registers
every one of them (``registry``)."""

from wsss.labelers import (  # noqa: F401
    agreement,
    baselines,
    box,
    cam,
    crf,
    grabcut,
    gradcam,
    gradcampp,
    imagenet_cam,
    mix,
    pamr,
    pixel_head,
    sam2,
    sam2_refine,
)
