"""The cluster's files, checked without a cluster: cluster.yaml against Ray's own schema, what
`ray job submit --working-dir .` uploads, and the storage layer on local paths and on a local S3."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from cluster_tools import BUCKET, local_s3, s3_keys
from conftest import REPO

from wsss import storage


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema(cluster_config):
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster_config, schema)
    validate_config(prepare_config(cluster_config))  # what `ray up` runs before launching


def test_cluster_yaml_has_the_nodes_the_study_needs(cluster_config):
    assert cluster_config["provider"]["type"] == "aws"
    types = cluster_config["available_node_types"]
    head = types[cluster_config["head_node_type"]]
    assert "GPU" not in head["resources"]
    gpu = [t for name, t in types.items() if t["resources"].get("GPU")]
    cpu = [t for name, t in types.items() if name != cluster_config["head_node_type"]
           and not t["resources"].get("GPU")]
    assert len(gpu) == 1 and gpu[0]["resources"]["GPU"] == 1  # one GPU per node
    assert len(cpu) == 1 and cpu[0]["resources"]["CPU"] >= 8  # GrabCut and SLIC
    for worker in gpu + cpu:
        assert 1 <= worker["min_workers"] <= worker["max_workers"] <= cluster_config["max_workers"]
        assert "IamInstanceProfile" in worker["node_config"]  # workers reach the bucket


def test_cluster_yaml_keeps_token_auth_and_runs_mlflow_on_the_head(cluster_config):
    assert cluster_config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    head_start = " ".join(cluster_config["head_start_ray_commands"])
    worker_start = " ".join(cluster_config["worker_start_ray_commands"])
    for commands in (head_start, worker_start):
        assert set(re.findall(r"RAY_AUTH_MODE=(\w+)", commands)) == {"token"}  # never another mode
    assert "mlflow/serve.sh" in head_start and "MLFLOW_HOST=0.0.0.0" in head_start
    assert "--allowed-hosts" in head_start
    assert re.search(r"MLFLOW_BACKEND_STORE_URI=sqlite:////\S+\.db", head_start)
    assert re.search(r"MLFLOW_ARTIFACTS_DESTINATION=s3://\S+/mlflow", head_start)
    setup = " ".join(cluster_config["setup_commands"])
    assert "make venv" in setup  # torch 2.14.1 first, then SAM2_BUILD_CUDA=0 pip install -e
    makefile = (REPO / "Makefile").read_text()
    assert "torch==2.14.1 torchvision==0.29.1" in makefile and "SAM2_BUILD_CUDA=0" in makefile


def _package(root: Path, tmp_path: Path) -> set[str]:
    """The files Ray would upload for ``--working-dir root`` (.rayignore alone, no .gitignore)."""
    from ray._private.runtime_env.packaging import create_package

    target = tmp_path / f"{root.name}.zip"
    create_package(str(root), target, include_gitignore=False)
    with zipfile.ZipFile(target) as archive:
        return set(archive.namelist())


def test_rayignore_keeps_bulk_out_of_the_upload(tmp_path):
    tree = tmp_path / "checkout"
    kept = ["wsss/data/pets.py", "jobs/sweep.py", "mlflow/serve.sh", "pyproject.toml"]
    dropped = ["data/pets/images/a.jpg", "stores/masks/x/manifest.json", "results/train/run/state.pt",
               ".venv/bin/python", "mlflow/mlflow.db", "mlflow/artifacts/1/model.pt", ".git/HEAD",
               "wsss/__pycache__/x.pyc"]
    for name in kept + dropped:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x")
    (tree / ".rayignore").write_text((REPO / ".rayignore").read_text())
    uploaded = _package(tree, tmp_path)
    assert set(kept) <= uploaded
    assert not uploaded & set(dropped)

    real = _package(REPO, tmp_path)  # the checkout itself: the code, nothing bulky
    assert "wsss/sweep/run.py" in real and "wsss/data/pets.py" in real and "jobs/sweep.py" in real
    assert (tmp_path / f"{REPO.name}.zip").stat().st_size < 20 * 2**20


def test_storage_on_local_paths(tmp_path):
    target = storage.join(tmp_path, "a", "b.json")
    assert storage.write_text(target, '{"x": 1}') == target and storage.read_text(target) == '{"x": 1}'
    assert storage.is_file(target) and not storage.is_file(storage.join(tmp_path, "a"))
    assert not list((tmp_path / "a").glob(".*tmp*"))  # the temporary file was renamed away
    assert storage.fetch(target) == Path(target) and storage.absolute("rel") == str(Path("rel").resolve())
    with storage.staged(tmp_path / "run") as folder:
        (folder / "model.pt").write_bytes(b"weights")
    assert (tmp_path / "run" / "model.pt").read_bytes() == b"weights"
    assert storage.decode_cache_dir(tmp_path / "stores" / "masks") == tmp_path / "stores" / "decoded"
    assert storage.train_checkpoint_uri(str(tmp_path), "/x/checkpoint_1") == "/x/checkpoint_1"


def test_storage_on_s3(tmp_path, monkeypatch):
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    with local_s3(tmp_path):
        root = f"s3://{BUCKET}/results"
        assert storage.is_remote(root) and storage.absolute(root + "/") == root
        report = storage.write_text(storage.join(root, "run", "outcome.json"), "{}")
        assert report == f"s3://{BUCKET}/results/run/outcome.json" and storage.read_text(report) == "{}"
        with storage.staged(storage.join(root, "run")) as folder:
            (folder / "figure.png").write_bytes(b"png")
            (folder / "nested").mkdir()
            (folder / "nested" / "scores.csv").write_text("a,b\n")
        assert s3_keys(f"{BUCKET}/results/run") == [f"{BUCKET}/results/run/{name}" for name in
                                                      ("figure.png", "nested/scores.csv", "outcome.json")]
        local = storage.fetch(storage.join(root, "run", "figure.png"))
        assert local.read_bytes() == b"png" and (tmp_path / "cache") in local.parents
        storage.write_bytes(storage.join(root, "run", "figure.png"), b"png2")  # a new version...
        assert storage.fetch(storage.join(root, "run", "figure.png")).read_bytes() == b"png2"
        assert storage.train_checkpoint_uri(root, f"{BUCKET}/results/x/checkpoint_1") == \
            f"s3://{BUCKET}/results/x/checkpoint_1"  # pyarrow's path, back to a URI
        assert storage.decode_cache_dir(root).is_relative_to(tmp_path / "cache")


def test_classifier_checkpoint_on_s3_loads_and_fingerprints(tmp_path, monkeypatch):
    """CAM actors on any node load the breed classifier from the bucket (fetched once)."""
    import torch

    from wsss.identity import file_hash
    from wsss.models.classifier import WeightsMissingError, build_classifier, load_classifier, save_classifier

    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = build_classifier("resnet18", "none")
    save_classifier(model, tmp_path / "classifier.pt", "resnet18", image_size=64)
    with local_s3(tmp_path):
        uri = storage.upload(tmp_path / "classifier.pt", f"s3://{BUCKET}/classifier/classifier.pt")
        loaded, meta = load_classifier(uri)
        assert meta["backbone"] == "resnet18" and meta["image_size"] == 64
        first = next(iter(loaded.state_dict().values()))
        assert np.array_equal(first.numpy(), next(iter(model.state_dict().values())).numpy())
        assert file_hash(uri) == file_hash(str(tmp_path / "classifier.pt"))
        with pytest.raises(WeightsMissingError, match="not found"):
            load_classifier(f"s3://{BUCKET}/classifier/missing.pt")


def test_dataset_root_must_be_local():
    from wsss.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="data.root: the dataset root must be a local path"):
        parse_config({"data": {"root": f"s3://{BUCKET}/pets"}})
    config = parse_config({"pipeline": {"store": f"s3://{BUCKET}/masks"},
                           "train": {"storage": f"s3://{BUCKET}/train"}}).resolved()
    assert config.pipeline.store == f"s3://{BUCKET}/masks" and config.train.storage == f"s3://{BUCKET}/train"
