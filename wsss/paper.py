"""The reference study's reported numbers, carried as data so reports can set ours beside them.

Source: "Segmenting with Less Supervision: from Pseudo-Labels to Foundation Models" (a study
of weakly supervised segmentation on Oxford-IIIT Pet). Every figure below is the study's own
published number, typed in from its Tables 1-5 (and its classifier accuracies); none is measured
here. Metrics are on the test set; the study does not say how the trimap border was scored or
whether scores were averaged per image or over all pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = ("Segmenting with Less Supervision: from Pseudo-Labels to Foundation Models "
          "(Oxford-IIIT Pet study), Tables 1-5")
METRICS = ("dice", "iou", "accuracy", "precision", "recall")


@dataclass(frozen=True)
class PaperRow:
    key: str
    table: str
    method: str
    dice: float
    iou: float
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None

    def metrics(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in METRICS}


ROWS: tuple[PaperRow, ...] = (
    PaperRow("t1.unet", "1", "UNet (scratch, 25 epochs) on ground truth", 0.9064, 0.8287, 0.9190, 0.8866, 0.9270),
    PaperRow("t1.deeplabv3", "1", "DeepLabV3-ResNet50 on ground truth", 0.9577, 0.9189, 0.9645, 0.9640, 0.9515),
    PaperRow("t1.fcn", "1", "FCN-ResNet50 on ground truth", 0.9514, 0.9074, 0.9594, 0.9633, 0.9399),
    PaperRow("t2.1.cam", "2.1", "CAM @0.5 -> DLV3", 0.3364, 0.2022, 0.6522, 0.8700),
    PaperRow("t2.1.gradcam", "2.1", "Grad-CAM @0.5 -> DLV3", 0.3589, 0.2187, 0.6581, 0.8657),
    PaperRow("t2.1.gradcampp", "2.1", "Grad-CAM++ @0.5 -> DLV3", 0.3208, 0.1911, 0.6481, 0.8724),
    PaperRow("t2.2.gradcam@0.0001", "2.2", "Grad-CAM @1e-4 -> DLV3", 0.5951, 0.4236, 0.4254, 0.4238, 0.9986),
    PaperRow("t2.2.gradcam@0.001", "2.2", "Grad-CAM @1e-3 -> DLV3", 0.6208, 0.4501, 0.4906, 0.4530, 0.9861),
    PaperRow("t2.2.gradcam@0.005", "2.2", "Grad-CAM @5e-3 -> DLV3", 0.6897, 0.5229, 0.6740, 0.5784, 0.8450),
    PaperRow("t2.2.gradcam@0.01", "2.2", "Grad-CAM @1e-2 -> DLV3", 0.6918, 0.5288, 0.7028, 0.6159, 0.7890),
    PaperRow("t2.2.gradcam@0.1", "2.2", "Grad-CAM @1e-1 -> DLV3", 0.6276, 0.4680, 0.7260, 0.7234, 0.5690),
    PaperRow("t2.2.gradcam@0.5", "2.2", "Grad-CAM @5e-1 -> DLV3", 0.3656, 0.2237, 0.6570, 0.8387, 0.2338),
    PaperRow("t2.2.gradcam@0.7", "2.2", "Grad-CAM @7e-1 -> DLV3", 0.1996, 0.1109, 0.6175, 0.8651, 0.1128),
    PaperRow("t3.box", "3", "raw CAM box -> DLV3", 0.7365, 0.5830, 0.7558, 0.6772, 0.8073),
    PaperRow("t3.grabcut", "3", "GrabCut in the box -> DLV3", 0.7832, 0.6436, 0.8144, 0.7738, 0.7926),
    PaperRow("t3.mix", "3", "GrabCut ∩ SLIC -> DLV3", 0.7918, 0.6554, 0.8314, 0.8287, 0.7581),
    PaperRow("t3.curriculum", "3", "raw box, then GrabCut ∩ SLIC (20 + 20 epochs) -> DLV3", 0.8042, 0.6726, 0.8426, 0.8483, 0.7645),
    PaperRow("t4.sam2_single", "4", "SAM2 centre point, single mask, as prediction", 0.7843, 0.6452, 0.8434, 0.9386, 0.6736),
    PaperRow("t4.sam2_multi", "4", "SAM2 centre point, largest of multimask, as prediction", 0.8635, 0.7598, 0.8908, 0.9155, 0.8171),
    PaperRow("t4.sam2_pseudo", "4", "SAM2 centre mask as pseudo-label -> DLV3", 0.8692, 0.7687, 0.8993, 0.9635, 0.7917),
    PaperRow("t4.cam_sam2", "4", "3 Grad-CAM peaks as SAM2 prompts -> DLV3", 0.7602, 0.6132, 0.8081, 0.8056, 0.7196),
)
BY_KEY: dict[str, PaperRow] = {row.key: row for row in ROWS}
# Table 5 picks the best row of each supervision strategy.
TABLE5: tuple[tuple[str, str], ...] = (
    ("Full supervision (DLV3)", "t1.deeplabv3"),
    ("CAM (Grad-CAM, threshold 1e-2)", "t2.2.gradcam@0.01"),
    ("Bounding box (raw box + GrabCut ∩ SLIC)", "t3.curriculum"),
    ("Foundation model (SAM2 pseudo + DLV3)", "t4.sam2_pseudo"),
)
CLASSIFIER_ACCURACY = {"resnet50": 0.9131, "resnet101": 0.9261, "densenet121": 0.9041}


def paper_row(key: str | None) -> PaperRow | None:
    """The study's row for ``key``; an unknown key raises listing the known ones."""
    if key is None:
        return None
    if key not in BY_KEY:
        raise KeyError(f"unknown paper row {key!r}; known: {', '.join(BY_KEY)}")
    return BY_KEY[key]
