from collections import Counter

import pytest

from wsss.data.breeds import BREEDS, NUM_BREEDS
from wsss.data.pets import DatasetMissingError, assign_val, index


def test_reader_on_synthetic_root(synthetic_root):
    dataset = index(synthetic_root)
    splits = Counter(r.split for r in dataset.records)
    assert sum(splits.values()) == 74 and set(splits) == {"train", "val", "test"}
    assert not dataset.quarantine.entries and not dataset.missing_trimaps
    for record in dataset.records:
        assert BREEDS[record.label] == record.breed
        assert record.species == ("cat" if record.breed[0].isupper() else "dog")
        assert record.image_id.startswith(record.breed + "_")
        assert record.trimap_path and record.trimap_path.endswith(f"{record.image_id}.png")
        if record.split == "test":
            assert record.head_box is None
    trainval = dataset.split("trainval")
    with_box = [r for r in trainval if r.head_box is not None]
    assert len(with_box) + len(dataset.missing_boxes) == len(trainval)
    x0, y0, x1, y1 = with_box[0].head_box
    assert 1 <= x0 < x1 <= 64 and 1 <= y0 < y1 <= 64


def test_val_split_is_seeded_and_stratified():
    trainval = [(f"{BREEDS[label]}_{n}", label) for label in range(NUM_BREEDS) for n in range(10)]
    val = assign_val(trainval, 0.2, seed=3)
    assert val == assign_val(trainval, 0.2, seed=3)
    assert val != assign_val(trainval, 0.2, seed=4)
    per_breed = Counter(image_id.rsplit("_", 1)[0] for image_id in val)
    assert set(per_breed.values()) == {2}  # 20% of 10 in every breed


def test_limit_spreads_over_breeds(synthetic_root):
    dataset = index(synthetic_root, limit=10)
    for split in ("train", "val", "test"):
        records = dataset.split(split)
        assert len(records) <= 10
        assert len({r.breed for r in records}) == len(records)  # one per breed first


def test_junk_files_are_ignored(writable_root):
    (writable_root / "images" / "._Abyssinian_1.jpg").write_bytes(b"\x00\x05junk")
    (writable_root / "annotations" / "trimaps" / "._Abyssinian_1.png").write_bytes(b"junk")
    (writable_root / "images" / "notes.mat").write_bytes(b"junk")
    dataset = index(writable_root)
    assert len(dataset.records) == 74 and not dataset.quarantine.entries


def test_comment_lines_and_unknown_split(writable_root):
    trainval = writable_root / "annotations" / "trainval.txt"
    trainval.write_text("# a comment line\n" + trainval.read_text())
    dataset = index(writable_root)
    assert len(dataset.records) == 74
    with pytest.raises(ValueError, match="unknown split"):
        dataset.split("validation")


def test_missing_root_says_what_to_fetch(tmp_path):
    with pytest.raises(DatasetMissingError) as caught:
        index(tmp_path / "nowhere")
    message = str(caught.value)
    assert "robots.ox.ac.uk/~vgg/data/pets" in message
    assert "images.tar.gz" in message and str(tmp_path / "nowhere") in message


def test_fingerprint_changes_with_the_index(synthetic_root):
    assert index(synthetic_root).fingerprint() == index(synthetic_root).fingerprint()
    assert index(synthetic_root).fingerprint() != index(synthetic_root, split_seed=1).fingerprint()
