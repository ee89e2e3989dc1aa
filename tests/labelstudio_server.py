"""A real Label Studio server on loopback for tests, and the four REST calls a round trip needs.

Label Studio lives in its own venv, ``.venv-labelstudio`` (git-ignored): label-studio 1.23.2 pins
label-studio-sdk 2.1.2, and every SDK 2.x needs opencv-python-headless<5 (2.0.20 on: <4.13, whose
wheels need numpy<2.3), so pip would downgrade the main venv's opencv 5.1 and numpy 2.4. For the
same reason the test process cannot import the SDK; the helpers below send the requests the SDK
sends (``projects.create``, ``projects.import_tasks``, ``annotations.create``,
``projects.exports.download_sync``) with the standard library.

A fresh database costs about 30 s of Django migrations (262 of them, CPU-bound), so
``ensure_labelstudio`` migrates one template database next to the install, with the test user and
its token already in it, and every server starts from a copy (about 4 s to ready).

    reason = ensure_labelstudio()          # None, or why Label Studio cannot be had (skip with it)
    with running_labelstudio(tmp_path) as server:
        project = create_project(server, "pets", LABEL_CONFIG)
        task_ids = import_tasks(server, project, tasks)
        annotate(server, task_ids[0], result)
        exported = export_json(server, project)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cluster_tools import free_port, stop_process_group

REPO = Path(__file__).resolve().parents[1]
LS_VENV = REPO / ".venv-labelstudio"
LS_VERSION = "1.23.2"
DB_NAME = "label_studio.sqlite3"

# The one user of every test server. A legacy token ("Authorization: Token <key>") is the only
# kind that can be fixed in advance (personal access tokens are JWTs the server signs), and
# Label Studio accepts it only where the organization was made with legacy tokens enabled.
USER = "wsss@example.com"
PASSWORD = "wsss-test-password"
TOKEN = "5e55c0ffee5e55c0ffee5e55c0ffee5e55c0ffee"
CREDENTIALS = ["--username", USER, "--password", PASSWORD, "--user-token", TOKEN, "--enable-legacy-api-token"]


def labelstudio_command() -> list[str] | None:
    """The argv prefix that runs Label Studio: the main venv's ``label-studio`` if one is
    installed there, else the separate venv's once its install finished; None otherwise."""
    here = Path(sys.executable).parent / "label-studio"
    if here.exists():
        return [str(here)]
    stamp = LS_VENV / ".installed"
    if stamp.exists() and stamp.read_text().strip() == LS_VERSION:
        return [str(LS_VENV / "bin" / "label-studio")]
    return None


def _template(command: list[str]) -> Path:
    """The migrated database that servers of this install start from (next to its venv)."""
    return Path(command[0]).parent.parent / "labelstudio-template" / DB_NAME


def ensure_labelstudio() -> str | None:
    """Install Label Studio into ``.venv-labelstudio`` when missing (about 1.5 min) and migrate
    the template database (about 30 s). None when ready, else why not (the tests skip with it)."""
    if labelstudio_command() is None:
        python = LS_VENV / "bin" / "python"
        steps = ([] if python.exists() else [[sys.executable, "-m", "venv", str(LS_VENV)]]) + [
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--retries", "1", "--timeout", "60", f"label-studio=={LS_VERSION}"]]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=1200)
            except (OSError, subprocess.TimeoutExpired) as error:
                return f"cannot install label-studio=={LS_VERSION}: {error}"
            if done.returncode != 0:
                return f"cannot install label-studio=={LS_VERSION}: {(done.stdout + done.stderr)[-1500:]}"
        shutil.rmtree(LS_VENV / "labelstudio-template", ignore_errors=True)  # another version's
        (LS_VENV / ".installed").write_text(LS_VERSION)
    command = labelstudio_command()
    template = _template(command)
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        # `label-studio init` migrates and creates the user, its token and the organization;
        # it is built aside and moved in whole so a killed run never leaves half a template.
        with tempfile.TemporaryDirectory(dir=template.parent) as scratch:
            done = subprocess.run(command + ["init", "--data-dir", scratch, *CREDENTIALS],
                                  capture_output=True, text=True, timeout=900, cwd=scratch,
                                  env=_server_env(Path(scratch)), stdin=subprocess.DEVNULL)
            if done.returncode != 0 or not (Path(scratch) / DB_NAME).exists():
                return f"label-studio init failed: {(done.stdout + done.stderr)[-1500:]}"
            os.replace(Path(scratch) / DB_NAME, template)
    return None


def _server_env(data_dir: Path, document_root: Path | None = None) -> dict[str, str]:
    """A clean environment: Label Studio also reads unprefixed names (HOST, PORT, DEBUG,
    USERNAME, DATABASE_NAME, ...) that a CI runner or another test may have set."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL") if key in os.environ}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_HOST="",  # relative URLs in exports, whatever HOST says
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        # nothing leaves the machine: no PyPI version check, no Sentry reports, no analytics
        LABEL_STUDIO_LATEST_VERSION_CHECK="false",
        LABEL_STUDIO_SENTRY_DSN="",
        LABEL_STUDIO_FRONTEND_SENTRY_DSN="",
        LABEL_STUDIO_COLLECT_ANALYTICS="false",
        # refuse (400) an import whose predictions do not fit the labeling config, where 1.23
        # by default only logs it: a round trip should fail on a result Label Studio cannot show
        LABEL_STUDIO_fflag_feat_utc_210_prediction_validation_15082025="true",
    )
    if document_root is not None:  # serve /data/local-files/?d=<path under document_root>
        env.update(LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
                   LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root))
    else:  # else it looks for ./mydata or ./label-studio-data (cwd is the data folder anyway)
        env.update(LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="false")
    return env


@dataclass
class LabelStudioServer:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    token: str  # legacy API token of USER: "Authorization: Token <token>"
    data_dir: Path  # its database, media and exports
    log: Path  # its stdout and stderr
    pid: int  # its process (leader of its own process group)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_labelstudio(tmp_dir: Path, timeout: float = 180.0,
                        document_root: Path | None = None) -> Iterator[LabelStudioServer]:
    """Start Label Studio on a free loopback port with its data under ``tmp_dir``, wait until it
    answers, and stop its process group on exit. ``document_root`` turns on local-file serving."""
    command = labelstudio_command()
    if command is None:
        raise RuntimeError("label-studio is not installed: call ensure_labelstudio() first")
    data_dir = Path(tmp_dir) / "labelstudio"
    data_dir.mkdir(parents=True, exist_ok=True)
    template = _template(command)
    if template.exists() and not (data_dir / DB_NAME).exists():
        shutil.copyfile(template, data_dir / DB_NAME)  # else the server migrates (~30 s)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tmp_dir) / "labelstudio.log"
    # --internal-host is the address it binds; --host would only prefix the URLs it writes.
    argv = command + ["start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
                      "--data-dir", str(data_dir), *CREDENTIALS]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=data_dir, env=_server_env(data_dir, document_root),
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {process.returncode}:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:  # refused while it imports and migrates (URLError is an OSError)
                pass
            if time.monotonic() > deadline:
                # it moves to the next port by itself when ours was taken meanwhile: see the log
                raise TimeoutError(f"Label Studio did not answer on {url} within {timeout:.0f} s:\n{_tail(log)}")
            time.sleep(0.2)
        yield LabelStudioServer(url, TOKEN, data_dir, log, process.pid)
    finally:
        stop_process_group(process, grace=10)


def _call(server: LabelStudioServer, method: str, path: str, body=None):
    """One API call with the token; the server's error text (it names the bad field) on failure."""
    request = urllib.request.Request(
        server.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Token {server.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {path}: {error.code} {error.read().decode(errors='replace')[:4000]}") from None


def create_project(server: LabelStudioServer, title: str, label_config: str) -> int:
    """A new project with this labeling config (XML); its id."""
    return _call(server, "POST", "/api/projects/", {"title": title, "label_config": label_config})["id"]


def import_tasks(server: LabelStudioServer, project_id: int, tasks: list[dict]) -> list[int]:
    """Import tasks (Label Studio JSON: ``data`` plus optional ``predictions``/``annotations``);
    their ids in order. Predictions are checked against the project's labeling config: one
    that names a missing control or label is refused (RuntimeError with the server's reason)."""
    answer = _call(server, "POST", f"/api/projects/{project_id}/import?return_task_ids=true", tasks)
    return answer["task_ids"]


def annotate(server: LabelStudioServer, task_id: int, result: list[dict]) -> int:
    """Add an annotation (a list of regions, as in an export's ``result``) to a task; its id."""
    return _call(server, "POST", f"/api/tasks/{task_id}/annotations/", {"result": result})["id"]


def export_json(server: LabelStudioServer, project_id: int, all_tasks: bool = True) -> list[dict]:
    """The project's standard JSON export: tasks with ``annotations`` (and ``predictions``).
    Label Studio leaves out tasks without annotations unless ``all_tasks``."""
    flag = "true" if all_tasks else "false"
    return _call(server, "GET", f"/api/projects/{project_id}/export?exportType=JSON&download_all_tasks={flag}")


if __name__ == "__main__":  # `python tests/labelstudio_server.py`: install ahead of the tests
    problem = ensure_labelstudio()
    if problem:
        sys.exit(problem)
    print(" ".join(labelstudio_command()), LS_VERSION, "ready")
