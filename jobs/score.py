"""spark-submit entry point for the score stage: `spark-submit jobs/score.py [--conf conf/<env>.yaml]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
