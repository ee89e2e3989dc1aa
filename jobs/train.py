"""Ray job: train a segmentation model (``python jobs/train.py --config C [--labels L] [--model M]``).

The same arguments as ``wsss train``.
"""

import sys

from wsss.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
