"""spark-submit entry point for the ingest stage: `spark-submit jobs/ingest_raw.py [--conf conf/<env>.yaml]`."""

import sys

from carelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
