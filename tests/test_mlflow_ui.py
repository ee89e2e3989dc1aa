"""The MLflow UI, served by mlflow/serve.sh, lists a sweep's runs in a real headless browser."""

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import REPO

import mlflow

pytestmark = pytest.mark.slow
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_browser() -> str:
    """Chromium's path. CI must run this test (.ci/run installs the browser), so there a missing
    browser fails it; on a developer's machine without one it is skipped, saying what to install."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    advice = ("no Chromium found: install Debian's chromium package (`apt-get install chromium`; "
              ".ci/run does) or set CHROMIUM=/path/to/chrome")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise AssertionError(advice)
    pytest.skip(f"browser test skipped outside CI: {advice}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ui_server(finished_sweep, tmp_path):
    config, _, folder = finished_sweep
    port = free_port()
    env = {**os.environ, "MLFLOW_PORT": str(port), "MLFLOW_BACKEND_STORE_URI": config.tracking.tracking_uri,
           "MLFLOW_ARTIFACTS_DESTINATION": str(folder / "artifacts")}
    server = subprocess.Popen([str(REPO / "mlflow" / "serve.sh")], env=env, start_new_session=True,
                              stdout=open(tmp_path / "server.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(360):  # up to 3 min: a loaded 2-core machine starts it slowly
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"OK":
                break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        raise AssertionError((tmp_path / "server.log").read_text()[-2000:])
    yield url, config
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def test_experiment_page_lists_the_sweep(ui_server, tmp_path):
    url, config = ui_server
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    experiment = mlflow.get_experiment_by_name(config.tracking.experiment)
    total = len(mlflow.search_runs([experiment.experiment_id], output_format="list"))
    page = f"{url}/#/experiments/{experiment.experiment_id}/runs"
    dom = subprocess.run([find_browser(), *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=20000", "--dump-dom", page],
                         capture_output=True, text=True, timeout=180).stdout
    (tmp_path / "page.html").write_text(dom)
    assert f"sweep-{config.name}" in dom, f"no parent run in the page (DOM: {tmp_path / 'page.html'})"
    text = re.sub(r"<!--.*?-->|<[^>]+>", " ", dom)  # "<strong>10</strong> matching runs"
    match = re.search(r"(\d+)\s+matching runs", text)
    assert match, f"no 'N matching runs' in the page (DOM: {tmp_path / 'page.html'})"
    assert int(match.group(1)) == total
