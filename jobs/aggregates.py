"""spark-submit entry point for the aggregates stage: `spark-submit jobs/aggregates.py [--conf conf/<env>.yaml]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["aggregates", *sys.argv[1:]]))
