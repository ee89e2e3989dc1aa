"""Benchmark every stage: ``python jobs/benchmark.py [stage ...] [--images N] [--size S] [--out F]``.

The project's path against a plain reference per stage, on the same images in one run; writes
JSON, logs an MLflow run (tag stage=benchmark) and prints a markdown table. ``--help`` lists
the flags; see ``wsss.benchmark.run``. Works locally and through ``ray job submit``.

``python jobs/benchmark.py --scaling 1000,4000,16000 [--scaling-size 64] [--out DIR]`` measures
how cost and memory grow with the image count instead (``wsss.benchmark.scaling``).
"""

import sys

from wsss.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
