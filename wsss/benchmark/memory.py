"""What the scaling run measures besides time: driver and worker memory, object-store spill,
bytes on disk.

Memory is sampled in a background thread (every ``interval`` s) rather than read once at the
end: a driver that holds every row until the last batch and then lets go would look flat
at the end and show its peak only while running.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024


@dataclass
class MemoryPeaks:
    """Peaks over one measured run (bytes), and what the worker sum covers."""

    driver_start: int = 0
    driver_peak: int = 0
    private_start: int = 0  # the driver's own memory (RSS less pages shared with other
    private_peak: int = 0  # processes: the object store's, libraries', memory-mapped files')
    workers_peak_sum: int = 0  # the largest sum over all Ray workers at one sample
    workers_peak_max: int = 0  # the largest single worker
    samples: int = 0
    workers_scope: str = "descendants"  # or "all ray:: processes on this machine"
    seconds: float = 0.0

    def as_row(self) -> dict[str, float]:
        return {"driver_peak_mb": self.driver_peak / MB,
                "driver_growth_mb": max(0, self.driver_peak - self.driver_start) / MB,
                "driver_private_peak_mb": self.private_peak / MB,
                "driver_private_growth_mb": max(0, self.private_peak - self.private_start) / MB,
                "workers_peak_mb": self.workers_peak_sum / MB,
                "worker_max_peak_mb": self.workers_peak_max / MB,
                "memory_samples": self.samples}


def is_ray_worker(process) -> bool:
    """Ray renames its worker processes ``ray::IDLE``, ``ray::MapBatches(...)``, ``ray::_map_task``."""
    try:
        cmdline = process.cmdline()
    except Exception:  # noqa: BLE001 - gone or not ours: not a worker we can measure
        return False
    return bool(cmdline) and cmdline[0].startswith("ray::")


def worker_processes(driver) -> tuple[list, str]:
    """The Ray workers of this driver's local Ray (its descendants: ``ray.init`` started the
    raylet); where the driver joined a running cluster, every ``ray::`` process on this machine."""
    import psutil

    workers = [p for p in driver.children(recursive=True) if is_ray_worker(p)]
    if workers:
        return workers, "descendants"
    return [p for p in psutil.process_iter() if is_ray_worker(p)], "all ray:: processes on this machine"


def _rss(process) -> int:
    try:
        return process.memory_info().rss
    except Exception:  # noqa: BLE001 - the worker exited between listing and reading
        return 0


def private_bytes(process) -> int:
    """RSS less its shared pages (Linux: anonymous memory; the object store's pages a driver
    put or read, mapped libraries and memory-mapped files are not the driver's own). RSS where
    the platform does not split it."""
    info = process.memory_info()
    return info.rss - getattr(info, "shared", 0)


class MemorySampler:
    """``with MemorySampler() as peaks:`` samples driver and worker RSS until the block ends.

    The driver is read every ``interval`` s (one /proc read): a short-lived allocation, such as
    a checkpoint loaded to log a model, is caught every time rather than by chance, which would
    make a flat run look as if it grew. Workers are read every ``workers_every`` driver samples
    and listed again every ``relist_every`` worker samples (listing processes costs more than
    reading their RSS, and Ray starts workers on demand)."""

    def __init__(self, interval: float = 0.02, workers_every: int = 10, relist_every: int = 5):
        import psutil

        self.interval, self.workers_every, self.relist_every = interval, workers_every, relist_every
        self.driver = psutil.Process(os.getpid())
        self.peaks = MemoryPeaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemoryPeaks:
        self.peaks.driver_start = self.peaks.driver_peak = _rss(self.driver)
        self.peaks.private_start = self.peaks.private_peak = private_bytes(self.driver)
        self._started = time.perf_counter()
        self._thread.start()
        return self.peaks

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample_driver()
        self._sample_workers(*worker_processes(self.driver))  # the last word, however short the run
        self.peaks.seconds = time.perf_counter() - self._started

    def _loop(self) -> None:
        workers, scope, ticks = [], "descendants", 0
        while not self._stop.is_set():
            self._sample_driver()
            if ticks % self.workers_every == 0:
                if ticks % (self.workers_every * self.relist_every) == 0:
                    workers, scope = worker_processes(self.driver)
                self._sample_workers(workers, scope)
            ticks += 1
            self._stop.wait(self.interval)

    def _sample_driver(self) -> None:
        peaks = self.peaks
        try:
            info = self.driver.memory_info()
        except Exception:  # noqa: BLE001 - /proc unreadable for a moment: the next sample reads it
            return
        peaks.driver_peak = max(peaks.driver_peak, info.rss)
        peaks.private_peak = max(peaks.private_peak, info.rss - getattr(info, "shared", 0))
        peaks.samples += 1

    def _sample_workers(self, workers: list, scope: str) -> None:
        sizes = [_rss(p) for p in workers]
        peaks = self.peaks
        peaks.workers_peak_sum = max(peaks.workers_peak_sum, sum(sizes))
        peaks.workers_peak_max = max(peaks.workers_peak_max, max(sizes, default=0))
        peaks.workers_scope = scope


def spilled_bytes() -> int | None:
    """Bytes this Ray session has spilled from the object store so far (cumulative), asked of
    the raylet through the connected cluster's GCS; None where Ray does not say."""
    try:
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        state = get_state_from_address(ray.get_runtime_context().gcs_address)
        return int(get_memory_info_reply(state).store_stats.spilled_bytes_total)
    except Exception:  # noqa: BLE001 - a private API: report "unknown" rather than fail the run
        return None


def folder_bytes(path: str | os.PathLike) -> int:
    """Bytes of every file under ``path`` (0 where there is none)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += (Path(folder) / name).stat().st_size
            except OSError:
                pass
    return total


def cpu_seconds_by_role(driver) -> dict[int, tuple[str, float]]:
    """Each process's cumulative CPU seconds (user + system) with its role: ``driver`` (this
    process), ``workers`` (``ray::`` processes), ``ray_system`` (the raylet, GCS, dashboard and
    the rest of the driver's descendants: what Ray itself spends on the same cores)."""
    roles = {driver.pid: ("driver", driver)}
    for process in driver.children(recursive=True):
        roles[process.pid] = ("workers" if is_ray_worker(process) else "ray_system", process)
    seconds = {}
    for pid, (role, process) in roles.items():
        try:
            times = process.cpu_times()
        except Exception:  # noqa: BLE001 - exited between listing and reading
            continue
        seconds[pid] = (role, times.user + times.system)
    return seconds


class CpuAccount:
    """CPU seconds each role spent over a ``with`` block (processes started inside it count
    from zero; ones that exit inside it are lost, as worker pools keep theirs)."""

    def __init__(self):
        import psutil

        self.driver = psutil.Process(os.getpid())
        self.spent: dict[str, float] = {}

    def __enter__(self) -> CpuAccount:
        self.before = cpu_seconds_by_role(self.driver)
        return self

    def __exit__(self, *exc) -> None:
        after = cpu_seconds_by_role(self.driver)
        spent = {"driver": 0.0, "workers": 0.0, "ray_system": 0.0}
        for pid, (role, seconds) in after.items():
            spent[role] += seconds - self.before.get(pid, (role, 0.0))[1]
        self.spent = {role: round(value, 3) for role, value in spent.items()}
