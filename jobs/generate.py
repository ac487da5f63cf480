"""Entry point for the sample data generator: `python jobs/generate.py --out DIR --scale N --seed S`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
