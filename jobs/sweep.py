"""Main job: run a whole study from one config (``python jobs/sweep.py --config C``).

Works as a plain local run (embedded Ray, SQLite MLflow store in mlflow/) and through
``ray job submit --working-dir . -- python jobs/sweep.py --config C`` on a cluster. Running
the same command again finishes only what is missing.
"""

import sys

from wsss.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
