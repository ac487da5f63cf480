"""spark-submit entry point for the compact stage: `spark-submit jobs/compact.py [--conf conf/<env>.yaml]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["compact", *sys.argv[1:]]))
