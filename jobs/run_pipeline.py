"""spark-submit entry point for a whole run: `spark-submit jobs/run_pipeline.py [--conf F] [--stages a,b]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
