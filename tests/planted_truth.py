"""The generator's clean records and planted truth as fact-shaped DataFrames.

The measures of :mod:`carelake.curated.outcomes` are pure functions of fact columns; feeding
them the generator's own clean records (``_truth/encounters.csv``, the claims file, the
patients' ages) tests the method against the planted effects in seconds, without running the
pipeline at a scale where provider effects are measurable.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from carelake.generate.truth import (
    ENCOUNTERS_FILE,
    PATIENTS_FILE,
    PROVIDERS_FILE,
    SPECIALTY_HISTORY_FILE,
    TRUTH_DIR,
)

FACILITY = {"RIV": "hospital_a", "LAK": "hospital_b", "SUM": "hospital_c"}  # conf/local.yaml claims values
OPEN = datetime(9999, 12, 31)
# The year the truth tests share (the session fixture ``planted_year`` of tests/conftest.py).
PLANTED_YEAR = {"scale": 0.2, "seed": 42, "start": date(2024, 1, 1)}


def truth_frame(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / TRUTH_DIR / name, dtype={"npi": str, "patient_id": str, "encounter_id": str})


def fact_frames(spark: SparkSession, out: Path, start: date) -> dict[str, DataFrame]:
    """``encounters``, ``claims``, ``patients`` (dim_patient-like) and ``providers``
    (dim_provider-like, from the specialty history) of a clean generated landing folder."""
    enc = truth_frame(out, ENCOUNTERS_FILE)
    enc_df = spark.createDataFrame(enc[["source_system", "encounter_id", "patient_id", "npi", "encounter_type",
                                        "diagnosis_code", "admit_date", "discharge_date", "complication",
                                        "readmitted_30d_flag", "filed_at"]].astype(str)).select(
        F.concat_ws("|", "source_system", "encounter_id").alias("encounter_key"), "source_system",
        F.concat_ws("|", "source_system", "patient_id").alias("patient_token"), "npi", "encounter_type",
        "diagnosis_code", F.to_date("admit_date").alias("admit_date"), F.to_date("discharge_date").alias("discharge_date"),
        (F.col("complication") == "True").cast("int").alias("complication"),
        (F.col("readmitted_30d_flag") == "True").cast("int").alias("readmitted_30d"),
        F.to_timestamp("filed_at").alias("updated_at"))
    claims = pd.concat([pd.read_csv(p, dtype=str) for p in sorted((out / "claims").glob("*.csv"))])
    claims_df = spark.createDataFrame(claims[["CLM_ID", "FACILITY", "ENCOUNTER_REF", "RENDERING_NPI", "PAYER", "ALLOWED",
                                              "FILE_DT"]]).select(
        F.col("CLM_ID").alias("claim_id"),
        F.concat_ws("|", F.col("FACILITY").alias("f"), "ENCOUNTER_REF").alias("_raw_key"),
        F.col("FACILITY"), "ENCOUNTER_REF",
        F.col("RENDERING_NPI").alias("npi"), F.col("PAYER").alias("payer"),
        F.col("ALLOWED").cast("decimal(14,2)").alias("allowed_amount"),
        F.to_timestamp("FILE_DT", "yyyyMMdd HHmmss").alias("updated_at"))
    systems = spark.createDataFrame(list(FACILITY.items()), "FACILITY string, system string")
    claims_df = claims_df.join(F.broadcast(systems), "FACILITY").select(
        "claim_id", F.concat_ws("|", "system", "ENCOUNTER_REF").alias("encounter_key"), "npi", "payer",
        "allowed_amount", "updated_at")
    pats = truth_frame(out, PATIENTS_FILE)
    pats["birth_year"] = start.year - pats["age"]
    start_ts = datetime(start.year, start.month, start.day)
    pat_df = spark.createDataFrame(pats[["source_system", "patient_id", "birth_year"]]).select(
        F.concat_ws("|", "source_system", "patient_id").alias("patient_token"), F.col("birth_year").cast("int"),
        F.lit(start_ts).alias("valid_from"), F.lit(OPEN).alias("valid_to"))
    hist = spark.createDataFrame(truth_frame(out, SPECIALTY_HISTORY_FILE).astype(str))
    following = Window.partitionBy("npi").orderBy("valid_from")
    prov_df = hist.select("npi", "specialty", F.to_timestamp("valid_from").alias("valid_from")).select(
        "npi", "specialty", F.lit("00000").alias("zip"), F.lit("NET").alias("network_id"),
        F.lit("EMP").alias("employer_id"), F.lit(True).alias("active"), "valid_from",
        F.coalesce(F.lead("valid_from").over(following), F.lit(OPEN)).alias("valid_to"))
    return {"encounters": enc_df, "claims": claims_df, "patients": pat_df, "providers": prov_df}


def provider_truth(out: Path) -> pd.DataFrame:
    """The planted per-NPI truth (``_truth/providers.csv``) indexed by NPI."""
    return truth_frame(out, PROVIDERS_FILE).set_index("npi")


def hospital_a_procedures(spark: SparkSession, out: Path) -> DataFrame:
    """hospital_a's procedure files (conf/local.yaml column names) as ``fact_procedure`` columns."""
    rows = pd.concat([pd.read_csv(p, dtype=str) for p in sorted((out / "hospital_a" / "procedures").glob("*.csv"))])
    return spark.createDataFrame(rows[["procedure_id", "provider_npi", "cpt_code", "procedure_date"]]).select(
        "procedure_id", F.col("provider_npi").alias("npi"), F.col("cpt_code").alias("procedure_code"),
        F.to_date("procedure_date").alias("procedure_date"))


def network_frames(spark: SparkSession, out: Path, start: date) -> dict[str, DataFrame]:
    """:func:`fact_frames` plus what the network measures read: ``providers`` with a practice
    ``zip`` (their planted area, which never changes in the generator, as ``<zip3>01``),
    ``homes`` (patient_token, zip3: where each patient lives) and ``referrals`` (fact_referral
    columns, from the CRM files)."""
    facts = fact_frames(spark, out, start)
    practice = spark.createDataFrame(truth_frame(out, PROVIDERS_FILE)[["npi", "practice_zip3"]].astype(str)).select(
        "npi", F.concat(F.col("practice_zip3"), F.lit("01")).alias("_zip"))
    providers = facts["providers"].join(practice, "npi").withColumn("zip", F.col("_zip")).drop("_zip")
    homes = spark.createDataFrame(truth_frame(out, PATIENTS_FILE)[["source_system", "patient_id", "zip3"]].astype(str)).select(
        F.concat_ws("|", "source_system", "patient_id").alias("patient_token"), "zip3")
    rows = pd.concat([pd.read_csv(p, dtype=str) for p in sorted((out / "crm" / "referrals").glob("*.csv"))])
    referrals = spark.createDataFrame(rows[["patient_system", "patient_id", "referring_npi", "referred_to_npi",
                                            "referral_date", "status", "specialty_requested", "modified_at"]]).select(
        F.concat_ws("|", "patient_system", "patient_id").alias("patient_token"), "referring_npi", "referred_to_npi",
        F.to_date("referral_date").alias("referral_date"), "status", "specialty_requested",
        F.to_timestamp("modified_at").alias("updated_at"))
    return {**facts, "providers": providers, "homes": homes, "referrals": referrals}
