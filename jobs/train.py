"""spark-submit entry point for the train stage: `spark-submit jobs/train.py [--conf conf/<env>.yaml]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
