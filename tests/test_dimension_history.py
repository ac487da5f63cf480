"""Dimension history from the sources' own effective times.

Three quarterly files of hospital_a (providers, patients, encounters) loaded in one batch must
leave the same ``dim_provider``, ``dim_patient`` and ``fact_encounter`` as the same files loaded
one run per quarter (each entity's files one at a time), with
the history the files state in ``updated_at`` order, and every encounter keyed to the versions
valid on its admit date.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import open_tables
from carelake.model import run_model
from carelake.process import run_process
from carelake.process.history import file_versions
from carelake.storage import table_uri
from tests.test_process_stage import land_raw

TOKEN_KEY = "0123456789abcdef" * 4  # one key for both lakehouses: their patient tokens must agree
OPEN = datetime(9999, 12, 31)
A, B = "1234567893", "1245319599"  # valid NPIs

PROVIDER_HEADER = "provider_npi,first_name,last_name,specialty,taxonomy_code,org_name,practice_zip,network_id,employer_id,status,last_updated\n"
PATIENT_HEADER = "patient_id,first_name,last_name,ssn,phone,email,address,birth_date,sex,zip,mrn,last_updated\n"
ENCOUNTER_HEADER = ("encounter_id,patient_id,provider_npi,department,encounter_type,admit_date,discharge_date,dx_code,"
                    "readmit_30d,complication,satisfaction,last_updated\n")

# (file tag, entity, CSV text), in the order the hospital sent them.
FILES = [
    ("2024-01", "providers", PROVIDER_HEADER
     + f"{A},Ann,Lee,Cardiology,207RC0000X,Riverside,60601,N1,E1,A,2023-12-31 10:00:00\n"
     + f"{B},Bo,Ng,Oncology,207RX0202X,Riverside,60602,N1,E2,A,2023-12-15 09:00:00\n"),
    ("2024-01", "patients", PATIENT_HEADER
     + "P1,Al,One,111-22-3333,555,a@x.org,1 Main,1980-01-31,M,60601,M1,2023-12-31 11:00:00\n"),
    ("2024-01", "encounters", ENCOUNTER_HEADER
     + f"E1,P1,{A},ER,outpatient,2024-02-10,2024-02-10,E11.9,N,N,5,2024-02-11 00:00:00\n"),
    # April: A goes inactive (status A -> I); the patient moves to another zip3.
    ("2024-04", "providers", PROVIDER_HEADER
     + f"{A},Ann,Lee,Cardiology,207RC0000X,Riverside,60601,N1,E1,I,2024-04-12 08:30:00\n"),
    ("2024-04", "patients", PATIENT_HEADER
     + "P1,Al,One,111-22-3333,555,a@x.org,9 Lake,1980-01-31,M,53703,M1,2024-04-20 12:00:00\n"),
    ("2024-04", "encounters", ENCOUNTER_HEADER
     + f"E2,P1,{A},ER,outpatient,2024-05-10,2024-05-10,E11.9,N,N,4,2024-05-11 00:00:00\n"),
    # July: A is active again, B moves practice.
    ("2024-07", "providers", PROVIDER_HEADER
     + f"{A},Ann,Lee,Cardiology,207RC0000X,Riverside,60601,N1,E1,A,2024-07-20 07:00:00\n"
     + f"{B},Bo,Ng,Oncology,207RX0202X,Riverside,60614,N1,E2,A,2024-07-03 16:00:00\n"),
    ("2024-07", "encounters", ENCOUNTER_HEADER
     + f"E3,P1,{A},ER,outpatient,2024-08-01,2024-08-01,E11.9,N,N,5,2024-08-02 00:00:00\n"
     + f"E4,P1,{B},ER,outpatient,2024-07-01,2024-07-01,E11.9,N,N,3,2024-07-02 00:00:00\n"),
]


def load(spark, config: Config, runs: list[list[tuple[str, str, str]]]) -> None:
    """Process and model each group of files as one batch, one run per group."""
    tables = open_tables(spark, config)
    for n, files in enumerate(runs):
        for tag, entity, text in files:
            land_raw(spark, tables, config, entity, text, f"b{n}", file=f"hospital_a/{entity}/{tag}",
                     ingested_at=datetime(2024, 9, 1))
        assert run_process(spark, config, tables, f"process-{n}").status == "ok"
        assert run_model(spark, config, tables, f"model-{n}").status == "ok"


def read(spark, config: Config, table: str):
    return open_tables(spark, config).read(table_uri(config, "curated", table))


@pytest.fixture(scope="module")
def lakehouses(spark, base_config: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Config]:
    """(the year loaded in one batch, the same files loaded file by file)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CARELAKE_TOKEN_KEY", TOKEN_KEY)
    overrides = {"quality.great_expectations": False, "matching.enabled": False}
    one = base_config.with_overrides(**overrides, **{"lakehouse.root": str(tmp_path_factory.mktemp("one-batch"))})
    each = base_config.with_overrides(**overrides, **{"lakehouse.root": str(tmp_path_factory.mktemp("file-by-file"))})
    load(spark, one, [FILES])
    # One run per quarter: each run holds one file of each entity.
    load(spark, each, [[f for f in FILES if f[0] == tag] for tag in dict.fromkeys(f[0] for f in FILES)])
    yield one, each
    mp.undo()


def test_file_versions_keep_one_row_per_key_and_file(spark) -> None:
    t0, t1 = datetime(2024, 1, 1), datetime(2024, 4, 1)
    schema = "npi string, zip string, updated_at timestamp, _source_file string, _ingested_at timestamp"
    valid = spark.createDataFrame(
        [
            (A, "60601", t0, "q1.csv", t1),
            (A, "60601", t0, "q1.csv", t1),                      # an exact copy in the same file
            (A, "60601", t1, "q2.csv", t1),                      # the same key in a later file: its own version
            (A, "60699", datetime(2024, 4, 2), "q2.csv", t1),    # repeated in that file, later: the file's version
            (B, "60602", t0, "q1.csv", t1),
            (B, "60602", t0, "q2.csv", t1),                      # the same version in two files: both kept
        ],
        schema,
    )
    expected = spark.createDataFrame(
        [
            (A, "60601", t0, "q1.csv", t1),
            (A, "60699", datetime(2024, 4, 2), "q2.csv", t1),
            (B, "60602", t0, "q1.csv", t1),
            (B, "60602", t0, "q2.csv", t1),
        ],
        schema,
    )
    assert_df_equality(file_versions(valid, "providers"), expected, ignore_row_order=True, ignore_nullable=True)


def test_one_batch_keeps_the_history_the_files_state_in_effective_order(spark, lakehouses) -> None:
    one, _ = lakehouses
    dim = read(spark, one, "dim_provider").select("npi", "active", "zip", "valid_from", "valid_to", "is_current")
    expected = spark.createDataFrame(
        [
            (A, True, "60601", datetime(2023, 12, 31, 10), datetime(2024, 4, 12, 8, 30), False),
            (A, False, "60601", datetime(2024, 4, 12, 8, 30), datetime(2024, 7, 20, 7), False),
            (A, True, "60601", datetime(2024, 7, 20, 7), OPEN, True),
            (B, True, "60602", datetime(2023, 12, 15, 9), datetime(2024, 7, 3, 16), False),
            (B, True, "60614", datetime(2024, 7, 3, 16), OPEN, True),
        ],
        "npi string, active boolean, zip string, valid_from timestamp, valid_to timestamp, is_current boolean",
    )
    assert_df_equality(dim, expected, ignore_row_order=True, ignore_nullable=True)
    patients = read(spark, one, "dim_patient").select("zip3", "valid_from", "valid_to", "is_current")
    assert_df_equality(
        patients,
        spark.createDataFrame(
            [("606", datetime(2023, 12, 31, 11), datetime(2024, 4, 20, 12), False), ("537", datetime(2024, 4, 20, 12), OPEN, True)],
            "zip3 string, valid_from timestamp, valid_to timestamp, is_current boolean",
        ),
        ignore_row_order=True, ignore_nullable=True,
    )
    # processed/providers still holds the latest row per key; the history holds each file's.
    tables = open_tables(spark, one)
    latest = tables.read(table_uri(one, "processed", "providers")).select("npi", "active", "zip")
    assert sorted(tuple(r) for r in latest.collect()) == [(A, True, "60601"), (B, True, "60614")]
    assert tables.read(table_uri(one, "processed", "providers_history")).count() == 5


def test_one_batch_equals_file_by_file(spark, lakehouses) -> None:
    one, each = lakehouses
    for table in ("dim_provider", "dim_patient", "fact_encounter"):
        batch, by_file = read(spark, one, table), read(spark, each, table)
        assert_df_equality(batch.select(*sorted(batch.columns)), by_file.select(*sorted(by_file.columns)),
                           ignore_row_order=True, ignore_nullable=True)


def test_facts_are_keyed_to_the_versions_valid_on_their_event_date(spark, lakehouses) -> None:
    one, _ = lakehouses
    providers = read(spark, one, "dim_provider").select("provider_sk", F.col("valid_from").alias("provider_from"))
    patients = read(spark, one, "dim_patient").select("patient_sk", F.col("zip3"))
    keyed = (read(spark, one, "fact_encounter").join(providers, "provider_sk", "left").join(patients, "patient_sk", "left")
             .select("encounter_id", "provider_from", "zip3"))
    expected = spark.createDataFrame(
        [
            ("E1", datetime(2023, 12, 31, 10), "606"),    # February: A active, the patient in 606
            ("E2", datetime(2024, 4, 12, 8, 30), "537"),  # May: A inactive since April, the patient moved
            ("E3", datetime(2024, 7, 20, 7), "537"),      # August: A active again
            ("E4", datetime(2023, 12, 15, 9), "537"),     # 1 July: B's move on 3 July is not yet in effect
        ],
        "encounter_id string, provider_from timestamp, zip3 string",
    )
    assert_df_equality(keyed, expected, ignore_row_order=True, ignore_nullable=True)
