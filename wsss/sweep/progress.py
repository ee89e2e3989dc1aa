"""The sweep's trials on the console: one progress line, fed by a Tune callback in the driver."""

from __future__ import annotations

from typing import Any

from wsss import console


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
