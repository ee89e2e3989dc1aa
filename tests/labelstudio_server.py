"""A real Label Studio server on loopback for tests, and a reviewer's round trip through its SDK.

Label Studio lives in its own venv, ``.venv-labelstudio`` (git-ignored): label-studio 1.23.2 pins
label-studio-sdk 2.1.2, and every SDK 2.x needs opencv-python-headless<5 (2.0.20 on: <4.13, whose
wheels need numpy<2.3), so pip would downgrade the main venv's opencv 5.1 and numpy 2.4. For the
same reason the test process cannot import the SDK: ``sdk_round_trip`` runs the SDK client
(``labelstudio_sdk_client.py``) with the Label Studio venv's Python.

A fresh database costs about 30 s of Django migrations (262 of them, CPU-bound), so
``ensure_labelstudio`` migrates one template database next to the install, with the test user and
its token already in it, and every server starts from a copy (about 4 s to ready).

    reason = ensure_labelstudio()          # None, or why Label Studio cannot be had (skip with it)
    with running_labelstudio(tmp_path) as server:
        exported = sdk_round_trip(server, "pets", LABEL_CONFIG, tasks, {0: result}, tmp_path)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


def _run(argv: list[str], timeout: float, **kwargs) -> str | None:
    """Run a step of the install; None when it worked, else the end of its output."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              **kwargs)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if done.returncode == 0 else (done.stdout + done.stderr)[-1500:]


def ensure_labelstudio() -> str | None:
    """Install Label Studio into ``.venv-labelstudio`` when missing and migrate the template
    database. None when ready, else why not (the tests skip with it).

    uv, not pip, installs it: 16 s instead of 75-90 s on 2 cores (pip's resolver and byte-compiling
    of 1 GB of packages are CPU-bound); uv compiles nothing, and the migration run compiles
    what the server imports. pip is the fallback where uv cannot reach the index pip uses."""
    if labelstudio_command() is None:
        python = str(LS_VENV / "bin" / "python")
        spec = f"label-studio=={LS_VERSION}"
        quiet = ["--quiet", "--disable-pip-version-check", "--retries", "1", "--timeout", "60"]  # fail fast offline
        problem = None if Path(python).exists() else _run([sys.executable, "-m", "venv", str(LS_VENV)], 300)
        if problem is None:
            problem = (_run([python, "-m", "pip", "install", *quiet, "uv"], 600)
                       or _run([str(LS_VENV / "bin" / "uv"), "pip", "install", "--quiet", "--python", python,
                                spec], 1200))
            if problem is not None:  # uv ignores pip's config (index, mirrors): let pip try
                problem = _run([python, "-m", "pip", "install", *quiet, spec], 1800)
        if problem is not None:
            return f"cannot install {spec} into {LS_VENV}: {problem}"
        shutil.rmtree(LS_VENV / "labelstudio-template", ignore_errors=True)  # another version's
        (LS_VENV / ".installed").write_text(LS_VERSION)
    command = labelstudio_command()
    template = _template(command)
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        # `label-studio init` migrates and creates the user, its token and the organization;
        # it is built aside and moved in whole so a killed run never leaves half a template.
        with tempfile.TemporaryDirectory(dir=template.parent) as scratch:
            problem = _run(command + ["init", "--data-dir", scratch, *CREDENTIALS], 900, cwd=scratch,
                           env=_server_env(Path(scratch)))
            if problem is not None or not (Path(scratch) / DB_NAME).exists():
                return f"label-studio init failed: {problem}"
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
    credentials = CREDENTIALS
    if template.exists() and not (data_dir / DB_NAME).exists():
        shutil.copyfile(template, data_dir / DB_NAME)  # else the server migrates (~30 s)
        credentials = []  # the user is in it: spare the password hashing (~0.5 s) of a re-create
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tmp_dir) / "labelstudio.log"
    # --internal-host is the address it binds; --host would only prefix the URLs it writes.
    argv = command + ["start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
                      "--data-dir", str(data_dir), *credentials]
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


def sdk_round_trip(server: LabelStudioServer, title: str, label_config: str, tasks: list[dict],
                   annotations: dict[int, list[dict]], work: Path) -> list[dict]:
    """The reviewer's side through Label Studio's SDK (``labelstudio_sdk_client.py``, run by the
    Label Studio venv's Python): a project with ``label_config``, ``tasks`` imported, the tasks at
    the indices of ``annotations`` annotated with those results; the project's JSON export."""
    request, export = Path(work) / "sdk-request.json", Path(work) / "sdk-export.json"
    request.write_text(json.dumps({"title": title, "label_config": label_config, "tasks": tasks,
                                   "annotations": {str(k): v for k, v in annotations.items()}}))
    python = Path(labelstudio_command()[0]).parent / "python"
    done = subprocess.run([str(python), str(Path(__file__).with_name("labelstudio_sdk_client.py")), server.url,
                           server.token, str(request), str(export)], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"the SDK client failed ({done.returncode}):\n{done.stderr[-4000:]}\n"
                           f"server log:\n{_tail(server.log)}")
    return json.loads(export.read_text())


if __name__ == "__main__":  # `python tests/labelstudio_server.py`: install ahead of the tests
    problem = ensure_labelstudio()
    if problem:
        sys.exit(problem)
    print(" ".join(labelstudio_command()), LS_VERSION, "ready")
