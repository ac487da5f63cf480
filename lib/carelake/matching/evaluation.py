"""How good the links are: pairwise precision and recall against a known truth, and the
deterministic rule probabilistic matching is measured against.

A link is an unordered pair of records put in one cluster. Precision: the share of predicted
links that join records of one person; recall: the share of the truth's links that were found.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.config import Config


@dataclass(frozen=True)
class LinkQuality:
    """Pairwise counts and rates of one clustering against the truth."""

    predicted_links: int
    true_links: int
    correct_links: int

    @property
    def precision(self) -> float:
        return self.correct_links / self.predicted_links if self.predicted_links else 1.0

    @property
    def recall(self) -> float:
        return self.correct_links / self.true_links if self.true_links else 1.0


def record_pairs(assignments: DataFrame, record: str, group: str) -> DataFrame:
    """(``record``, ``group``) rows -> every unordered pair of records of one group: ``left``, ``right``
    (``left`` < ``right``). Rows with a null group are in no pair."""
    a = assignments.where(F.col(group).isNotNull()).select(F.col(record).alias("left"), F.col(group).alias("_g"))
    b = a.select(F.col("left").alias("right"), "_g")
    return a.join(b, "_g").where(F.col("left") < F.col("right")).select("left", "right")


def pairwise_quality(predicted: DataFrame, truth: DataFrame, record: str, predicted_group: str, true_group: str) -> LinkQuality:
    """Links of ``predicted`` (``record``, ``predicted_group``) against those of ``truth`` (``record``,
    ``true_group``), over the records both hold."""
    both = predicted.select(record, predicted_group).join(truth.select(record, true_group), record)
    found = record_pairs(both, record, predicted_group).localCheckpoint(eager=True)
    real = record_pairs(both, record, true_group).localCheckpoint(eager=True)
    return LinkQuality(found.count(), real.count(), found.join(real, ["left", "right"]).count())


def exact_rule_groups(identifiers: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    """The deterministic rule: records equal on every one of ``columns`` (none null) are one
    person. Normalised identifiers -> (``patient_key``, ``rule_group``; null when a column is null)."""
    complete = F.lit(True)
    for c in columns:
        complete = complete & F.col(c).isNotNull()
    return identifiers.select("patient_key", F.when(complete, F.concat_ws("|", *columns)).alias("rule_group"))


def planted_registrations(spark: SparkSession, config: Config, scale: float, seed: int) -> dict[str, DataFrame]:
    """The patient records the generator plants for ``scale`` and ``seed`` (its first month, no
    files written) as ``patients`` (processed/patients-shaped), ``pii`` (patients_pii-shaped) and
    ``truth`` (``patient_key``, ``person_id``) frames."""
    from carelake.generate.generator import patient_registrations
    from carelake.sources.conform import surrogate_key

    registrations, persons = patient_registrations(config, scale=scale, seed=seed)
    rows = pd.concat([pd.DataFrame({**p.columns, "source_system": system}) for system, p in registrations])
    rows["birth_date"] = pd.to_datetime(rows["birth_date"]).dt.date
    rows = rows.astype(object).where(rows.notna(), None)
    columns = ["source_system", "patient_id", "first_name", "last_name", "ssn", "phone", "birth_date", "sex", "zip", "updated_at"]
    # Python values, not the pandas frame: without Arrow (off, or its fallback taken) PySpark
    # refuses a pandas Timestamp for a timestamp column.
    data = [tuple(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in row)
            for row in rows[columns].itertuples(index=False, name=None)]
    frame = spark.createDataFrame(
        data,
        "source_system string, patient_id string, first_name string, last_name string, ssn string, phone string, "
        "birth_date date, sex string, zip string, updated_at timestamp")
    frame = frame.select("*", surrogate_key(F.col("source_system"), F.col("patient_id")).alias("patient_key"))
    truth = spark.createDataFrame(pd.DataFrame({"source_system": persons.source_system, "patient_id": persons.patient_id,
                                                "person_id": persons.person_id, "twin_of": persons.twin_of}).astype(object),
                                  "source_system string, patient_id string, person_id string, twin_of string")
    truth = truth.select(surrogate_key(F.col("source_system"), F.col("patient_id")).alias("patient_key"), "person_id", "twin_of")
    return {"patients": frame.select("patient_key", "source_system", "patient_id", "birth_date", "sex", "zip", "updated_at"),
            "pii": frame.select("patient_key", "source_system", "first_name", "last_name", "ssn", "phone", "updated_at"),
            "truth": truth}
