"""Ray job: train (or reuse) the breed classifier (``python jobs/classify.py --config C [--set k=v]``).

Prints the path of the classifier checkpoint that the CAM labelers read.
"""

import sys

from wsss.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["classify", *sys.argv[1:]]))
