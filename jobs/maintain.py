"""spark-submit entry point for the maintain stage: `spark-submit jobs/maintain.py [--conf conf/<env>.yaml]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
