"""A mask store that checks what it reads: every file's digest in the manifest, reads verified,
training refuses damaged sets before it starts, ``wsss pseudo`` remakes just the damaged images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from wsss.masks.files import file_digest
from wsss.masks.integrity import MaskSetError
from wsss.masks.manifest import Manifest
from wsss.masks.store import (
    STORE_FORMAT,
    MaskSet,
    MaskSetWriter,
    load_manifest,
    open_mask_set,
    set_fingerprint,
    set_folder_name,
)

IDENTITY = {"labeler_fingerprint": "box", "dataset_index": "data-1", "image_size": 8}


def truncate(path: Path) -> None:
    """What a failed copy or sync leaves: the file's first half."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def small_set(store: Path, ids: list[str], key: str = "box") -> MaskSet:
    """A complete mask set of ``ids`` written as the pipeline writes one (writer, then manifest)."""
    writer = MaskSetWriter(str(store / set_folder_name(key, set_fingerprint(IDENTITY))))
    for number, image_id in enumerate(ids):
        mask = np.zeros((8, 8), np.uint8)
        mask[: number + 1] = 1
        writer.write_mask(image_id, mask, {"box": [0, 0, 8, number + 1]})
    writer.write_manifest({"labeler_id": key, "kind": "masks", "params": {}, "complete": True,
                           "images_expected": len(ids), "images_present": len(ids), **IDENTITY})
    return open_mask_set(str(store), key, IDENTITY)


def test_the_manifest_keeps_each_files_digest_and_reads_check_it(tmp_path):
    mask_set = small_set(tmp_path, ["a", "b"])
    manifest = json.loads((Path(mask_set.uri) / "manifest.json").read_text())
    assert manifest["store_format"] == STORE_FORMAT
    assert manifest["files"] == {f"masks/{i}.png": file_digest((Path(mask_set.uri) / "masks" / f"{i}.png").read_bytes())
                                 for i in ("a", "b")}
    mask, extras = mask_set.read_with_extras("b")
    assert mask[:2].all() and not mask[2:].any() and extras == {"box": [0, 0, 8, 2]}
    truncate(Path(mask_set.uri) / "masks" / "a.png")
    with pytest.raises(MaskSetError) as error:
        mask_set.read("a")
    message = str(error.value)
    assert f"{mask_set.uri}/masks/a.png: damaged" in message and "'box'" in message
    assert "wsss pseudo --config C --labeler box" in message
    (Path(mask_set.uri) / "masks" / "b.png").unlink()
    with pytest.raises(MaskSetError, match=r"masks/b\.png: missing"):
        mask_set.read("b")
    with pytest.raises(FileNotFoundError) as absent:  # never made (quarantined): not damage
        mask_set.read("c")
    assert not isinstance(absent.value, MaskSetError)


def test_a_set_opened_from_the_manifest_just_written_checks_reads_too(tmp_path):
    """How ``wsss import`` (``wsss.masks.reviewed``) writes a set and opens it in one go."""
    writer = MaskSetWriter(str(tmp_path / "reviewed-x-1"))
    writer.write_mask("a", np.ones((8, 8), np.uint8))
    manifest = writer.write_manifest(Manifest(labeler_id="reviewed-x", name="reviewed", kind="masks", complete=True,
                                              params={"source": "review.json"}))
    assert manifest.store_format == STORE_FORMAT and set(manifest.files) == {"masks/a.png"}
    truncate(tmp_path / "reviewed-x-1" / "masks" / "a.png")
    with pytest.raises(MaskSetError, match="import the reviewed file again with `wsss import --config C --from "
                                           "review.json`"):
        MaskSet(str(tmp_path / "reviewed-x-1"), manifest).read("a")


def test_a_file_changed_in_place_is_caught_by_its_digest_though_it_decodes(tmp_path):
    mask_set = small_set(tmp_path, ["a", "b"])
    (Path(mask_set.uri) / "masks" / "a.png").write_bytes((Path(mask_set.uri) / "masks" / "b.png").read_bytes())
    with pytest.raises(MaskSetError, match="bytes differ from the digest"):
        mask_set.read("a")


def test_heatmap_sets_check_the_heatmap_and_its_class_list(tmp_path):
    uri = tmp_path / set_folder_name("cam", set_fingerprint(IDENTITY))
    writer = MaskSetWriter(str(uri))
    writer.write_heatmap("a", np.full((2, 8, 8), 0.8, np.float32), {"labels": [0, 3]})
    writer.write_manifest({"labeler_id": "cam", "kind": "heatmaps", "params": {"threshold": 0.5},
                           "complete": True, **IDENTITY})
    mask_set = open_mask_set(str(tmp_path), "cam", IDENTITY)
    assert set(mask_set.files) == {"heatmaps/a.npy", "heatmaps/a.json"}
    assert set(np.unique(mask_set.read("a")).tolist()) <= {1, 4}
    (uri / "heatmaps" / "a.json").write_text('{"labels": [0, 2]}')
    with pytest.raises(MaskSetError, match=r"heatmaps/a\.json: damaged"):
        mask_set.read("a")
    with pytest.raises(MaskSetError, match=r"1 damaged or missing file \("):
        mask_set.verify(["a"])


def test_verification_lists_ten_files_and_counts_the_rest(tmp_path):
    ids = [f"pet_{n:02d}" for n in range(14)]
    mask_set = small_set(tmp_path, ids)
    for image_id in ids[:12]:
        truncate(Path(mask_set.uri) / "masks" / f"{image_id}.png")
    mask_set.verify(ids[12:])  # the sound ones pass
    with pytest.raises(MaskSetError) as error:
        mask_set.verify(ids)
    message = str(error.value)
    assert "12 damaged or missing files" in message and "and 2 more" in message
    assert sum(f"masks/{i}.png: damaged" in message for i in ids) == 10


def test_an_older_stores_manifest_is_refused_with_how_to_regenerate(tmp_path):
    mask_set = small_set(tmp_path, ["a"])
    manifest_file = Path(mask_set.uri) / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["store_format"], manifest["files"]
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(MaskSetError) as error:
        open_mask_set(str(tmp_path), "box", IDENTITY)
    assert "written by an older wsss" in str(error.value)
    assert "regenerate it with `wsss pseudo --config C --labeler box`" in str(error.value)


PIPELINE_MANIFEST = {  # every key ``wsss.masks.pipeline.write_manifests`` writes
    "labeler_id": "box", "labeler": "raw_box", "params": {"band": [0.3, 0.6]}, "fingerprint": "f1",
    "kind": "masks", **IDENTITY, "sources": {"cam": "c1"}, "dataset_root": "/data", "images_expected": 2,
    "images_present": 1, "complete": True, "quarantine": [{"image_id": "b", "reason": "truncated file"}],
    "created": 1.5, "updated": 2.5,
    "last_run": {"written": 1, "skipped": 0, "wall_seconds": 0.25, "stage_seconds": {"decode": 0.125}}}


def test_the_typed_manifest_writes_the_keys_it_was_given_and_reads_them_back(tmp_path):
    uri = tmp_path / set_folder_name("box", set_fingerprint(IDENTITY))
    writer = MaskSetWriter(str(uri))
    writer.write_mask("a", np.ones((8, 8), np.uint8))
    written = writer.write_manifest(dict(PIPELINE_MANIFEST))
    on_disk = json.loads((uri / "manifest.json").read_text())
    assert on_disk == {**PIPELINE_MANIFEST, "files": dict(writer.files), "store_format": STORE_FORMAT}
    assert (uri / "manifest.json").read_text() == json.dumps(on_disk, indent=2, sort_keys=True)
    assert load_manifest(str(uri)) == written and written.to_dict() == on_disk
    assert written.last_run.written == 1 and written.quarantine[0].image_id == "b" and written.selection is None
    reviewed = MaskSetWriter(str(tmp_path / "reviewed-x-1")).write_manifest(
        Manifest(labeler_id="reviewed-x", name="reviewed", selection=None, images=["a"]))
    assert set(json.loads((tmp_path / "reviewed-x-1" / "manifest.json").read_text())) == {
        "labeler_id", "name", "selection", "images", "files", "store_format"}  # what was set, no more
    assert reviewed.kind == "masks" and reviewed.params == {} and not reviewed.complete


@pytest.mark.parametrize("text, why", [("{not json", "not JSON"),
                                       ('{"store_format": 2, "labeler_id": "box", "image_size": "big"}',
                                        "image_size: Input should be a valid integer"),
                                       ('{"store_format": 2, "labeler_id": "box", "colour": 1}', "colour: Extra"),
                                       ("[1, 2]", "not a JSON object")])
def test_a_broken_manifest_is_refused_naming_the_file_and_how_to_remake_the_set(tmp_path, text, why):
    mask_set = small_set(tmp_path, ["a"])
    manifest_file = Path(mask_set.uri) / "manifest.json"
    manifest_file.write_text(text)
    for read in (lambda: open_mask_set(str(tmp_path), "box", IDENTITY), lambda: load_manifest(mask_set.uri)):
        with pytest.raises(MaskSetError) as error:
            read()
        message = str(error.value)
        assert f"its manifest {manifest_file} cannot be read" in message and why in message
        assert f"delete {mask_set.uri} and regenerate it with `wsss pseudo --config C --labeler box`" in message


def test_an_older_manifest_that_does_not_read_as_this_format_is_still_refused_as_older(tmp_path):
    mask_set = small_set(tmp_path, ["a"])
    (Path(mask_set.uri) / "manifest.json").write_text(json.dumps({"labeler_id": "box", "labels": [1], "complete": 1}))
    assert load_manifest(mask_set.uri) == Manifest(labeler_id="box")  # its format (none: 1) and id, no more
    with pytest.raises(MaskSetError, match="written by an older wsss .store format 1.*regenerate it with "
                                           "`wsss pseudo --config C --labeler box`"):
        open_mask_set(str(tmp_path), "box", IDENTITY)


def test_a_training_source_refuses_damaged_files_and_still_ignores_quarantined_images(tmp_path):
    from wsss.train.labels import MaskSetSource, open_source

    mask_set = small_set(tmp_path, ["a", "b", "c"])
    options = {"trimaps": {"a": None, "b": None, "c": None, "quarantined": None}, "border_policy": "ignore",
               "open_set": lambda key, threshold: open_mask_set(str(tmp_path), key, IDENTITY)}
    source = open_source("box", **options)  # sound: opens, and an image it lacks is no error
    assert source.absent(["a", "quarantined"]) == ["quarantined"]
    assert (source.targets(["quarantined"], 8) == 255).all()
    truncate(Path(mask_set.uri) / "masks" / "c.png")
    with pytest.raises(MaskSetError, match=r"masks/c\.png: damaged"):
        open_source("box", **options)
    with pytest.raises(MaskSetError):  # read while building targets: never all-ignore instead
        MaskSetSource(open_mask_set(str(tmp_path), "box", IDENTITY), "box").targets(["c"], 8)


# ---- on real synthetic data, through Ray and the CLI ----------------------------------------


def study_file(tmp_path: Path, root: Path) -> Path:
    """A small study: the ellipse labeler on the synthetic pets, a narrow UNet to train."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "weights_policy": "random",
        "data": {"root": str(root), "image_size": 64},
        "pipeline": {"store": str(tmp_path / "masks"), "batch_size": 8},
        "labelers": [{"name": "ellipse"}],
        "train": {"model": "unet", "weights": "none", "model_options": {"width": 0.125}, "epochs": 1,
                  "image_size": 64, "storage": str(tmp_path / "train"), "labels": "ellipse"},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                     "artifact_location": str(tmp_path / "artifacts"), "experiment": "integrity"}}))
    return path


def generated(tmp_path: Path, root: Path):
    """(config, dataset, the complete ellipse set) after one pipeline run."""
    from wsss.config import load_config
    from wsss.data.prepare import prepare_dataset
    from wsss.labelers.base import LabelerContext
    from wsss.masks.pipeline import generate_masks

    config = load_config(study_file(tmp_path, root))
    dataset = prepare_dataset(config.data)
    summary = generate_masks(config, dataset, LabelerContext())
    return config, dataset, summary.open("ellipse")


def file_states(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(folder.glob("*.png"))}


@pytest.mark.slow
def test_truncated_masks_stop_training_with_their_names_and_pseudo_remakes_just_them(
        ray_local, synthetic_root, tmp_path, capsys):
    from wsss.cli.main import main
    from wsss.labelers.base import LabelerContext
    from wsss.masks.pipeline import generate_masks

    config, dataset, mask_set = generated(tmp_path, synthetic_root)
    folder = Path(mask_set.uri) / "masks"
    victims = [record.image_id for record in dataset.split("train")[:3]]
    for image_id in victims:
        truncate(folder / f"{image_id}.png")
    before = file_states(folder)

    with pytest.raises(MaskSetError) as error:  # (a) a read names the file and the mend
        mask_set.read(victims[0])
    assert f"masks/{victims[0]}.png: damaged" in str(error.value)
    assert "wsss pseudo --config C --labeler ellipse" in str(error.value)

    capsys.readouterr()  # (b) training refuses before it starts, listing all three
    assert main(["train", "--config", str(tmp_path / "study.yaml"), "--set", "train.labels=ellipse"]) == 2
    said = capsys.readouterr().err
    assert "3 damaged or missing files" in said and "Traceback" not in said
    assert all(f"masks/{image_id}.png: damaged" in said for image_id in victims)
    assert "wsss pseudo --config C --labeler ellipse" in said
    assert not (tmp_path / "train").exists() or not any((tmp_path / "train").iterdir())

    repaired = generate_masks(config, dataset, LabelerContext())  # (c) just those three remade
    said = capsys.readouterr().err
    assert "mend ellipse-" in said and ": 3 damaged images to remake" in said
    assert repaired.per_set["ellipse"]["written"] == 3
    after = file_states(folder)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {f"{image_id}.png" for image_id in victims}
    mended = repaired.open("ellipse")
    mended.verify(sorted(mended.ids()))
    manifest = json.loads((Path(mended.uri) / "manifest.json").read_text())
    assert all(manifest["files"][f"masks/{name}"] == file_digest(data) for name, (_, data) in after.items())


@pytest.mark.slow
def test_a_deleted_mask_is_named_missing_and_remade(ray_local, synthetic_root, tmp_path, capsys):
    from wsss.labelers.base import LabelerContext
    from wsss.masks.pipeline import generate_masks
    from wsss.train.labels import MaskSetSource

    config, dataset, mask_set = generated(tmp_path, synthetic_root)
    victim = dataset.split("train")[0].image_id
    (Path(mask_set.uri) / "masks" / f"{victim}.png").unlink()
    with pytest.raises(MaskSetError, match=rf"masks/{victim}\.png: missing"):
        MaskSetSource(mask_set, "ellipse").absent([r.image_id for r in dataset.split("train")])
    capsys.readouterr()
    repaired = generate_masks(config, dataset, LabelerContext())
    assert "mend ellipse-" in capsys.readouterr().err
    assert repaired.per_set["ellipse"]["written"] == 1
    repaired.open("ellipse").verify([victim])


@pytest.mark.slow
def test_an_older_set_is_refused_and_pseudo_regenerates_it(ray_local, synthetic_root, tmp_path, capsys):
    from wsss.labelers.base import LabelerContext
    from wsss.masks.pipeline import generate_masks
    from wsss.masks.plan import open_study_mask_set

    config, dataset, mask_set = generated(tmp_path, synthetic_root)
    manifest_file = Path(mask_set.uri) / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["store_format"], manifest["files"]
    manifest_file.write_text(json.dumps(manifest))
    context = LabelerContext()
    with pytest.raises(MaskSetError, match="older wsss.*regenerate it with `wsss pseudo --config C --labeler ellipse`"):
        open_study_mask_set(config, dataset, context, "ellipse")
    capsys.readouterr()
    again = generate_masks(config, dataset, context)
    assert "regenerate ellipse-" in capsys.readouterr().err
    assert again.per_set["ellipse"]["written"] == len(dataset.split("trainval", "test"))
    assert open_study_mask_set(config, dataset, context, "ellipse").manifest.store_format == STORE_FORMAT
