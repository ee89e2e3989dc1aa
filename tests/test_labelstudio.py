"""The review round trip against a real Label Studio server on loopback: ``wsss export`` ->
a project made, its tasks imported and one annotated through Label Studio's SDK -> the project's
JSON export -> ``wsss import``. Skips, with the reason, only where Label Studio cannot be
installed (``labelstudio_server.ensure_labelstudio``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from labelstudio_server import ensure_labelstudio, running_labelstudio, sdk_round_trip
from test_export import at_size, own_size, study  # noqa: F401  (study: a fixture)

from wsss.cli.main import main
from wsss.config import load_config
from wsss.masks.reviewed import import_reviewed

WORKING = 48


@pytest.fixture(scope="module")
def labelstudio():
    reason = ensure_labelstudio()
    if reason:
        pytest.skip(f"Label Studio cannot be installed here: {reason}")


def reviewer_result(record, class_name: str) -> tuple[list[dict], np.ndarray]:
    """What a reviewer paints on the image: the left 60 % of the rows' middle as the pet and a
    strip above it marked unsure, as Label Studio stores brush strokes (RLE of RGBA)."""
    from label_studio_converter.brush import mask2rle

    width, height = own_size(record)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 3: 2 * height // 3, : 3 * width // 5] = 1
    mask[height // 3 - 3: height // 3, : 3 * width // 5] = 255
    result = []
    for value, label, region_id in ((1, class_name, "pet"), (255, "ignore", "unsure")):
        result.append({"id": region_id, "type": "brushlabels", "from_name": "tag", "to_name": "image",
                       "original_width": width, "original_height": height, "image_rotation": 0,
                       "value": {"format": "rle", "rle": mask2rle(np.where(mask == value, 255, 0).astype(np.uint8)),
                                 "brushlabels": [label]}})
    return result, mask


def test_export_review_in_label_studio_export_import(labelstudio, study, tmp_path, capsys):  # noqa: F811
    tasks_file = tmp_path / "review.json"
    assert main(["export", "--config", str(study["config"]), "--labeler", "ellipse", "--format", "labelstudio",
                 "--out", str(tasks_file), "--select", "3", "--by", "confidence"]) == 0
    tasks = json.loads(tasks_file.read_text())
    label_config = (tmp_path / "review.labeling-config.xml").read_text()
    by_id = {record.image_id: record for record in study["records"]}
    first = by_id[tasks[0]["data"]["image_id"]]
    result, painted = reviewer_result(first, first.class_name)
    with running_labelstudio(tmp_path) as server:
        exported = sdk_round_trip(server, "wsss review", label_config, tasks, {0: result}, tmp_path)
    assert [task["data"]["image_id"] for task in exported] == [task["data"]["image_id"] for task in tasks]
    assert [len(task["annotations"]) for task in exported] == [1, 0, 0]
    export_file = tmp_path / "project-export.json"
    export_file.write_text(json.dumps(exported))
    capsys.readouterr()
    assert main(["import", "--config", str(study["config"]), "--from", str(export_file)]) == 0
    assert "imported 1 reviewed masks as reviewed-project-export, 0 left out, 2 not reviewed" in capsys.readouterr().err
    config = load_config(study["config"])
    reviewed = import_reviewed(config.pipeline.store, str(export_file), study["dataset"], WORKING)
    assert reviewed.reused and reviewed.imported == [first.image_id]
    assert np.array_equal(reviewed.mask_set.read(first.image_id), at_size(painted, WORKING, WORKING))
