"""Shared fixtures: a small synthetic dataset and one local Ray instance per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """74 synthetic pets (2 per breed) at 64 px; treat as read-only (copy to modify)."""
    from wsss.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("synthetic") / "pets"
    synthesize(root, images=74, size=64, seed=0)
    return root


@pytest.fixture
def writable_root(synthetic_root, tmp_path) -> Path:
    """A private copy of ``synthetic_root`` that a test may damage."""
    copy = tmp_path / "pets"
    shutil.copytree(synthetic_root, copy)
    return copy


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs, token auth on as by default) for every slow test."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    yield ray
    ray.shutdown()
