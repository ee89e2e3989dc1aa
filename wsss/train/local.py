"""One worker without Ray Train's controller: the training loop in the process that holds it.

A Ray Train run starts a controller actor and a worker group, and stops them at the end: about
ten seconds a run on two cores, whatever the run's length. With one worker there is nothing to
distribute, so ``train.scaling.trainer: auto`` runs the same loop (``wsss.train.worker``)
here: in a sweep trial, in the trial's own process (Tune gives it the worker's CPUs and GPU);
from ``wsss train``, in one Ray task holding them. What Ray Train gives the loop comes from
``LocalSession``: the datasets (whole; one worker has no shards), the reports and callbacks,
the checkpoints kept by metric (the best ``num_to_keep`` and the latest), the latest
checkpoint to resume from, and restarts after a failure (``max_failures``). Checkpoints live
where Train's would, ``<storage>/<name>/checkpoint_<n>/``, listed in ``checkpoints.json``
(written whole and replaced, so a kill leaves the previous list), so a rerun with the same
name resumes from the latest. Several workers, and ``trainer: ray_train``, run Ray Train.

The loop reads the session through ``current()``: ``wsss.train.common``'s worker-side helpers
ask it first and fall back to ``ray.train`` when none is active.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INDEX_FILE = "checkpoints.json"
CHECKPOINT_PREFIX = "checkpoint_"

_CURRENT: contextvars.ContextVar[LocalSession | None] = contextvars.ContextVar("wsss_local_session",
                                                                              default=None)


def current() -> LocalSession | None:
    """The session of the loop running in this thread, or None under Ray Train."""
    return _CURRENT.get()


@dataclass(frozen=True)
class Reported:
    """A kept checkpoint and the metrics reported with it (``ray.train``'s ``ReportedCheckpoint``
    shape: ``.metrics``, ``.checkpoint``)."""

    metrics: dict[str, Any]
    checkpoint: Any  # ray.train.Checkpoint of a local folder
    sequence: int


class LocalSession:
    """What one in-process worker reads instead of Ray Train's session; see the module docstring."""

    def __init__(self, run_dir: str | os.PathLike, datasets: dict[str, Any], device: Any, *,
                 metric: str, mode: str = "max", num_to_keep: int = 1,
                 callbacks: Sequence[Any] = ()):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.datasets, self.device = datasets, device
        self.metric, self.mode, self.num_to_keep = metric, mode, num_to_keep
        self.callbacks = list(callbacks)
        self.kept = self._read_index()
        self.resumed_from = self.latest()

    # ---- what the loop asks for ------------------------------------------------------------

    def dataset(self, name: str) -> Any:
        if name not in self.datasets:
            raise KeyError(f"no dataset {name!r} in this run (it has {sorted(self.datasets)})")
        return self.datasets[name]

    def latest(self) -> Any:
        """The newest kept checkpoint (what a resumed loop restores), or None."""
        return max(self.kept, key=lambda r: r.sequence).checkpoint if self.kept else None

    def reported(self) -> list[Reported]:
        """Every kept checkpoint, those of earlier attempts included (as Train's list)."""
        return list(self.kept)

    def report(self, metrics: dict[str, Any], directory: str | os.PathLike | None = None) -> None:
        """Keep ``directory`` as the next checkpoint (copied; the caller may delete it), drop
        the checkpoints no longer kept, then call the callbacks (``after_report`` of a
        ``ray.train.UserCallback``, with one rank's metrics)."""
        from ray.train import Checkpoint

        checkpoint = None
        if directory is not None:
            sequence = max((r.sequence for r in self.kept), default=0) + 1
            target = self.run_dir / f"{CHECKPOINT_PREFIX}{sequence:06d}"
            partial = self.run_dir / f".{target.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(directory, partial)
            shutil.rmtree(target, ignore_errors=True)  # left by a run killed before its index
            os.replace(partial, target)
            checkpoint = Checkpoint.from_directory(str(target))
            self.kept.append(Reported(dict(metrics), checkpoint, sequence))
            self._prune()
        for callback in self.callbacks:
            callback.after_report(None, [dict(metrics)], checkpoint)

    # ---- keeping checkpoints -------------------------------------------------------------

    def _score(self, reported: Reported) -> tuple[float, int]:
        value = reported.metrics.get(self.metric, float("nan"))
        value = -math.inf if value is None or math.isnan(value) else float(value)
        return (value if self.mode == "max" else -value, reported.sequence)

    def _prune(self) -> None:
        best = sorted(self.kept, key=self._score, reverse=True)[: self.num_to_keep]
        newest = max(self.kept, key=lambda r: r.sequence)
        keep = {r.sequence for r in best} | {newest.sequence}
        dropped = [r for r in self.kept if r.sequence not in keep]
        self.kept = [r for r in self.kept if r.sequence in keep]
        self._write_index()  # first: a kill between the two leaves extra folders, never a hole
        for reported in dropped:
            shutil.rmtree(reported.checkpoint.path, ignore_errors=True)

    def _write_index(self) -> None:
        rows = [{"sequence": r.sequence, "folder": Path(r.checkpoint.path).name, "metrics": r.metrics}
                for r in self.kept]
        partial = self.run_dir / f".{INDEX_FILE}.partial"
        partial.write_text(json.dumps(rows, default=float))
        os.replace(partial, self.run_dir / INDEX_FILE)

    def _read_index(self) -> list[Reported]:
        from ray.train import Checkpoint

        path = self.run_dir / INDEX_FILE
        if not path.is_file():
            return []
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: unreadable checkpoint list ({error}); delete {self.run_dir} "
                             f"to train this run from the start") from None
        kept = []
        for row in rows:
            folder = self.run_dir / row["folder"]
            if not folder.is_dir():
                raise ValueError(f"{path} lists {folder}, which is missing; delete {self.run_dir} "
                                 f"to train this run from the start")
            kept.append(Reported(row["metrics"], Checkpoint.from_directory(str(folder)), row["sequence"]))
        return kept


class BlockDataset:
    """A run's dataset for the in-process worker: the blocks ``wsss.train.common.built_dataset``
    makes, joined, iterated as ``ray.data``'s ``iter_torch_batches`` is (same arguments, one
    tensor per column). No Ray Data: its datasets from object refs run a 1-CPU task per block
    to read their metadata, which never starts while the trials hold every CPU; and the rows
    are in this process already. A local shuffle is a seeded permutation of all rows."""

    def __init__(self, blocks: list[dict[str, Any]]):
        import numpy as np

        names = list(blocks[0]) if blocks else []
        self.columns = {name: np.concatenate([block[name] for block in blocks]) for name in names}
        self.rows = len(next(iter(self.columns.values()))) if self.columns else 0

    def iter_torch_batches(self, *, batch_size: int, device: Any = "cpu",
                           local_shuffle_buffer_size: int | None = None,
                           local_shuffle_seed: int | None = None) -> Iterator[dict[str, Any]]:
        import numpy as np
        import torch

        order = np.arange(self.rows)
        if local_shuffle_buffer_size:
            order = np.random.default_rng(local_shuffle_seed).permutation(self.rows)
        for start in range(0, self.rows, batch_size):
            rows = order[start:start + batch_size]
            yield {name: torch.as_tensor(values[rows]).to(device) for name, values in self.columns.items()}


@contextlib.contextmanager
def active(session: LocalSession) -> Iterator[LocalSession]:
    """Make ``session`` the one ``current()`` returns in this thread for the ``with`` body."""
    token = _CURRENT.set(session)
    try:
        yield session
    finally:
        _CURRENT.reset(token)


def device_for(use_gpu: bool) -> Any:
    """The worker's device: the first visible GPU with ``use_gpu`` (Ray makes it the one it
    gave this process), else the CPU."""
    import torch

    if use_gpu:
        if not torch.cuda.is_available():
            raise RuntimeError("train.scaling.use_gpu is set but this process sees no CUDA device")
        return torch.device("cuda", 0)
    return torch.device("cpu")


def fit_here(loop: Callable[[Any], Any], loop_config: Any, run_dir: str | os.PathLike,
             datasets: dict[str, Any], *, use_gpu: bool, metric: str, mode: str = "max",
             num_to_keep: int = 1, max_failures: int = 0, callbacks: Sequence[Any] = ()) -> Any:
    """Run ``loop(loop_config)`` in this process under a ``LocalSession``; a failure restarts
    it from the latest kept checkpoint up to ``max_failures`` times, then is raised. Returns
    what the loop returned (Train's ``Result.return_value``)."""
    device = device_for(use_gpu)
    for attempt in range(max_failures + 1):
        session = LocalSession(run_dir, datasets, device, metric=metric, mode=mode,
                               num_to_keep=num_to_keep, callbacks=callbacks)
        try:
            with active(session):
                return loop(loop_config)
        except Exception as error:
            if attempt == max_failures:
                raise
            logging.getLogger(__name__).warning(
                "training failed (%s: %s); restarting from the latest checkpoint (%d of %d)",
                type(error).__name__, error, attempt + 1, max_failures)
    raise AssertionError("unreachable")


def fit_in_task(loop: Callable[[Any], Any], loop_config: Any, run_dir: str | os.PathLike,
                datasets: dict[str, Any], *, cpus: float, use_gpu: bool, **options: Any) -> Any:
    """``fit_here`` in one Ray task holding the worker's resources (the driver of ``wsss
    train`` holds none, and the GPU may be on another node)."""
    import ray

    task = ray.remote(num_cpus=cpus, num_gpus=1 if use_gpu else 0, max_retries=0)(fit_here)
    return ray.get(task.remote(loop, loop_config, str(run_dir), datasets, use_gpu=use_gpu, **options))
