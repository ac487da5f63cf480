"""``python -m carelake.serve [serve|register] [--conf FILE] [--port N] [--host H]``.

``serve`` (default) runs the Thrift server until Ctrl-C/SIGTERM; ``register`` refreshes the
metastore catalog once and exits (run it while no server holds the Derby metastore).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from carelake.config import ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve or register; returns the exit code (2 on config errors)."""
    parser = argparse.ArgumentParser(prog="python -m carelake.serve")
    parser.add_argument("command", nargs="?", choices=("serve", "register"), default="serve")
    parser.add_argument("--conf", default=None, help="configuration file (default: conf/local.yaml)")
    parser.add_argument("--port", type=int, default=None, help="port (default: serve.port or 10000)")
    parser.add_argument("--host", default=None, help="bind address (default: serve.host or 127.0.0.1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.conf)
        if args.command == "register":
            from carelake.serve.catalog import register

            return register(config)
        from carelake.serve.thrift import serve

        return serve(config, port=args.port, host=args.host)
    except ConfigError as exc:
        print(f"carelake serve: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
