"""Helpers of the cluster tests: free ports, a local S3 (moto server), processes we start and stop.

Every process here is started by the tests in its own session and stopped by its own id
(never ``ray stop`` or a kill by name: other Ray instances on the machine are not ours).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUCKET = "wsss-test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status counts: the server is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop_process_group(process: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group we started (start_new_session=True), then SIGKILL leftovers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived the leader
    except ProcessLookupError:
        pass
    process.wait()


def gcs_address() -> str:
    """The connected Ray's address, for the state API (other Ray instances may run here)."""
    import ray

    return ray.get_runtime_context().gcs_address


def s3_env(port: int) -> dict[str, str]:
    """What boto (fsspec's s3fs) and pyarrow (Ray Train, Tune) read to reach the local S3."""
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


@dataclass
class LocalS3:
    env: dict[str, str]  # what other processes need to reach it (see s3_env)
    pid: int  # the moto server's process


@contextmanager
def local_s3(log_dir: Path) -> Iterator[LocalS3]:
    """A moto S3 server on a free port with bucket BUCKET; this process's environment points
    at it for the duration (restored after)."""
    import s3fs

    port = free_port()
    log = open(log_dir / "moto.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = s3_env(port)
    saved = {key: os.environ.get(key) for key in env}
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process=server)
        os.environ.update(env)
        s3fs.S3FileSystem.clear_instance_cache()  # an instance made earlier knows another endpoint
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield LocalS3(env, server.pid)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3fs.S3FileSystem.clear_instance_cache()
        stop_process_group(server, grace=5)
        log.close()


def s3_keys(prefix: str) -> list[str]:
    """Every object key under ``s3://<prefix>`` (fresh listing)."""
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return sorted(fs.find(prefix))
