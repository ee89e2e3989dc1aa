"""Benchmark every stage: ``python jobs/benchmark.py [stage ...] [--images N] [--size S] [--out F]``.

The project's path against a plain reference per stage, on the same images in one run; writes
JSON, logs an MLflow run (tag stage=benchmark) and prints a markdown table. ``--help`` lists
the flags; see ``wsss.benchmark.run``. Works locally and through ``ray job submit``.
"""

import sys

from wsss.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
