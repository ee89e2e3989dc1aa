"""A Ray Train run's epochs on the console, as they end.

Train calls its callbacks in its controller, an actor apart from the driver that owns the
console, so a callback puts each report on a Ray queue (the way Tune's ``TuneReportCallback``
hands a trial's reports to Tune) and a driver thread moves the stage's bar as they arrive.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from wsss import console

POLL_SECONDS = 0.5  # how long the drawing thread waits on the queue before checking for the end


def report_forwarder(queue: Any) -> Any:
    """A ``ray.train.UserCallback`` putting rank 0's metrics of every report on ``queue``."""
    from ray.train import UserCallback

    class ForwardReports(UserCallback):  # defined here: pickled by value to the controller
        def __init__(self, reports: Any):
            self.reports = reports

        def after_report(self, run_context, metrics, checkpoint) -> None:
            self.reports.put(metrics[0])  # ranks report the same all-reduced epoch

    return ForwardReports(queue)


def show_epoch(stage: console.Stage, row: dict[str, Any], describe: Callable[[dict], str]) -> None:
    """Move the bar to the reported epoch (a resumed run starts past 0; a retried one may
    report an epoch again, which moves nothing)."""
    stage.advance(max(0, int(row["epoch"]) - stage.count), describe(row))


def _draw(queue: Any, stage: console.Stage, describe: Callable[[dict], str],
          finished: threading.Event) -> None:
    from ray.util.queue import Empty

    while not finished.is_set():
        try:
            show_epoch(stage, queue.get(timeout=POLL_SECONDS), describe)
        except Empty:
            continue


@contextlib.contextmanager
def epoch_progress(stage: console.Stage, epochs: int,
                   describe: Callable[[dict], str]) -> Iterator[list]:
    """Train callbacks (for ``RunConfig``) that move ``stage``'s bar to ``k/epochs`` with
    ``describe(metrics)`` beside it as each epoch is reported, while the ``with`` body fits."""
    from ray.util.queue import Queue

    stage.set_total(epochs)
    queue = Queue(actor_options={"num_cpus": 0})  # holds no CPU the Train workers need
    finished = threading.Event()
    drawer = threading.Thread(target=_draw, args=(queue, stage, describe, finished), daemon=True)
    drawer.start()
    try:
        yield [report_forwarder(queue)]
    finally:
        finished.set()
        drawer.join()
    while not queue.empty():  # reports put after the thread's last look (a failed fit skips this)
        show_epoch(stage, queue.get_nowait(), describe)
    queue.shutdown(force=True)  # drained: nothing left to wait for
