"""Ray Train scaffolding shared by the classifier and segmentation trainers.

Driver side: configs for ``TorchTrainer`` from our config sections, arrays -> Ray Data
datasets, the metrics history of a finished ``Result``. Worker side: seeding, the device,
cross-rank sums, exact strided evaluation batches, and torch state in a Train checkpoint
(rank 0 writes it, every rank reports). Heavy imports stay inside the functions.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wsss import console, storage
from wsss.config import ConfigError
from wsss.data.arrays import load_arrays
from wsss.storage import absolute
from wsss.train import local

if TYPE_CHECKING:
    from wsss.config import ScalingSection

STATE_FILE = "state.pt"
ROWS_PER_BLOCK = 64  # small blocks so streaming_split spreads a small dataset over workers


# ---- driver side ----------------------------------------------------------------------------


def decoded_splits(config: Any, dataset: Any, image_size: int, min_train: int) -> dict[str, Any]:
    """Decoded train/val/test arrays at ``image_size``, cached beside the mask store and shared
    by every stage; each split's quarantine is held to ``data.error_budget``."""
    cache_dir = storage.decode_cache_dir(config.pipeline.store)
    splits = {}
    total = sum(len(dataset.split(split)) for split in ("train", "val", "test"))
    with console.Stage(f"decode at {image_size} px", total=total, unit="images") as stage:
        for split in ("train", "val", "test"):
            records = dataset.split(split)
            splits[split] = load_arrays(records, image_size, cache_dir, progress=stage)
            splits[split].quarantine.check_budget(len(records), config.data.error_budget)
        stage.done(", ".join(f"{name} {len(arrays)}" for name, arrays in splits.items()))
    if len(splits["train"]) < min_train:
        raise ConfigError(f"data.root {config.data.root}: the train split has "
                          f"{len(splits['train'])} usable images; at least {min_train} needed")
    return splits


def scaling_config(section: ScalingSection):
    """``ray.train.ScalingConfig`` for a config's scaling section (1 GPU per worker if use_gpu)."""
    from ray.train import ScalingConfig

    resources: dict[str, float] = {"CPU": section.cpus_per_worker}
    if section.use_gpu:
        resources["GPU"] = 1
    return ScalingConfig(num_workers=section.num_workers, use_gpu=section.use_gpu,
                         resources_per_worker=resources)


def run_config(storage: str | os.PathLike, name: str, *, metric: str, mode: str = "max",
               num_to_keep: int = 1, max_failures: int = 0, callbacks: list | None = None):
    """``RunConfig`` keeping the best ``num_to_keep`` checkpoints by ``metric`` (plus the latest).

    The same ``storage`` and ``name`` resume a run: Train restores its checkpoint list and
    ``ray.train.get_checkpoint()`` returns the latest one in the workers.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig(
        name=name,
        storage_path=absolute(storage),  # a folder or a URI: Train writes s3:// itself
        checkpoint_config=CheckpointConfig(num_to_keep=num_to_keep,
                                           checkpoint_score_attribute=metric,
                                           checkpoint_score_order=mode),
        failure_config=FailureConfig(max_failures=max_failures),
        callbacks=callbacks,
    )


def data_config(split: tuple[str, ...] = ("train",)):
    """Shard only the training set; evaluation sets reach every worker whole (see eval_batches).

    Train's sharding uses ``streaming_split(equal=True)``, which may drop rows to balance
    shards: fine for training, not for metrics that must cover every image.
    """
    from ray.train import DataConfig

    return DataConfig(datasets_to_split=list(split))


def arrays_dataset(columns: dict[str, np.ndarray], order: np.ndarray | None = None,
                   rows_per_block: int = ROWS_PER_BLOCK):
    """A materialized Ray dataset from equal-length numpy columns (images as tensor columns),
    rows in ``order`` (default: as given). Columns may be memory maps (the decode cache): each
    block is gathered, put in the object store and let go, so the driver holds one block."""
    import ray
    import ray.data

    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"columns differ in length: {lengths}")
    total = next(iter(lengths.values()))
    order = np.arange(total) if order is None else np.asarray(order)
    refs = [ray.put(arrow_table({name: values[order[start:start + rows_per_block]]
                                 for name, values in columns.items()}))
            for start in range(0, max(total, 1), rows_per_block)]
    dataset = ray.data.from_arrow_refs(refs)
    dataset.context.enable_progress_bars = False  # in memory already: bars would only spam logs
    return dataset


def built_dataset(count: int, build: Callable[..., dict[str, np.ndarray]], rows_per_block: int = ROWS_PER_BLOCK,
                  *, here: bool = False, **kwargs: Any):
    """A materialized Ray dataset of ``count`` rows built one block at a time:
    ``build(start, stop, **kwargs)`` returns rows [start, stop) as numpy columns, each block is
    put in the object store and let go, so the driver holds one block however large the set
    (the decode cache is memory-mapped, targets are made per block). ``here``: the blocks
    joined for the in-process worker (``wsss.train.local.BlockDataset``), no Ray Data."""
    import ray
    import ray.data

    if here:
        return local.BlockDataset([build(start, min(start + rows_per_block, count), **kwargs)
                                   for start in range(0, max(count, 1), rows_per_block)])
    refs = [ray.put(arrow_table(build(start, min(start + rows_per_block, count), **kwargs)))
            for start in range(0, max(count, 1), rows_per_block)]
    dataset = ray.data.from_arrow_refs(refs)
    dataset.context.enable_progress_bars = False
    return dataset


def arrow_table(columns: dict[str, np.ndarray]):
    """numpy columns -> an Arrow table (arrays of more than one dimension as tensor columns)."""
    import pyarrow as pa
    from ray.data.extensions import ArrowTensorArray

    def column(values: np.ndarray):
        values = np.ascontiguousarray(values)
        return ArrowTensorArray.from_numpy(values) if values.ndim > 1 else pa.array(values)

    return pa.table({name: column(values) for name, values in columns.items()})


def shuffled_order(count: int, seed: int) -> np.ndarray:
    """One seeded random order of ``count`` rows (datasets arrive sorted by class; shuffle
    buffers are local, so a sorted source would give single-class batches)."""
    return np.random.default_rng(seed).permutation(count)


def metrics_history(result: Any, step_key: str = "epoch") -> list[dict[str, Any]]:
    """Per-step metrics of a finished run, ordered by ``step_key``.

    Prefers the list rank 0's loop returned (``result.return_value``: it covers every epoch,
    resumed ones included); falls back to the metrics of the checkpoints Train kept.
    """
    history = getattr(result, "return_value", None)
    if isinstance(history, dict):
        history = history.get("history")
    if not isinstance(history, list):
        frame = result.metrics_dataframe
        history = [] if frame is None else frame.to_dict("records")
    return sorted(history, key=lambda row: row.get(step_key, 0))


# ---- worker side ----------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) in this process."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_and_world() -> tuple[int, int]:
    """(world rank, world size) of this Train worker ((0, 1) for the one in-process worker)."""
    import ray.train

    if local.current() is not None:
        return 0, 1
    context = ray.train.get_context()
    return context.get_world_rank(), context.get_world_size()


def worker_device():
    """The torch device Train assigned to this worker (cuda:<i> with use_gpu, else cpu)."""
    import ray.train.torch

    session = local.current()
    return session.device if session is not None else ray.train.torch.get_device()


def dataset_shard(name: str) -> Any:
    """This worker's iterator of the run's dataset ``name`` (whole for the in-process worker)."""
    import ray.train

    session = local.current()
    return session.dataset(name) if session is not None else ray.train.get_dataset_shard(name)


def reported_checkpoints() -> list[Any]:
    """The run's kept checkpoints, each with ``.metrics`` and ``.checkpoint``."""
    import ray.train

    session = local.current()
    return session.reported() if session is not None else ray.train.get_all_reported_checkpoints()


def prepare_model(model: Any) -> Any:
    """The model on this worker's device, wrapped in DDP by Train when there are several."""
    import ray.train.torch

    if local.current() is not None:
        return model.to(worker_device())
    return ray.train.torch.prepare_model(model)


def all_reduce_sums(values: list[float], device: Any) -> list[float]:
    """Sum ``values`` over every rank (one all_reduce; a no-op without a process group)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def eval_batches(dataset_name: str, batch_size: int, device: Any) -> Iterator[dict[str, Any]]:
    """This rank's share of an unsharded dataset: every world_size-th batch, on ``device``.

    Each rank reads the whole set (cheap: it is in the object store) but computes on its
    own batches only, so the ranks together see every row exactly once.
    """

    rank, world = rank_and_world()
    iterator = dataset_shard(dataset_name)
    for index, batch in enumerate(iterator.iter_torch_batches(batch_size=batch_size,
                                                              device="cpu")):
        if index % world == rank:
            yield {name: value.to(device, non_blocking=True) for name, value in batch.items()}


def report(metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
    """``ray.train.report`` with ``state`` saved as a checkpoint by rank 0 only."""
    import ray.train
    import torch

    rank, _ = rank_and_world()
    session = local.current()
    if state is None or rank != 0:
        if session is not None:
            session.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="wsss-ckpt-") as directory:
        torch.save(state, Path(directory) / STATE_FILE)
        if session is not None:
            session.report(metrics, directory)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def load_state(checkpoint: Any, mmap: bool = False) -> dict[str, Any]:
    """The torch state ``report`` saved in a Train checkpoint (tensors on the CPU).

    ``mmap=True`` maps the tensors from the file instead of reading them into this process's
    memory: for a driver that takes only the model out of a state that also holds the optimizer
    (read once, then dropped; not for state kept while checkpoints rotate).
    A checkpoint in an object store (``s3://`` storage) is downloaded into a folder of this
    process's own: with ``as_directory`` the workers of a node share one temporary folder,
    and a worker that comes second downloads into it again while the first is reading
    (seen as a corrupt state.pt when a worker group resumed from S3).
    """
    import pyarrow.fs
    import torch

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return torch.load(Path(checkpoint.path) / STATE_FILE, map_location="cpu", weights_only=False,
                          mmap=mmap)
    with tempfile.TemporaryDirectory(prefix="wsss-restore-") as directory:
        checkpoint.to_directory(directory)
        return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False,
                          mmap=mmap)


def restore_state() -> dict[str, Any] | None:
    """The state of the run's latest checkpoint when resuming, else None."""
    import ray.train

    session = local.current()
    checkpoint = session.resumed_from if session is not None else ray.train.get_checkpoint()
    return None if checkpoint is None else load_state(checkpoint)


def autocast(device: Any, bf16: bool = True):
    """bf16 autocast on CUDA; a disabled context elsewhere (CPU autocast is slow here)."""
    import torch

    kind = getattr(device, "type", str(device))
    return torch.autocast(device_type="cuda" if kind == "cuda" else "cpu", dtype=torch.bfloat16,
                          enabled=bf16 and kind == "cuda")
