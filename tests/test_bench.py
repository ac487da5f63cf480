"""The benchmark harness pieces that can fail without a long run: the baseline comparison, the
pandas and DuckDB aggregates on hand-built files, the results writer and the landing-file codec."""

from __future__ import annotations

import argparse
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bench import baselines
from bench.increment import read_rows, render_rows
from bench.probe import ZoneUsage, usage_growth, zone_usage
from bench.report import write_results
from bench.run import alternated, parse_engines

AS_OF = date(2024, 12, 31)
MONEY = pa.decimal128(14, 2)


def _frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns).set_index("npi")


def test_compare_matches_within_relative_tolerance_and_nulls():
    a = _frame(npi=["1", "2"], rate=[0.5, float("nan")], encounters=[3, 4])
    b = _frame(npi=["1", "2"], rate=[0.5 * (1 + 1e-9), float("nan")], encounters=[3, 4])
    assert baselines.compare(a, b) == []


def test_compare_names_differing_column_and_missing_npis():
    a = _frame(npi=["1", "2"], rate=[0.5, 0.25])
    b = _frame(npi=["1", "3"], rate=[0.5001, 0.25])
    problems = baselines.compare(a, b)
    assert problems[0] == "NPIs only in expected: 1, only in actual: 1"
    assert problems[1].startswith("rate: 1 NPIs differ, e.g. 1: 0.5 vs 0.5001")


def test_compare_absolute_tolerance_for_rounded_values():
    a = _frame(npi=["1"], rate=[1 / 3])
    assert baselines.compare(a, _frame(npi=["1"], rate=[0.3333]), abs_tol={"rate": 0.5e-4}) == []
    assert baselines.compare(a, _frame(npi=["1"], rate=[0.3334]), abs_tol={"rate": 0.5e-4}) != []


@pytest.fixture
def processed_files(tmp_path: Path) -> dict[str, list[str]]:
    """Two NPIs: A has 2 encounters in the window (one with two procedures) and one before it;
    B has only claims. Each table is split over two files."""
    d = pa.array
    tables = {
        "encounters": pa.table({
            "encounter_key": ["e1", "e2", "e0"], "npi": ["A", "A", "A"], "patient_key": ["p1", "p1", "p2"],
            "admit_date": d([date(2024, 3, 1), date(2024, 12, 31), date(2023, 12, 31)]),
            "readmitted_30d": [True, None, True], "complication": [False, True, False]}),
        "procedures": pa.table({
            "encounter_key": ["e1", "e1", "e0"], "npi": ["A", "A", "A"],
            "procedure_date": d([date(2024, 3, 1), date(2024, 3, 2), date(2023, 12, 31)]),
            "charge_amount": d([Decimal("100.00"), Decimal("50.50"), Decimal("7.00")], MONEY)}),
        "claims": pa.table({
            "npi": ["A", "B", "B"], "status": ["paid", " Denied ", "paid"],
            "service_date": d([date(2024, 3, 1)] * 3),
            "billed_amount": d([Decimal("200.00"), Decimal("10.00"), Decimal("30.00")], MONEY),
            "paid_amount": d([Decimal("150.00"), Decimal("0.00"), Decimal("20.00")], MONEY)}),
    }
    files = {}
    for name, table in tables.items():
        files[name] = []
        for i, part in enumerate((table.slice(0, 1), table.slice(1))):
            path = tmp_path / f"{name}-{i}.parquet"
            pq.write_table(part, path)
            files[name].append(str(path))
    return files


EXPECTED = pd.DataFrame({
    "npi": ["A", "B"], "encounters": [2, 0], "patients": [1, 0], "procedures": [2, 0],
    "total_cost": [150.5, float("nan")], "cost_per_case": [75.25, float("nan")],
    "readmission_rate": [0.5, float("nan")], "complication_rate": [0.5, float("nan")],
    "claims": [1, 2], "denial_rate": [0.0, 0.5], "paid_billed_ratio": [0.75, 0.5],
}).set_index("npi")


@pytest.mark.parametrize("engine", [baselines.by_pandas, baselines.by_duckdb])
def test_baseline_engines_give_hand_worked_answer(engine, processed_files):
    assert baselines.compare(EXPECTED, engine(processed_files, AS_OF)) == []


def test_curated_view_maps_columns_and_fills_counts():
    features = pd.DataFrame({"npi": ["A"], **{c: [None] for c, _ in baselines.CURATED_COLUMNS.values()}})
    view = baselines.curated_view(features)
    assert list(view.columns) == list(baselines.CURATED_COLUMNS)
    assert view.at["A", "encounters"] == 0.0 and pd.isna(view.at["A", "denial_rate"])


def test_zone_usage_growth(tmp_path: Path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "x.csv").write_bytes(b"ignored")
    before = zone_usage(tmp_path)
    (tmp_path / "raw" / "a.parquet").write_bytes(b"12345")
    assert before == {"raw": ZoneUsage(0, 0)}
    assert usage_growth(before, zone_usage(tmp_path)) == {"raw": ZoneUsage(1, 5)}


def _stage(name: str, wall: float) -> dict:
    return {"stage": name, "status": "ok", "rows_in": 1000, "duration_s": wall, "wall_s": wall,
            "rows_per_s": 1000 / wall, "spark_jobs": 7, "peak_driver_rss": 2**30, "peak_worker_rss": 2**28,
            "files_written": 3, "bytes_written": 2**20, "by_zone": {}, "load1": 1.0}


def _result(scale: float, engine: str, factor: float) -> dict:
    return {"scale": scale, "engine": engine, "load_before": 1.0, "load_after": 2.0, "generate_s": 0.5,
            "stages": [_stage("ingest", 2.0 * scale * factor), _stage("process", 3.0 * scale * factor)],
            "incremental": {"batch": {"encounters": {"new": 10, "changed": 5}},
                            "stages": [_stage("ingest", 0.2 * factor), _stage("process", 0.3 * factor)]},
            "baselines": {"as_of": "2024-12-31", "npis": 2, "duckdb_s": 0.1, "pandas_s": 0.2, "spark_s": 1.0,
                          "aggregates_stage_s": None, "mismatches": []}}


def _pipeline(engine: str, wall: float) -> dict:
    return {"engine": engine, "scale": 1.0, "generate_s": 6.0, "wall_s": wall, "returncode": 0, "status": "ok",
            "stages": {"ingest": {"status": "ok", "duration_s": wall / 2}}, "peak_driver_rss": 2**31,
            "peak_worker_rss": 2**29, "load1_before": 1.0, "load1_mean": 2.5, "load1_max": 4.0, "load1_after": 3.0,
            "errors": []}


def test_write_results_files(tmp_path: Path):
    # rs takes twice jvm's time everywhere
    results = [_result(s, e, 1.0 if e == "jvm" else 2.0) for s, e in alternated([1.0, 4.0, 16.0], ["jvm", "rs"])]
    results[5]["errors"] = ["incremental: ValueError: boom"]
    pipelines = [_pipeline("jvm", 60.0), _pipeline("rs", 100.0), _pipeline("rs", 140.0), _pipeline("jvm", 40.0)]
    paths = write_results(results, tmp_path / "out", "2026-01-01", "python -m bench.run --scales 1,4,16", pipelines)
    assert [p.name for p in paths] == ["2026-01-01.json", "2026-01-01.md", "2026-01-01-time_vs_scale.png"]
    written = json.loads(paths[0].read_text())
    assert [(r["scale"], r["engine"]) for r in written["results"][:3]] == [(1.0, "jvm"), (1.0, "rs"), (4.0, "rs")]
    assert written["pipelines"][1]["wall_s"] == 100.0
    md = paths[1].read_text()
    assert "Run order, each in a process of its own: 1.0 jvm, 1.0 rs, 4.0 rs, 4.0 jvm, 16.0 jvm, 16.0 rs, " in md
    # side by side: jvm 12 s, rs 24 s, ratio 0.5, jobs, driver and worker MB, then the stage loads
    assert "| 4.0 | process | 12.0 | 24.0 | 0.50 | 7 | 7 | 1,024 | 1,024 | 256 | 256 | 1.0 / 1.0 |" in md
    assert "| 4.0 | **all stages** | 20.0 | 40.0 | 0.50 | 14 | 14 | 1,024 | 1,024 | 256 | 256 | – / – |" in md
    assert "| 16.0 | ingest | 0.2 | 0.4 | 0.50 |" in md  # the incremental table
    assert "| 4 | jvm | 6.0 | 40.0 | ok | 20.0 | 2,048 | 512 | 1.0 / 2.5 / 4.0 / 3.0 |" in md
    assert "Mean `carelake run` wall time: jvm 50.0 s (2 runs), rs 120.0 s (2 runs)." in md
    assert "jvm / rs: 0.42 (goal: at most 0.50; met)." in md
    assert "| 4.0 | jvm | process | 1,000 | 12.0 | 83 | 7 | 1,024 | 256 | 3 | 1.0 | 0.3 | 0.025 |" in md
    assert "| rs | process | 1.0 → 4.0 | 4.0 | 4.00 |" in md
    assert "| jvm | process | 1.0 → 16.0 | 16.0 | 16.00 |" in md
    assert "| 1.0 | rs | 2024-12-31 | 2 | 0.10 | 0.20 | 1.00 | – | 10.0 | 5.0 | – | all agree |" in md
    assert md.endswith("- scale 16.0 on rs: incremental: ValueError: boom\n")
    assert paths[2].read_bytes()[:4] == b"\x89PNG"


def test_pipeline_ratio_counts_only_finished_runs(tmp_path: Path):
    failed = {**_pipeline("jvm", 5.0), "status": "failed", "returncode": 1, "errors": ["carelake run exited 1"]}
    md = write_results([_result(1.0, "jvm", 1.0), _result(1.0, "rs", 1.0)], tmp_path, "x", "c",
                       [failed, _pipeline("jvm", 90.0), _pipeline("rs", 100.0)])[1].read_text()
    assert "jvm / rs: 0.90 (goal: at most 0.50; not met)." in md
    assert "- pipeline on jvm: carelake run exited 1" in md


def test_engines_take_turns_per_scale():
    assert alternated([0.0625, 1.0], ["jvm", "rs"]) == [(0.0625, "jvm"), (0.0625, "rs"), (1.0, "rs"), (1.0, "jvm")]
    assert alternated([0], ["jvm", "rs"], start=1) == [(0, "rs"), (0, "jvm")]
    assert alternated([1.0], ["rs"]) == [(1.0, "rs")]


@pytest.mark.parametrize("text", ["jvm,spark", "rs,rs", ","])
def test_engines_argument_rejects_unknown_or_repeated(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected distinct names from jvm, rs"):
        parse_engines(text)
    assert parse_engines(" rs , jvm") == ["rs", "jvm"]


@pytest.mark.parametrize("fmt, options, data", [
    ("csv", {"delimiter": "|"}, b'ID|NAME\n1|"a|b"\n2|c\n'),
    ("json", {}, b'{"id":1,"name":"a"}\n{"id":2,"name":null}\n'),
])
def test_landing_rows_round_trip(fmt, options, data):
    from carelake.config import SourceSystem

    system = SourceSystem("s", "S", fmt, options, "yyyy-MM-dd", "yyyy-MM-dd", "dollars", {})
    rows = read_rows(data, system)
    assert read_rows(render_rows(rows, system), system) == rows


def _as_processed(tmp_path: Path) -> dict[str, list[str]]:
    """The hand-built facts of tests/test_curated_data.py as the processed columns the baselines
    read, one Parquet file per table."""
    from tests import test_curated_data as data

    def rows(records: list[tuple], schema: str) -> list[dict]:
        names = [c.split()[0] for c in schema.split(", ")]
        return [dict(zip(names, r, strict=True)) for r in records]

    enc = rows(data.ENCOUNTERS, data.ENCOUNTER_SCHEMA)
    proc = rows(data.PROCEDURES, data.PROCEDURE_SCHEMA)
    clm = rows(data.CLAIMS, data.CLAIM_SCHEMA)
    tables = {
        "encounters": pa.table({
            "encounter_key": [r["encounter_key"] for r in enc], "npi": [r["npi"] for r in enc],
            "patient_key": [r["patient_token"] for r in enc], "admit_date": [r["admit_date"] for r in enc],
            "readmitted_30d": [bool(r["readmitted_30d"]) for r in enc],
            "complication": [bool(r["complication"]) for r in enc]}),
        "procedures": pa.table({
            "encounter_key": [r["encounter_key"] for r in proc], "npi": [r["npi"] for r in proc],
            "procedure_date": [r["procedure_date"] for r in proc],
            "charge_amount": pa.array([r["charge_amount"] for r in proc], MONEY)}),
        "claims": pa.table({
            "npi": [r["npi"] for r in clm], "status": ["denied" if r["is_denied"] else "paid" for r in clm],
            "service_date": [r["service_date"] for r in clm],
            "billed_amount": pa.array([r["billed_amount"] for r in clm], MONEY),
            "paid_amount": pa.array([r["paid_amount"] for r in clm], MONEY)}),
    }
    files = {}
    for name, table in tables.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
        files[name] = [str(tmp_path / f"{name}.parquet")]
    return files


def test_baselines_match_spark_and_curated_provider_features(spark, tmp_path: Path):
    """pandas, DuckDB and Spark SQL agree with each other and with carelake's own
    provider_features on the hand-built curated model."""
    from carelake.curated.features import provider_features
    from tests import test_curated_data as data

    files = _as_processed(tmp_path)
    duck = baselines.by_duckdb(files, data.AS_OF)
    assert baselines.compare(duck, baselines.by_pandas(files, data.AS_OF)) == []
    frames = {t: spark.read.parquet(*paths) for t, paths in files.items()}
    assert baselines.compare(duck, baselines.by_spark(spark, frames, data.AS_OF)) == []

    curated = baselines.curated_view(provider_features(**data.inputs(spark), as_of=data.AS_OF).toPandas())
    shared = curated.index.intersection(duck.index)
    assert list(shared) == ["1", "2"]  # provider 3 has no events: absent from the baselines
    assert baselines.compare(duck.loc[shared], curated.loc[shared], abs_tol=baselines.curated_tolerances()) == []
    assert duck.loc["1", ["encounters", "patients", "procedures", "claims"]].tolist() == [3, 2, 4, 2]


def test_stream_summary_measures_latency_from_landing_and_its_growth():
    from bench.stream import summarise

    # Two micro-batches: files landed at t=0 and t=10 reach the end of aggregates at 30;
    # a file landed at t=40 reaches it at 100 (the stream fell behind).
    progress = [
        {"files": 2, "landed_at": [0.0, 10.0], "stage_finished_at": {"ingest": 20.0, "process": 25.0, "aggregates": 30.0}},
        {"files": 0, "landed_at": [], "stage_finished_at": {}},
        {"files": 1, "landed_at": [40.0], "stage_finished_at": {"ingest": 60.0, "process": 80.0, "aggregates": 100.0}},
    ]

    summary = summarise(progress)

    assert (summary["micro_batches"], summary["files"]) == (2, 3)
    assert summary["raw"]["p50_s"] == 20.0 and summary["raw"]["max_s"] == 20.0
    assert summary["curated"]["p50_s"] == 30.0 and summary["curated"]["max_s"] == 60.0
    # by landing time: first half [30], second half [20, 60], whose p95 is 20 + 0.95 * 40 = 58
    assert summary["curated"]["p95_growth"] == pytest.approx(58.0 / 30.0)


def test_jobs_of_group_counts_only_that_group_by_python_line(spark):
    from bench.jobs import jobs_of_group

    context = spark.sparkContext
    context.setJobGroup("bench-jobs-test", "counted")
    try:
        context.parallelize(range(4), 2).count()
        context.parallelize(range(4), 2).sum()
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    context.parallelize(range(4), 2).count()  # outside the group: not counted
    sites = jobs_of_group(spark, "bench-jobs-test")
    assert sum(sites.values()) == 2
    assert all(site.startswith("tests/test_bench.py:") for site in sites), sites


def test_jobs_table_puts_before_beside_after_with_totals():
    from bench.jobs import jobs_table

    before = {"full": [{"stage": "process", "spark_jobs": 316, "wall_s": 150.0}]}
    after = {"full": [{"stage": "process", "spark_jobs": 201, "wall_s": 120.5},
                      {"stage": "score", "spark_jobs": 12, "wall_s": 8.0}]}
    lines = jobs_table(before, after).splitlines()
    assert lines[2] == "| process | 316 | 201 | -115 | 150.0 | 120.5 |"
    assert lines[3] == "| score | - | 12 | - | - | 8.0 |"
    assert lines[4] == "| all | 316 | 213 | -103 | | |"
