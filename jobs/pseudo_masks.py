"""Ray job: generate a study's mask sets (``python jobs/pseudo_masks.py --config C [--labeler ID ...]``).

Resumable: run it again after a crash and it does only the missing images.
"""

import sys

from wsss.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["pseudo", *sys.argv[1:]]))
