"""Pseudo-mask generators, one file each over ``base.Labeler``; importing the package registers
every one of them (``registry``)."""

from wsss.labelers import baselines, box, cam, grabcut, gradcam, gradcampp, mix, sam2  # noqa: F401
