"""What a person running wsss sees: one line per stage, a progress bar while it works, and its
outcome. Everything else (Ray's, MLflow's and the libraries' logs and warnings, the workers'
output) goes to a log file whose path is printed once; ``--verbose`` brings it all back.

A stage is a context manager::

    with Stage("mask sets", total=150, unit="images") as stage:
        ...
        stage.advance(16)
        stage.done("11 sets, 1650 masks written")

On a terminal the bar redraws in place; elsewhere (CI logs, files) progress is a line at each
quarter, so a log stays short.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

LOG_DIR_ENV = "WSSS_LOG_DIR"
_state: dict = {"verbose": False, "log": None, "out": None, "err": None, "restore": None}


def verbose() -> bool:
    """Whether the libraries' own output goes to the console too (``--verbose``)."""
    return bool(_state["verbose"])


def log_path() -> Path | None:
    return _state["log"]


def out() -> TextIO:
    """Where a verb's results go (a table, JSON): standard output as it was before ``setup``."""
    return _state["out"] or sys.stdout


def err() -> TextIO:
    """Where the stage lines go: standard error as it was before ``setup``."""
    return _state["err"] or sys.stderr


def echo(text: str = "", end: str = "\n") -> None:
    """A verb's result on standard output."""
    print(text, end=end, file=out(), flush=True)


def setup(verbose_output: bool = False, log_dir: str | os.PathLike | None = None) -> Path:
    """Send every library's logging, Python warnings and other output to
    ``logs/wsss-<time>.log`` (or ``$WSSS_LOG_DIR``); print where once. Stage lines (``Stage``,
    ``say``) and results (``echo``) still reach the console. With ``verbose_output`` all of it
    reaches the console as before; ``teardown`` undoes it."""
    folder = Path(log_dir or os.environ.get(LOG_DIR_ENV) or "logs")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"wsss-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler] + ([logging.StreamHandler(sys.stderr)] if verbose_output else [])
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    _state.update(verbose=verbose_output, log=path)
    quiet_libraries()
    if not verbose_output:
        _capture(path)
    say(f"logs: {path}")
    return path


def _capture(path: Path) -> None:
    """Python's and the C libraries' own output (Tune's tables, raylet notices, Ray's core
    logs) to the log file; ``out``/``err`` keep the console for stage lines and results."""
    log = open(path, "a", buffering=1)  # noqa: SIM115 - lives until teardown
    _state.update(out=sys.stdout, err=sys.stderr)
    restore = {"stdout": sys.stdout, "stderr": sys.stderr, "log": log, "fd": None}
    try:
        fd = sys.stderr.fileno()
        saved = os.dup(fd)
        os.dup2(log.fileno(), fd)  # C-level writes to stderr (Ray's core worker) go to the log
        _state["err"] = os.fdopen(saved, "w", buffering=1)
        restore["fd"] = (fd, saved)
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's capture)
        pass
    _state["restore"] = restore
    sys.stdout = sys.stderr = log


def teardown() -> None:
    """Give the console back as ``setup`` found it."""
    restore = _state.get("restore")
    if restore:
        sys.stdout, sys.stderr = restore["stdout"], restore["stderr"]
        if restore["fd"] is not None:
            fd, saved = restore["fd"]
            _state["err"].flush()
            os.dup2(saved, fd)
            _state["err"].close()
        restore["log"].close()
    logging.getLogger().handlers = []
    _state.update(verbose=False, log=None, out=None, err=None, restore=None)


def quiet_libraries() -> None:
    """Route the loggers that libraries give their own console handlers (Ray's) to the file."""
    if _state["log"] is None or verbose():
        return
    for name in ("ray", "ray.data", "ray.tune", "ray.train", "mlflow", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logging.getLogger().handlers]
        logger.propagate = False


class Stage:
    """One line per stage: a progress bar while it runs, then its outcome (see the module doc)."""

    def __init__(self, label: str, total: int | None = None, unit: str = ""):
        self.label, self.total, self.unit = label, total, unit
        self.count, self.note, self.started = 0, "", time.perf_counter()
        self.tty = err().isatty()
        self._shown_quarter = -1

    def __enter__(self) -> Stage:
        self._render()
        return self

    def __exit__(self, kind, error, trace) -> None:
        if error is not None:
            self._line(f"✗ {self.label}: failed ({type(error).__name__})")
        elif self.note is not None:
            self.done(self.note or "done")

    def advance(self, count: int = 1, note: str = "") -> None:
        self.count += count
        self.note = note or self.note
        self._render()

    def set_total(self, total: int) -> None:
        self.total = total
        self._render()

    def done(self, outcome: str) -> None:
        seconds = time.perf_counter() - self.started
        self._line(f"✓ {self.label}: {outcome} ({seconds:.0f} s)")
        self.note = None  # printed: __exit__ adds nothing

    def _bar(self) -> str:
        if not self.total:
            return f"{self.count} {self.unit}".strip() if self.count else "…"
        filled = int(20 * min(self.count, self.total) / self.total)
        return f"▕{'█' * filled}{'░' * (20 - filled)}▏ {self.count}/{self.total} {self.unit}".rstrip()

    def _render(self) -> None:
        text = f"  {self.label} {self._bar()} {self.note}".rstrip()
        if self.tty:
            err().write("\r\033[K" + text)
            err().flush()
            return
        quarter = 4 * self.count // self.total if self.total else 0
        if quarter > self._shown_quarter and quarter < 4:
            self._shown_quarter = quarter
            say(text)

    def _line(self, text: str) -> None:
        if self.tty:
            err().write("\r\033[K")
        say(text)


def say(text: str) -> None:
    """A line of the stage-by-stage account (not a log record), on the console's stderr."""
    print(text, file=err(), flush=True)
