"""spark-submit entry point for the landing stream: `spark-submit jobs/stream.py [--conf conf/<env>.yaml] [--available-now]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", *sys.argv[1:]]))
