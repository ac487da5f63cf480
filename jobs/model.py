"""spark-submit entry point for the model stage: `spark-submit jobs/model.py [--conf conf/<env>.yaml]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["model", *sys.argv[1:]]))
