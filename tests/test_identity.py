"""Nothing stale: every cache key and fingerprint that stands for data changes with the data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from wsss.cli.main import main
from wsss.data.arrays import decode_records, load_arrays
from wsss.data.pets import index
from wsss.data.synthetic import synthesize


def test_regenerating_files_at_the_same_path_changes_every_data_key(tmp_path):
    root = tmp_path / "pets"
    synthesize(root, images=40, size=32, seed=0)
    before = index(root)
    cache = tmp_path / "decoded"
    old = load_arrays(before.split("train"), 48, cache)
    shutil.rmtree(root)
    synthesize(root, images=40, size=64, seed=0)
    after = index(root)
    assert [r.image_id for r in after.records] == [r.image_id for r in before.records]
    assert after.fingerprint() != before.fingerprint()
    new = load_arrays(after.split("train"), 48, cache)
    fresh = decode_records(after.split("train"), 48)
    assert np.array_equal(new.images, fresh.images) and not np.array_equal(new.images, old.images)
    assert len(list(cache.glob("decoded-*/meta.json"))) == 2


def test_the_decode_cache_maps_rows_from_disk_and_leaves_out_quarantined_images(writable_root, tmp_path):
    from PIL import Image

    records = index(writable_root).split("train")
    Image.new("L", (17, 23), 2).save(records[3].trimap_path)
    cache = tmp_path / "decoded"
    cached = load_arrays(records, 32, cache)
    fresh = decode_records(records, 32)
    assert not cached.images.flags.writeable and not cached.images.flags.owndata  # mapped from disk
    assert type(cached.images) is np.ndarray  # not np.memmap, which Ray would pickle in-band
    assert cached.image_ids == fresh.image_ids and records[3].image_id not in cached.image_ids
    assert np.array_equal(cached.images, fresh.images) and np.array_equal(cached.trimaps, fresh.trimaps)
    assert np.array_equal(cached.labels, fresh.labels)
    assert cached.quarantine.entries == fresh.quarantine.entries
    # a killed run's folder (no meta.json) is decoded again, not read
    (Path(cached.folder) / "meta.json").unlink()
    (Path(cached.folder) / "images.npy").write_bytes(b"half")
    again = load_arrays(records, 32, cache)
    assert np.array_equal(again.images, fresh.images)
    assert not list(cache.glob("*.partial-*"))


def test_the_same_files_named_from_elsewhere_are_the_same_dataset(synthetic_root, monkeypatch):
    monkeypatch.chdir(synthetic_root.parent)
    assert index(synthetic_root.name).fingerprint() == index(synthetic_root).fingerprint()


def test_training_decode_quarantines_a_trimap_of_another_size(writable_root):
    from PIL import Image

    record = index(writable_root).split("train")[0]
    Image.new("L", (17, 23), 2).save(record.trimap_path)
    arrays = load_arrays(index(writable_root).split("train"), 32)
    assert record.image_id not in arrays.image_ids
    reason = next(e["reason"] for e in arrays.quarantine.entries if e["image_id"] == record.image_id)
    assert reason.startswith("trimap size (17, 23) differs from image size")


def _study(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "identity", "weights_policy": "random",
        "data": {"root": str(tmp_path / "pets"), "synthetic": {"images": 74, "size": size, "seed": 0},
                 "image_size": 32, "limit": 4},
        "classifier": {"backbone": "resnet18", "weights": "none", "epochs": 1, "batch_size": 8,
                       "image_size": 32, "scaling": {"num_workers": 1},
                       "storage": str(tmp_path / "classifier")},
        "labelers": [{"name": "ellipse"}],
        "pipeline": {"store": str(tmp_path / "masks"), "batch_size": 4},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                     "artifact_location": str(tmp_path / "artifacts"), "experiment": "identity"}}))
    return path


def _classify(config: Path, capsys) -> dict:
    assert main(["classify", "--config", str(config), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_a_dataset_regenerated_at_another_size_reuses_nothing_through_the_cli(ray_local, tmp_path, capsys):
    config = _study(tmp_path, 32)
    first = _classify(config, capsys)
    assert not first["reused"] and _classify(config, capsys)["reused"]  # same data: reused
    decoded = set((tmp_path / "decoded").glob("decoded-*/meta.json"))
    shutil.rmtree(tmp_path / "pets")
    config = _study(tmp_path, 64)  # written again at the same path, at 64 px
    second = _classify(config, capsys)
    assert not second["reused"] and second["checkpoint"] != first["checkpoint"]
    assert set((tmp_path / "decoded").glob("decoded-*/meta.json")) > decoded  # decoded afresh


@pytest.mark.slow
def test_mask_sets_know_their_data_and_size_and_pseudo_says_what_it_reuses(ray_local, tmp_path, capsys):
    config = _study(tmp_path, 32)
    assert main(["pseudo", "--config", str(config)]) == 0
    said = capsys.readouterr().err
    assert "ellipse" in said and "✓ data: " in said and "with ground truth (scoring only)" in said
    assert main(["pseudo", "--config", str(config)]) == 0
    assert "reuse ellipse-" in capsys.readouterr().err
    assert main(["pseudo", "--config", str(config), "--set", "data.image_size=48"]) == 0
    said = capsys.readouterr().err
    assert "new ellipse-" in said and "image size 32 (this study: 48)" in said
    sets = sorted(p.name for p in (tmp_path / "masks").iterdir() if p.name.startswith("ellipse-"))
    assert len(sets) == 2  # the 32 px set is kept, not overwritten or reused
    sizes = {json.loads((tmp_path / "masks" / s / "manifest.json").read_text())["image_size"] for s in sets}
    assert sizes == {32, 48}
