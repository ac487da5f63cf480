"""What changed in the aggregates stage's inputs since the versions it last consumed.

Changed fact rows are found without scanning whole facts: the data files added or removed since
the consumed version name the (``service_month``, ``npi_bucket``) partitions that changed, and
only those partitions are compared between the two versions. The changed rows give the NPIs,
patients, months and enterprise persons the stage recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.model.persons import ENTERPRISE_TOKEN, ENTERPRISE_TOKENS_TABLE

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

FACT_EVENT_DATES = {
    "fact_encounter": "admit_date", "fact_procedure": "procedure_date",
    "fact_claim": "service_date", "fact_referral": "referral_date",
}
# Columns of a changed input row that say which NPIs / patients / months it touches.
TOUCHES = {
    "fact_encounter": (("npi",), ("patient_token",)),
    "fact_procedure": (("npi",), ("patient_token",)),
    "fact_claim": (("npi",), ("patient_token",)),
    "fact_referral": (("referring_npi", "referred_to_npi"), ("patient_token",)),
    "dim_provider": (("npi",), ()),
    "dim_patient": ((), ("patient_token",)),
    "crm_activity": (("npi",), ()),
    ENTERPRISE_TOKENS_TABLE: ((), ("patient_token",)),
}


@dataclass
class Changes:
    """What changed since the consumed versions: NPIs, patients and fact months touched."""

    npis: DataFrame
    patients: DataFrame
    months: list[str]
    provider_npis: DataFrame  # NPIs whose dim_provider rows changed (their patients' zip3 fallback moves)
    persons: DataFrame  # enterprise tokens a record joined or left (every record of those people moves)


def changed_rows(tables: DeltaTables, uri: str, before: int, after: int) -> DataFrame:
    """Rows in version ``after`` and not ``before`` or the reverse: new, changed and removed rows.

    Partitioned tables compare only the partitions whose data files differ."""
    old_files = {f["path"]: f["partition_values"] for f in tables.files(uri, version=before)}
    new_files = {f["path"]: f["partition_values"] for f in tables.files(uri, version=after)}
    old, new = tables.read(uri, version=before), tables.read(uri, version=after)
    differing = [values for path, values in {**old_files, **new_files}.items() if (path in old_files) != (path in new_files)]
    if differing and all(differing):
        predicate = reduce(
            lambda a, b: a | b,
            [reduce(lambda x, y: x & y, [F.col(k).eqNullSafe(F.lit(v)) for k, v in values.items()]) for values in differing],
        )
        old, new = old.where(predicate), new.where(predicate)
    return new.subtract(old).unionByName(old.subtract(new))


def changes_since(spark: SparkSession, tables: DeltaTables, uris: dict[str, str], consumed: dict[str, int], versions: dict[str, int]) -> Changes:
    """What the inputs' rows between the ``consumed`` versions and ``versions`` touch (an input
    not consumed before counts whole)."""
    empty_npis = spark.createDataFrame([], "npi string")
    npis, patients, months, provider_npis = [empty_npis], [spark.createDataFrame([], "patient_token string")], set(), empty_npis
    persons = spark.createDataFrame([], f"{ENTERPRISE_TOKEN} string")
    for name, version in versions.items():
        if consumed.get(name) == version:
            continue
        rows = (
            changed_rows(tables, uris[name], consumed[name], version)
            if name in consumed
            else tables.read(uris[name], version=version)
        ).localCheckpoint(eager=True)  # used for several key sets below
        npi_cols, patient_cols = TOUCHES[name]
        npis.extend(rows.select(F.col(c).alias("npi")) for c in npi_cols)
        patients.extend(rows.select(F.col(c).alias("patient_token")) for c in patient_cols)
        if name in FACT_EVENT_DATES:
            months.update(r[0] for r in rows.select("service_month").distinct().collect())
        if name == "dim_provider":
            provider_npis = rows.select("npi")
        if name == ENTERPRISE_TOKENS_TABLE:  # old and new rows: the person left and the one joined
            persons = rows.select(ENTERPRISE_TOKEN)
    return Changes(distinct_keys(npis), distinct_keys(patients), sorted(months), provider_npis.distinct(),
                   distinct_keys([persons]))


def distinct_keys(frames: list[DataFrame]) -> DataFrame:
    column = frames[0].columns[0]
    return reduce(DataFrame.unionByName, frames).where(F.col(column).isNotNull()).distinct()
