"""The ``carelake`` command: generate sample data and run pipeline stages.

Every job in ``jobs/`` is this command with its stage name, so ``spark-submit jobs/x.py`` and
``carelake x`` run the same code.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from carelake.config import ConfigError, load_config
from carelake.ops.lock import WriterLockError, writer_lock
from carelake.run import new_run_id
from carelake.spark import JavaError
from carelake.storage import ObjectStoreError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from carelake.config import Config
    from carelake.run import RunSummary

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _add_conf(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conf", dest="conf", default=None,
        help="configuration file (default: $CARELAKE_CONFIG or conf/local.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carelake", description="Healthcare-analytics lakehouse on Spark and Delta Lake.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write a sample landing data set")
    _add_conf(generate)
    generate.add_argument("--out", default=None, help="output folder (default: the configured landing folder)")
    generate.add_argument("--scale", type=float, default=1.0, help="1 is about 100k encounters (default 1)")
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument("--defect-rate", type=float, default=0.0, help="share of rows given a realistic defect")
    generate.add_argument("--months", type=int, default=12,
                          help="months of activity from 2024-01 (default 12; training a model needs 17, see docs/ml.md)")

    land = commands.add_parser("land", help="copy files into the landing zone (S3: checksummed uploads)")
    _add_conf(land)
    land.add_argument("--from", dest="from_dir", required=True, help="folder whose files are landed, paths kept")

    layout = commands.add_parser("layout", help="objects per zone/table under the lakehouse root")
    _add_conf(layout)

    from carelake.pipeline import DEFAULT_STAGES, STAGES

    run = commands.add_parser("run", help="run pipeline stages in order")
    _add_conf(run)
    run.add_argument("--stages", default=None, help="comma-separated stages (default: " + ",".join(DEFAULT_STAGES) + ")")

    for name in STAGES:
        single = commands.add_parser(name, help=f"run the {name} stage")
        _add_conf(single)

    restore = commands.add_parser("restore", help="make an earlier version of a Delta table its latest (time travel)")
    _add_conf(restore)
    restore.add_argument("table", help="<zone>/<table>, e.g. processed/providers")
    restore.add_argument("--version", type=int, required=True, help="the version to bring back (see the table's history)")

    rollback = commands.add_parser("rollback", help="take one ingest batch back out of raw, processed and the logs")
    _add_conf(rollback)
    rollback.add_argument("--batch", required=True, help="the batch id (_batch_id in raw and processed = the ingest run id)")

    replay = commands.add_parser("replay", help="map a FHIR entity's raw resources again by the current conf, and process them again")
    _add_conf(replay)
    replay.add_argument("--source", required=True, help="the FHIR source system, e.g. hospital_d")
    replay.add_argument("--entity", required=True, help="the entity whose mapping changed, e.g. encounters")

    stream = commands.add_parser(
        "stream", help="near-real-time: run the stages on files as they land (micro-batches) until Ctrl-C"
    )
    _add_conf(stream)
    stream.add_argument("--available-now", action="store_true",
                        help="process every file landed so far in micro-batches, then stop (for schedulers)")
    stream.add_argument("--interval", type=float, default=None, help="seconds between micro-batches (default: stream.interval_seconds, 30)")

    lineage = commands.add_parser(
        "lineage", help="where a table or column comes from and what uses it, or every table version a batch touched"
    )
    _add_conf(lineage)
    lineage.add_argument("target", nargs="?", help="<zone>/<table>[.<column>], e.g. curated/provider_features.avg_satisfaction")
    lineage.add_argument("--batch", default=None, help="an ingest batch id: every table version it reached")

    serve = commands.add_parser(
        "serve", help="SQL over JDBC/ODBC: the Spark Thrift server, until Ctrl-C (SIGHUP: pick up new tables now)"
    )
    _add_conf(serve)
    serve.add_argument("--port", type=int, default=None, help="default: serve.port (10000)")
    serve.add_argument("--host", default=None, help="default: serve.host (127.0.0.1)")

    api = commands.add_parser("api", help="the provider HTTP API over the curated tables, until Ctrl-C (docs/api.md)")
    _add_conf(api)
    api.add_argument("--port", type=int, default=None, help="default: api.port (8787)")
    api.add_argument("--host", default=None, help="default: api.host (127.0.0.1)")

    report = commands.add_parser("report", help="write the static dashboard report (<root>/_reports/latest/) from the tables as they are")
    _add_conf(report)

    bi = commands.add_parser("bi", help="Apache Superset over the Thrift server with the repository's dashboards, until Ctrl-C")
    _add_conf(bi)
    bi.add_argument("--port", type=int, default=8088, help="Superset's port on 127.0.0.1 (default 8088)")
    bi.add_argument("--thrift-port", type=int, default=10000, help="the Thrift server's port: reused when one answers, else started")

    register = commands.add_parser("register", help="refresh the SQL catalog (no server may be running)")
    _add_conf(register)

    from carelake.serve.cluster import MASTER_PORT, WEBUI_PORT

    cluster = commands.add_parser("cluster", help="a Spark standalone master and workers on loopback, until Ctrl-C")
    cluster.add_argument("--workers", type=int, default=1)
    cluster.add_argument("--cores", type=int, default=2, help="cores per worker")
    cluster.add_argument("--memory", default="2g", help="memory per worker")
    cluster.add_argument("--port", type=int, default=MASTER_PORT, help=f"master port on 127.0.0.1 (default {MASTER_PORT})")
    cluster.add_argument("--webui-port", type=int, default=WEBUI_PORT, help=f"master web UI port (default {WEBUI_PORT})")
    return parser


def _generate(args: argparse.Namespace) -> int:
    from carelake.generate import generate

    config = load_config(args.conf)
    out = Path(args.out or config.landing)
    manifest = generate(out, config, scale=args.scale, seed=args.seed, defect_rate=args.defect_rate, months=args.months)
    files = len(manifest.files)
    print(f"generated {files} files under {out} ({args.months} months, scale {args.scale}, seed {args.seed}, "
          f"defect rate {args.defect_rate})")
    print(f"manifest: {out / '_manifest.json'}")
    return EXIT_OK


def _write_report(spark: SparkSession, config: Config, summary: RunSummary | None) -> bool:
    """Build the static report and print its path and build time; a report that cannot be built
    is one line on stderr, not a failed run (the tables are written by then)."""
    from carelake.dashboards import build_report
    from carelake.delta import open_tables

    started = time.monotonic()
    try:
        path = build_report(spark, config, open_tables(spark, config), summary)
        print(f"report: {path} (built in {time.monotonic() - started:.1f}s)")
    except Exception as exc:
        print(f"carelake: report not written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    return True


def _run(args: argparse.Namespace, stages: Sequence[str], report: bool = False) -> int:
    from carelake.pipeline import run_pipeline
    from carelake.run import format_summary
    from carelake.spark import build_session

    config = load_config(args.conf)
    spark = build_session(config)
    summary = run_pipeline(spark, config, stages)
    print(format_summary(summary))
    if "aggregates" in stages and summary.status == "ok":
        from carelake.curated import top_providers_report
        from carelake.delta import open_tables

        print(top_providers_report(spark, config, open_tables(spark, config)))
    if report:
        _write_report(spark, config, summary)
    return EXIT_OK if summary.status == "ok" else EXIT_FAILED


def _restore(args: argparse.Namespace) -> int:
    from carelake.delta import open_tables
    from carelake.ops.recovery import restore_table
    from carelake.spark import build_session
    from carelake.storage import ZONES, table_uri

    zone, _, table = args.table.strip("/").partition("/")
    if zone not in ZONES or not table or "/" in table:
        print(f"carelake restore: expected <zone>/<table> with zone one of {', '.join(ZONES)}, found {args.table!r}", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.conf)
    uri = table_uri(config, zone, table)
    tables = open_tables(build_session(config), config)
    if not tables.exists(uri):
        print(f"carelake restore: no Delta table {zone}/{table} at {uri}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # A restore is a write: not while a run or the stream writes (the lakehouse writer lock).
        with writer_lock(config, f"restore-{new_run_id()}"):
            result = restore_table(tables, uri, args.version)
    except ValueError as exc:
        print(f"carelake {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"restored {zone}/{table} to version {args.version}: now version {result.version} "
          f"({result.files_added} file(s) added back, {result.files_removed} removed)")
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from carelake.delta import open_tables
    from carelake.ops.recovery import rollback_batch
    from carelake.spark import build_session

    config = load_config(args.conf)
    spark = build_session(config)
    try:
        with writer_lock(config, f"rollback-{new_run_id()}"):
            report = rollback_batch(spark, config, open_tables(spark, config), args.batch)
    except ValueError as exc:
        print(f"carelake {exc}", file=sys.stderr)
        return EXIT_USAGE
    from carelake.lineage.run import record_rollback

    record_rollback(config, open_tables(spark, config), args.batch, list(report))
    for uri, counts in report.items():
        print(f"{uri}: {counts['rows_deleted']} row(s) deleted, {counts['rows_restored']} restored")
    print(f"batch {args.batch} rolled back; its landing files will be ingested again by the next run. "
          "Curated tables still hold it: run the model and aggregates stages.")
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from carelake.delta import open_tables
    from carelake.ops.replay import replay_entity
    from carelake.spark import build_session

    config = load_config(args.conf)
    spark = build_session(config)
    run_id = new_run_id()
    try:
        with writer_lock(config, f"replay-{run_id}"):
            rows, summary = replay_entity(spark, config, open_tables(spark, config), args.source, args.entity, run_id)
    except ValueError as exc:
        print(f"carelake {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{rows} raw row(s) of {args.source}.{args.entity} mapped again from their resources")
    for name, c in summary.entities.items():
        print(f"process {name}: {c.rows_in} in, {c.rows_valid} valid, {c.rows_quarantined} quarantined, "
              f"{c.duplicates_dropped} duplicate(s)")
    print("Curated tables still hold the earlier values: run the model and aggregates stages.")
    return EXIT_OK if summary.status in ("ok", "nothing-to-do") else EXIT_FAILED


def _stream(args: argparse.Namespace) -> int:
    import dataclasses
    import signal

    from carelake.spark import build_session
    from carelake.stream import StreamSettings, checkpoint_location, start_stream

    config = load_config(args.conf)
    settings = StreamSettings.from_config(config)
    if args.interval is not None:
        settings = dataclasses.replace(settings, interval_seconds=args.interval)
    spark = build_session(config)
    query = start_stream(spark, config, available_now=args.available_now, settings=settings,
                         report=lambda line: print(line, flush=True))
    how = "every file landed so far, then stop" if args.available_now else f"every {settings.interval_seconds:g} s until Ctrl-C"
    print(f"streaming {config.landing} -> {', '.join(settings.stages)} ({how}); checkpoint {checkpoint_location(config)}", flush=True)
    stop_requested = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.append(signum))
    try:
        # SIGTERM: stop between micro-batches, so the running one finishes and is committed.
        while not query.awaitTermination(1):
            if stop_requested and not query.status["isTriggerActive"]:
                query.stop()
    except KeyboardInterrupt:
        query.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    error = query.exception()
    if error is not None:
        print(f"carelake stream: stopped by an error: {str(error).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILED
    print("stream stopped", flush=True)
    return EXIT_OK


def _lineage(args: argparse.Namespace) -> int:
    from carelake.lineage.graph import load_graph
    from carelake.lineage.query import describe, describe_batch
    from carelake.lineage.settings import lineage_settings

    if bool(args.target) == bool(args.batch):
        print("carelake lineage: give either <zone>/<table>[.<column>] or --batch <id>", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.conf)
    folder = lineage_settings(config).folder
    if folder is None:
        print("carelake lineage: no lineage files to read (lineage is off, sent to lineage.url, or the root is "
              "not local: set lineage.dir)", file=sys.stderr)
        return EXIT_USAGE
    graph = load_graph(config, folder)
    try:
        lines = describe_batch(graph, args.batch) if args.batch else describe(graph, args.target)
    except ValueError as exc:
        print(f"carelake {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(lines))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 run failed, 2 usage/config error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # -v shows carelake's own progress, not every library's debug chatter.
    logging.getLogger("carelake").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        if args.command == "generate":
            return _generate(args)
        if args.command == "land":
            from carelake.storage.land import land_files

            config = load_config(args.conf)
            try:
                landed = land_files(config, args.from_dir, progress=print)
            except FileNotFoundError as exc:
                print(f"carelake: {exc}", file=sys.stderr)
                return EXIT_USAGE
            print(f"{sum(o.uploaded for o in landed)} of {len(landed)} file(s) landed in {config.landing}")
            return EXIT_OK
        if args.command == "layout":
            from carelake.storage.land import print_layout

            print_layout(load_config(args.conf))
            return EXIT_OK
        if args.command == "run":
            from carelake.pipeline import DEFAULT_STAGES, STAGES

            stages = [s.strip() for s in (args.stages or ",".join(DEFAULT_STAGES)).split(",") if s.strip()]
            unknown = [s for s in stages if s not in STAGES]
            if unknown:
                print(f"carelake: unknown stage(s) {', '.join(unknown)}: expected some of {', '.join(STAGES)}", file=sys.stderr)
                return EXIT_USAGE
            return _run(args, stages, report=True)
        if args.command == "report":
            from carelake.spark import build_session

            config = load_config(args.conf)
            return EXIT_OK if _write_report(build_session(config), config, None) else EXIT_FAILED
        if args.command == "restore":
            return _restore(args)
        if args.command == "rollback":
            return _rollback(args)
        if args.command == "replay":
            return _replay(args)
        if args.command == "stream":
            return _stream(args)
        if args.command == "lineage":
            return _lineage(args)
        if args.command == "serve":
            from carelake.serve.thrift import serve

            return serve(load_config(args.conf), args.port, args.host)
        if args.command == "api":
            from carelake.serve.api import run_api

            return run_api(load_config(args.conf), args.host, args.port)
        if args.command == "bi":
            from carelake.dashboards.superset import run_bi

            return run_bi(load_config(args.conf), port=args.port, thrift_port=args.thrift_port)
        if args.command == "register":
            from carelake.serve.catalog import register as register_catalog

            return register_catalog(load_config(args.conf))
        if args.command == "cluster":
            from carelake.serve.cluster import run_cluster

            return run_cluster(
                workers=args.workers, cores=args.cores, memory=args.memory, port=args.port, webui_port=args.webui_port
            )
        return _run(args, [args.command])
    except ConfigError as exc:
        print(f"carelake: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JavaError as exc:
        print(f"carelake: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ObjectStoreError as exc:
        print(f"carelake: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except WriterLockError as exc:
        print(f"carelake: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
