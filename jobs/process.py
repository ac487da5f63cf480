"""spark-submit entry point for the process stage: `spark-submit jobs/process.py [--conf conf/<env>.yaml]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["process", *sys.argv[1:]]))
