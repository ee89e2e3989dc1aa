"""Ray-free job: the study's tables and figures from a sweep's MLflow runs.

``python jobs/report.py --experiment NAME --out DIR [--tracking-uri URI] [--parent RUN_ID]``;
the same arguments as ``wsss report``.
"""

import sys

from wsss.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
