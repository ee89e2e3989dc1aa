"""Connect to Ray the way users start it: a cluster when one is named, else a local one."""

from __future__ import annotations

import os


def ensure_ray(num_cpus: int | None = None) -> None:
    """``ray.init()`` once: joins RAY_ADDRESS (or the job's cluster), else starts local Ray.

    Token authentication stays on: local clients read ~/.ray/auth_token, submitted jobs get
    RAY_AUTH_TOKEN from their runtime environment.
    """
    import ray

    if ray.is_initialized():
        return
    kwargs = {"log_to_driver": True}
    if num_cpus is not None and not os.environ.get("RAY_ADDRESS"):
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
