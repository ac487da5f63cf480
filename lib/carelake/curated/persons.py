"""Patient records -> people: facts resolved to the enterprise patient token.

``curated/patient_enterprise_tokens`` (written by the model stage, :mod:`carelake.model.persons`)
holds one row per patient record with the keyed token of the person it belongs to. Facts keep
``patient_token``; the curated measures that are about people (readmissions at any hospital,
person-level utilisation) look the person up here.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carelake.model.persons import ENTERPRISE_TOKEN

PERSONS_SCHEMA = f"patient_token string, {ENTERPRISE_TOKEN} string, source_system string, linked boolean"


def with_person(facts: DataFrame, persons: DataFrame | None) -> DataFrame:
    """Rows with ``patient_token`` and the ``patient_enterprise_tokens`` rows (or None) -> the same
    plus ``enterprise_patient_token``; a record without a row (or with no table) is a person of its
    own: its ``patient_token``. A fact that already has the column is returned unchanged."""
    if ENTERPRISE_TOKEN in facts.columns:
        return facts
    if persons is None:
        return facts.withColumn(ENTERPRISE_TOKEN, F.col("patient_token"))
    lookup = persons.select(F.col("patient_token").alias("_pt"), F.col(ENTERPRISE_TOKEN).alias("_ept"))
    joined = facts.join(lookup, facts["patient_token"] == lookup["_pt"], "left")
    return joined.withColumn(ENTERPRISE_TOKEN, F.coalesce("_ept", "patient_token")).drop("_pt", "_ept")


def person_scope(patient_tokens: DataFrame, persons: DataFrame, enterprise_tokens: DataFrame | None = None) -> DataFrame:
    """Patient tokens (``patient_token``) touched by a change, and optionally enterprise tokens
    touched directly (a record joined or left that person) -> every ``patient_token`` of the
    people concerned, distinct: a change to one record of a person changes the person's counts on
    every record of theirs."""
    touched = with_person(patient_tokens.select("patient_token"), persons).select(ENTERPRISE_TOKEN)
    if enterprise_tokens is not None:
        touched = touched.unionByName(enterprise_tokens.select(ENTERPRISE_TOKEN))
    holders = persons.join(touched.distinct(), ENTERPRISE_TOKEN, "left_semi").select("patient_token")
    return patient_tokens.select("patient_token").unionByName(holders).distinct()
