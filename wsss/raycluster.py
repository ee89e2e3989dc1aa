"""Connect to Ray the way users start it: a cluster when one is named, else a local one."""

from __future__ import annotations

import os

from wsss import console


def ensure_ray(num_cpus: int | None = None) -> None:
    """``ray.init()`` once: joins RAY_ADDRESS (or the job's cluster), else starts local Ray.

    Token authentication stays on: local clients read ~/.ray/auth_token, submitted jobs get
    RAY_AUTH_TOKEN from their runtime environment.
    """
    import logging

    import ray
    import ray.data

    if ray.is_initialized():
        return
    # From the command line (console.setup ran), the workers' output goes to Ray's session logs
    # and Ray's own to the log file; the console keeps one line per stage. --verbose: all of it.
    loud = console.verbose() or console.log_path() is None
    kwargs = {"log_to_driver": loud, "logging_level": logging.INFO if loud else logging.WARNING}
    if num_cpus is not None and not os.environ.get("RAY_ADDRESS"):
        kwargs["num_cpus"] = num_cpus
    console.quiet_libraries()  # Ray's own notices at start-up go to the log file too
    ray.init(**kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = loud
    console.quiet_libraries()
    if not loud:
        console.say(f"ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs, "
                    f"{ray.cluster_resources().get('GPU', 0):.0f} GPUs; worker logs in {_session_dir()}")


def _session_dir() -> str:
    """Where this Ray session keeps its logs (workers' stdout and stderr among them)."""
    import ray

    try:
        return str(ray._private.worker.global_worker.node.get_session_dir_path()) + "/logs"
    except AttributeError:  # connected to a cluster: its head node has them
        return "the head node's /tmp/ray/session_latest/logs"
