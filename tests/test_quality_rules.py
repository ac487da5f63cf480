"""Row rules and referential rules, one tiny hand-built DataFrame each."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from carelake.quality.rules import ENTITY_ORDER, check_references, check_rows, npi_valid
from carelake.sources.canonical import CANONICAL_SCHEMAS, ENTITIES

GOOD_NPI = "1234567893"


def canonical(spark, entity, rows, raw_columns=()):
    """Rows of ``entity``'s canonical schema (unset columns null) plus ``_raw_<col>`` texts and ``_corrupt_record``."""
    schema = CANONICAL_SCHEMAS[entity]
    extra = [f"_raw_{c}" for c in raw_columns] + ["_corrupt_record"]
    ddl = ", ".join([f"{f.name} {f.dataType.simpleString()}" for f in schema.fields] + [f"{c} string" for c in extra])
    data = [tuple(row.get(c) for c in [*schema.fieldNames(), *extra]) for row in rows]
    return spark.createDataFrame(data, ddl)


def failures(checked, id_column):
    return checked.select(id_column, F.array_sort("_failed_rules").alias("rules"))


def expect(spark, id_column, rows):
    return spark.createDataFrame(rows, f"{id_column} string, rules array<string>")


def test_entity_order_covers_every_entity_with_references_first():
    assert set(ENTITY_ORDER) == set(ENTITIES)
    assert ENTITY_ORDER.index("providers") < ENTITY_ORDER.index("encounters") < ENTITY_ORDER.index("procedures")
    assert ENTITY_ORDER.index("patients") < ENTITY_ORDER.index("encounters") < ENTITY_ORDER.index("claims")


def test_npi_luhn_check_digit(spark):
    df = spark.createDataFrame(
        [("1234567893",), ("1245319599",), ("1234567890",), ("123456789",), ("12345678a3",)], "npi string"
    )
    actual = df.select("npi", npi_valid(F.col("npi")).alias("ok"))
    want = spark.createDataFrame(
        [("1234567893", True), ("1245319599", True), ("1234567890", False), ("123456789", False), ("12345678a3", False)],
        "npi string, ok boolean",
    )
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_provider_npi_and_key_rules(spark):
    df = canonical(spark, "providers", [
        {"npi": GOOD_NPI, "last_name": "ok"},
        {"npi": "1234567890", "last_name": "bad check digit"},
        {"npi": None, "last_name": "missing"},
    ])
    actual = failures(check_rows(df, "providers"), "last_name")
    want = expect(spark, "last_name", [("ok", []), ("bad check digit", ["npi_invalid:npi"]), ("missing", ["key_missing:npi"])])
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_encounter_lists_every_failed_rule(spark):
    df = canonical(spark, "encounters", [
        {"encounter_key": "good", "patient_key": "p", "npi": GOOD_NPI, "admit_date": date(2024, 1, 1),
         "discharge_date": date(2024, 1, 2), "diagnosis_code": "E11.9", "satisfaction_score": 5},
        {"encounter_key": "bad", "patient_key": None, "npi": "1", "admit_date": date(2099, 1, 5),
         "discharge_date": date(2099, 1, 1), "diagnosis_code": "ZZZ", "satisfaction_score": 7},
        {"encounter_key": "unparsed", "patient_key": "p", "npi": GOOD_NPI, "admit_date": date(2024, 1, 1),
         "discharge_date": None, "_raw_discharge_date": "2024-02-30", "satisfaction_score": None,
         "_raw_satisfaction_score": "five"},
    ], raw_columns=("discharge_date", "satisfaction_score"))
    want = expect(spark, "encounter_key", [
        ("good", []),
        ("bad", sorted(["key_missing:patient_key", "npi_invalid:npi", "date_in_future:admit_date",
                        "date_in_future:discharge_date", "discharge_before_admit", "code_invalid:diagnosis_code",
                        "value_out_of_range:satisfaction_score"])),
        ("unparsed", ["date_unparseable:discharge_date", "value_unparseable:satisfaction_score"]),
    ])
    assert_df_equality(failures(check_rows(df, "encounters"), "encounter_key"), want, ignore_row_order=True, ignore_nullable=True)


def test_claim_amount_rules(spark):
    df = canonical(spark, "claims", [
        {"claim_id": "ok", "encounter_key": "e", "npi": GOOD_NPI, "billed_amount": Decimal("10"), "paid_amount": Decimal("10")},
        {"claim_id": "overpaid", "encounter_key": "e", "npi": GOOD_NPI, "billed_amount": Decimal("10"), "paid_amount": Decimal("11")},
        {"claim_id": "negative", "encounter_key": "e", "npi": GOOD_NPI, "allowed_amount": Decimal("-1")},
        {"claim_id": "unparsed", "encounter_key": "e", "npi": GOOD_NPI, "_raw_billed_amount": "12,3a",
         "submitted_date": datetime(2024, 1, 1).date(), "updated_at": datetime(2099, 1, 1)},
    ], raw_columns=("billed_amount",))
    want = expect(spark, "claim_id", [
        ("ok", []),
        ("overpaid", ["paid_exceeds_billed"]),
        ("negative", ["amount_negative:allowed_amount"]),
        ("unparsed", ["amount_unparseable:billed_amount", "date_in_future:updated_at"]),
    ])
    assert_df_equality(failures(check_rows(df, "claims"), "claim_id"), want, ignore_row_order=True, ignore_nullable=True)


def test_procedure_code_shape_and_malformed_row(spark):
    df = canonical(spark, "procedures", [
        {"procedure_key": "cpt", "encounter_key": "e", "npi": GOOD_NPI, "procedure_code": "99213", "code_system": "CPT"},
        {"procedure_key": "bad", "encounter_key": "e", "npi": GOOD_NPI, "procedure_code": "9921", "code_system": None},
        {"procedure_key": "cut", "encounter_key": None, "npi": None, "_corrupt_record": "7,E1,12345"},
    ])
    want = expect(spark, "procedure_key", [
        ("cpt", []),
        ("bad", ["code_invalid:procedure_code"]),
        ("cut", ["key_missing:encounter_key", "key_missing:npi", "row_malformed"]),
    ])
    assert_df_equality(failures(check_rows(df, "procedures"), "procedure_key"), want, ignore_row_order=True, ignore_nullable=True)


def test_references_add_orphans_to_row_failures(spark):
    providers = spark.createDataFrame([(GOOD_NPI,)], "npi string")
    referrals = check_rows(canonical(spark, "referrals", [
        {"referral_id": "ok", "referring_npi": GOOD_NPI, "referred_to_npi": GOOD_NPI},
        {"referral_id": "orphan", "referring_npi": GOOD_NPI, "referred_to_npi": "1245319599"},
        {"referral_id": "both", "referring_npi": "1234567890", "referred_to_npi": None},
    ]), "referrals")
    actual = failures(check_references(referrals, "referrals", {"providers": providers}), "referral_id")
    want = expect(spark, "referral_id", [
        ("ok", []),
        ("orphan", ["orphan:referred_to_npi"]),
        ("both", ["key_missing:referred_to_npi", "npi_invalid:referring_npi", "orphan:referring_npi"]),
    ])
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_references_need_the_referenced_keys(spark):
    checked = check_rows(canonical(spark, "procedures", [{"procedure_key": "x"}]), "procedures")
    with pytest.raises(KeyError, match="encounters"):
        check_references(checked, "procedures", {})
