"""The sweep on the console: the trials' progress line, fed by a Tune callback in the driver,
and the seconds each stage took, for the final summary."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from wsss import console


class StageClock:
    """Wall-clock seconds of each stage of a sweep, in the order they ran."""

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` body as ``name`` (a stage timed twice adds up)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def totals(self) -> dict[str, float]:
        """Each stage's seconds and, last, ``total``: everything since the clock started."""
        return {**self.seconds, "total": time.perf_counter() - self.started}


def stages_line(seconds: dict[str, float]) -> str:
    """``stages (s): data 3 · classifier 137 · … · total 690`` (short: it fits 100 columns)."""
    return "stages (s): " + " · ".join(f"{name} {value:.0f}" for name, value in seconds.items())


WORK_SECONDS = "work_seconds"  # a trial's last result: its epochs' and test's seconds


def overhead_note(overheads: list[float]) -> str:
    """``2.1 s a trial beyond its epochs and test``: the mean of each trial's wall time, from
    Tune starting it to its end, less the seconds its loop spent in epochs and the test."""
    if not overheads:
        return ""
    return f", {sum(overheads) / len(overheads):.1f} s a trial beyond its epochs and test"


def trial_progress(total: int) -> Any:
    """A ``ray.tune.Callback`` drawing ``trials k/total`` with the running trial and epoch,
    and timing each trial's overhead (``overhead_note``) for the stage's last line."""
    import time

    from ray import tune

    class TrialProgress(tune.Callback):
        def __init__(self):
            self.stage: console.Stage | None = None
            self.failed = 0
            self.started: dict[str, float] = {}
            self.work: dict[str, float] = {}
            self.overheads: list[float] = []

        def __getstate__(self) -> dict:  # Tune saves its callbacks with the experiment
            return {"stage": None, "failed": self.failed, "started": {}, "work": {}, "overheads": []}

        def setup(self, **info: Any) -> None:
            self.stage = console.Stage("trials", total=total, unit="trials").__enter__()

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.started[trial.trial_id] = time.perf_counter()

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            name = trial.config.get("trial", {}).get("name", trial.trial_id)
            if WORK_SECONDS in result:
                self.work[trial.trial_id] = float(result[WORK_SECONDS])
            if self.stage is not None and "epoch" in result:
                self.stage.advance(0, f"({name}: epoch {result['epoch']})")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            started, work = self.started.get(trial.trial_id), self.work.get(trial.trial_id)
            if started is not None and work is not None:
                self.overheads.append(time.perf_counter() - started - work)
            if self.stage is not None:
                self.stage.advance(1)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.failed += 1
            if self.stage is not None:
                self.stage.advance(1, f"({self.failed} failed)")

        def on_experiment_end(self, trials, **info) -> None:
            if self.stage is not None:
                self.stage.done(f"{len(trials)} trials, {self.failed} failed{overhead_note(self.overheads)}")
                self.stage = None

    return TrialProgress()
