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
    """``stages: data 3 s · classifier 137 s · … · total 690 s``."""
    return "stages: " + " · ".join(f"{name} {value:.0f} s" for name, value in seconds.items())


def trial_progress(total: int) -> Any:
    """A ``ray.tune.Callback`` drawing ``trials k/total`` with the running trial and epoch."""
    from ray import tune

    class TrialProgress(tune.Callback):
        def __init__(self):
            self.stage: console.Stage | None = None
            self.failed = 0

        def __getstate__(self) -> dict:  # Tune saves its callbacks with the experiment
            return {"stage": None, "failed": self.failed}

        def setup(self, **info: Any) -> None:
            self.stage = console.Stage("trials", total=total, unit="trials").__enter__()

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            name = trial.config.get("trial", {}).get("name", trial.trial_id)
            if self.stage is not None and "epoch" in result:
                self.stage.advance(0, f"({name}: epoch {result['epoch']})")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            if self.stage is not None:
                self.stage.advance(1)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.failed += 1
            if self.stage is not None:
                self.stage.advance(1, f"({self.failed} failed)")

        def on_experiment_end(self, trials, **info) -> None:
            if self.stage is not None:
                self.stage.done(f"{len(trials)} trials, {self.failed} failed")
                self.stage = None

    return TrialProgress()
