#!/usr/bin/env bash
# Start the MLflow tracking server on the project's local store (SQLite + artifact folder).
#   MLFLOW_HOST (default 127.0.0.1), MLFLOW_PORT (default 5000),
#   MLFLOW_BACKEND_STORE_URI (default sqlite:///<this folder>/mlflow.db),
#   MLFLOW_ARTIFACTS_DESTINATION (default <this folder>/artifacts; s3://bucket/prefix on a cluster),
#   MLFLOW_WORKERS (default 1: one process writes the SQLite file; raise it only on a database server)
# Extra arguments go to `mlflow server` unchanged.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mlflow_bin="${MLFLOW_BIN:-$here/../.venv/bin/mlflow}"
[ -x "$mlflow_bin" ] || mlflow_bin="$(command -v mlflow)"
backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$here/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-$here/artifacts}"
mkdir -p "$here/artifacts"
exec "$mlflow_bin" server \
  --backend-store-uri "$backend" \
  --artifacts-destination "$artifacts" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-127.0.0.1}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-1}" \
  "$@"
