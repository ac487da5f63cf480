"""The enterprise patient token in the curated zone: the person behind each patient record, and
readmissions and patient summaries counted per person across hospitals (docs/matching.md).
Expected rows worked out by hand; tokens recomputed here with the standard library's hmac."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from decimal import Decimal as D

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.curated.outcomes import readmission_cases
from carelake.curated.patients import patient_summary
from carelake.curated.persons import PERSONS_SCHEMA, person_scope, with_person
from carelake.delta import open_tables
from carelake.model.persons import (
    ENTERPRISE_TOKEN,
    ENTERPRISE_TOKENS_TABLE,
    enterprise_tokens,
    sync_enterprise_tokens,
)
from carelake.privacy import hmac_sha256_hex
from carelake.storage import table_uri
from tests.test_curated_data import (
    AS_OF,
    ENCOUNTER_SCHEMA,
    OPEN,
    PATIENT_SCHEMA,
    START,
    encounter,
    inputs,
)
from tests.test_curated_outcomes import ENCOUNTER_SCHEMA as STAY_SCHEMA
from tests.test_curated_outcomes import stay
from tests.test_curated_tables import as_facts

KEY = bytes.fromhex("5a" * 32)


def token(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()


def test_enterprise_tokens_come_from_links_and_unlinked_records_keep_their_own(spark: SparkSession) -> None:
    patients = spark.createDataFrame(
        [("k1", "hospital_a"), ("k2", "hospital_b"), ("k3", "hospital_c"), ("k3", "hospital_c")],
        "patient_key string, source_system string")
    links = spark.createDataFrame([("k1", "EP1"), ("k2", "EP1")], "patient_key string, enterprise_patient_id string")
    expected = spark.createDataFrame(
        [(token("k1"), token("EP1"), "hospital_a", True), (token("k2"), token("EP1"), "hospital_b", True),
         (token("k3"), token("k3"), "hospital_c", False)], PERSONS_SCHEMA)
    assert_df_equality(enterprise_tokens(patients, links, KEY), expected, ignore_row_order=True, ignore_nullable=True)
    own = spark.createDataFrame([(token(k), token(k), s, False) for k, s in
                                 (("k1", "hospital_a"), ("k2", "hospital_b"), ("k3", "hospital_c"))], PERSONS_SCHEMA)
    assert_df_equality(enterprise_tokens(patients, None, KEY), own, ignore_row_order=True, ignore_nullable=True)


def test_a_merge_of_two_clusters_rewrites_only_the_relinked_rows(spark: SparkSession, tables, config: Config) -> None:
    uri = table_uri(config, "curated", ENTERPRISE_TOKENS_TABLE)
    patients = spark.createDataFrame([("k1", "hospital_a"), ("k2", "hospital_b"), ("k3", "hospital_c")],
                                     "patient_key string, source_system string")
    first = spark.createDataFrame([("k1", "EP1"), ("k2", "EP2"), ("k3", "EP3")], "patient_key string, enterprise_patient_id string")
    assert sync_enterprise_tokens(tables, uri, enterprise_tokens(patients, first, KEY))[0] == 3
    assert sync_enterprise_tokens(tables, uri, enterprise_tokens(patients, first, KEY)) == (0, None)
    merged = spark.createDataFrame([("k1", "EP1"), ("k2", "EP1"), ("k3", "EP3")], "patient_key string, enterprise_patient_id string")
    written, _ = sync_enterprise_tokens(tables, uri, enterprise_tokens(patients.where("patient_key <> 'k3'"), merged, KEY))
    assert written == 2  # k2 relinked, k3 gone
    stored = {r.patient_token: r.enterprise_patient_token for r in tables.read(uri).collect()}
    assert stored == {token("k1"): token("EP1"), token("k2"): token("EP1")}


# Records a1 (hospital_a) and b1 (hospital_b) are person X, a2 and b2 person Y; c1 has no link.
PERSON_ROWS = [("a1", "X", "hospital_a", True), ("b1", "X", "hospital_b", True),
               ("a2", "Y", "hospital_a", True), ("b2", "Y", "hospital_b", True)]
STAYS = [
    stay("i1", "a1", "1", date(2024, 6, 1), 4),  # discharged 06-05
    stay("i2", "b1", "2", date(2024, 6, 15), 3, system="hospital_b"),  # X again 10 days later, elsewhere
    stay("i3", "c1", "1", date(2024, 8, 1), 2),
    stay("t1", "a2", "1", date(2024, 9, 1), 3),  # discharged 09-04 and admitted at hospital_b that day:
    stay("t2", "b2", "2", date(2024, 9, 4), 2, system="hospital_b"),  # a transfer of Y, t2 is the index
]
OUTCOMES_AS_OF = date(2024, 12, 31)


def test_readmission_at_another_hospital_counts_with_the_enterprise_token_only(spark: SparkSession) -> None:
    persons = spark.createDataFrame(PERSON_ROWS, PERSONS_SCHEMA)
    stays = spark.createDataFrame(STAYS, STAY_SCHEMA)
    columns = ("encounter_key", "outcome", "readmitted_elsewhere")
    by_person = readmission_cases(with_person(stays, persons), OUTCOMES_AS_OF).select(*columns)
    expected = spark.createDataFrame([("i1", 1.0, 1), ("i2", 0.0, 0), ("i3", 0.0, 0), ("t2", 0.0, 0)],
                                     "encounter_key string, outcome double, readmitted_elsewhere int")
    assert_df_equality(by_person, expected, ignore_row_order=True, ignore_nullable=True)
    by_record = readmission_cases(stays, OUTCOMES_AS_OF).select(*columns)
    expected = spark.createDataFrame([(k, 0.0, 0) for k in ("i1", "i2", "i3", "t1", "t2")],
                                     "encounter_key string, outcome double, readmitted_elsewhere int")
    assert_df_equality(by_record, expected, ignore_row_order=True, ignore_nullable=True)


# A (hospital_a) and B (hospital_b) are person P; C has no link; D has no link and no encounter.
# As of 2024-06-30 index stays are those discharged by 2024-05-17.
SUMMARY_ENCOUNTERS = [
    encounter("x1", "A", "1", "inpatient", "I50.9", date(2024, 3, 1), 4, "1000.00", 0, 0, 4),  # out 03-05
    encounter("x2", "B", "2", "inpatient", "I50.9", date(2024, 3, 20), 2, "500.00", 0, 0, 4, system="hospital_b"),
    encounter("x3", "B", "2", "outpatient", "I10", date(2024, 6, 10), 0, "50.00", 0, 0, 4, system="hospital_b"),
    encounter("x4", "C", "1", "inpatient", "I10", date(2024, 4, 1), 3, "800.00", 0, 0, 4),  # out 04-04
    encounter("x5", "C", "1", "inpatient", "I10", date(2024, 4, 20), 1, "200.00", 0, 0, 4),  # 16 days later
]
SUMMARY_PATIENTS = [(1, "A", "hospital_a", "F", 1970, "606", START, OPEN, True),
                    (2, "B", "hospital_b", "F", 1970, "606", START, OPEN, True),
                    (3, "C", "hospital_a", "M", 1950, "441", START, OPEN, True),
                    (4, "D", "hospital_a", "M", 1940, "606", START, OPEN, True)]
PERSON_COLUMNS = (
    "patient_token string, visits long, enterprise_patient_token string, person_records long, "
    "person_source_systems long, person_visits long, person_visits_365d long, person_inpatient_encounters_365d long, "
    "person_total_cost decimal(18,2), person_readmissions_30d long, person_readmissions_30d_elsewhere long"
)
# P: 3 encounters, 2 inpatient, 1550.00; x1 readmitted by x2 at hospital_b (elsewhere); x2 not.
# C: x4 readmitted by x5 at the same hospital.
PERSON_P = ("P", 2, 2, 3, 3, 2, D("1550.00"), 1, 1)
EXPECTED_SUMMARY = [("A", 1, *PERSON_P), ("B", 2, *PERSON_P),
                    ("C", 2, "C", 1, 1, 2, 2, 2, D("1000.00"), 1, 0),
                    ("D", 0, "D", 1, 1, 0, 0, 0, D("0.00"), 0, 0)]


def _summary_inputs(spark: SparkSession) -> dict[str, DataFrame]:
    data = inputs(spark)
    return {**data, "encounters": as_facts(spark.createDataFrame(SUMMARY_ENCOUNTERS, ENCOUNTER_SCHEMA)),
            "patients": spark.createDataFrame(SUMMARY_PATIENTS, PATIENT_SCHEMA),
            "persons": spark.createDataFrame([("A", "P", "hospital_a", True), ("B", "P", "hospital_b", True)], PERSONS_SCHEMA)}


def test_patient_summary_counts_the_person_across_hospitals(spark: SparkSession) -> None:
    data = _summary_inputs(spark)
    columns = [c.split()[0] for c in PERSON_COLUMNS.split(", ")]
    args = (data["encounters"], data["procedures"], data["referrals"], data["patients"], data["providers"], AS_OF)
    actual = patient_summary(*args, persons=data["persons"]).select(*columns)
    expected = spark.createDataFrame(EXPECTED_SUMMARY, PERSON_COLUMNS)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    # without links every record is its own person: x1's readmission at hospital_b is not seen
    alone = {r.patient_token: (r.person_visits, r.person_readmissions_30d) for r in patient_summary(*args).collect()}
    assert alone == {"A": (1, 0), "B": (2, 0), "C": (2, 1), "D": (0, 0)}


def test_person_scope_takes_every_record_of_the_people_touched(spark: SparkSession) -> None:
    persons = spark.createDataFrame(PERSON_ROWS, PERSONS_SCHEMA)
    touched = spark.createDataFrame([("a1",), ("c1",)], "patient_token string")
    assert {r.patient_token for r in person_scope(touched, persons).collect()} == {"a1", "b1", "c1"}
    left = spark.createDataFrame([("Y",)], "enterprise_patient_token string")  # a record left person Y
    assert {r.patient_token for r in person_scope(touched, persons, left).collect()} == {"a1", "b1", "c1", "a2", "b2"}


def test_the_pipeline_resolves_linked_records_to_one_token(spark: SparkSession, tiny_lake: dict) -> None:
    """The shared tiny lake (matching on): every processed record has a row, records the match
    stage put in one cluster share one token and only they do, and patient_summary carries it."""
    config = tiny_lake["config"]
    tables = open_tables(spark, config)
    persons = tables.read(table_uri(config, "curated", ENTERPRISE_TOKENS_TABLE))
    links = tables.read(table_uri(config, "processed", "patient_links_pii"))
    assert persons.count() == tables.read(table_uri(config, "processed", "patients")).select("patient_key").distinct().count()
    tokens = links.select(hmac_sha256_hex(F.col("patient_key"), KEY).alias("patient_token"), "enterprise_patient_id")
    joined = tokens.join(persons, "patient_token")
    assert joined.count() == links.count() and joined.where(~F.col("linked")).count() == 0
    pairs = joined.groupBy("enterprise_patient_id").agg(F.countDistinct(ENTERPRISE_TOKEN).alias("n"))
    assert pairs.where("n <> 1").count() == 0  # one token per enterprise id ...
    per_token = joined.groupBy(ENTERPRISE_TOKEN).agg(F.countDistinct("enterprise_patient_id").alias("n"))
    assert per_token.where("n <> 1").count() == 0  # ... and one enterprise id per token
    assert links.where("cluster_size > 1").count() > 0
    assert persons.where(F.col(ENTERPRISE_TOKEN).startswith("EP")).count() == 0  # tokens, never the id
    summary = tables.read(table_uri(config, "curated", "patient_summary")).join(
        persons.select("patient_token", F.col(ENTERPRISE_TOKEN).alias("_expected")), "patient_token")
    assert summary.where(F.col(ENTERPRISE_TOKEN) != F.col("_expected")).count() == 0
    sizes = links.select(hmac_sha256_hex(F.col("patient_key"), KEY).alias("patient_token"), "cluster_size")
    assert summary.join(sizes, "patient_token").where(F.col("person_records") != F.col("cluster_size")).count() == 0
