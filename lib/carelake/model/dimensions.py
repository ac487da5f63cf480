"""The curated dimensions' update rows and their SCD2 specs.

``dim_provider`` keeps the provider's descriptive attributes (names of providers are not
patient PII and analysts need them). ``dim_patient`` is de-identified: only the keyed patient token, source
system, sex, a Safe Harbor birth year and zip3 reach it — never names, SSN, phone, email, street
address, MRN or the birth date.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta.scd2 import Scd2Spec
from carelake.privacy import birth_year_generalised, zip3_generalised

PROVIDER_ATTRIBUTES = (
    "first_name", "last_name", "specialty", "taxonomy_code", "zip", "organization",
    "network_id", "employer_id", "active",
)
PATIENT_ATTRIBUTES = ("source_system", "sex", "birth_year", "zip3")
AGE_GROUP_TOP = 90  # Safe Harbor: everyone older than 89 is shown as 90

DEFAULT_SPECS: dict[str, dict[str, Any]] = {
    "dim_provider": {
        "natural_key": ["npi"], "tracked": list(PROVIDER_ATTRIBUTES), "effective_col": "updated_at",
        "surrogate_col": "provider_sk", "snapshot": False,
    },
    "dim_patient": {
        "natural_key": ["patient_token"], "tracked": list(PATIENT_ATTRIBUTES),
        "effective_col": "updated_at", "surrogate_col": "patient_sk", "snapshot": False,
    },
}


def dimension_spec(config: Config, name: str) -> Scd2Spec:
    """The SCD2 spec of dimension ``name``: the defaults above, overridden key by key by the
    config block ``model.dimensions.<name>``."""
    blocks = config.section("model").get("dimensions") or {}
    block: Mapping[str, Any] = {**DEFAULT_SPECS.get(name, {}), **(blocks.get(name) or {})}
    return Scd2Spec.from_config(block, where=f"{config.source_file}: model.dimensions.{name}")


def provider_updates(providers: DataFrame) -> DataFrame:
    """Processed ``providers`` rows -> dim_provider update rows: ``npi``, the provider
    attributes and ``updated_at`` (the effective time)."""
    return providers.select("npi", *PROVIDER_ATTRIBUTES, "updated_at")


def patient_updates(patients: DataFrame) -> DataFrame:
    """Tokenised processed ``patients`` rows (see :func:`carelake.privacy.tokenise_patient_key`)
    -> de-identified dim_patient update rows: ``patient_token``,
    ``source_system``, ``sex``, ``birth_year``, ``zip3``, ``updated_at``.

    ``birth_year`` is the year of birth; for patients over 89 at ``updated_at`` it is the year
    they would have been born if 90 (so the group is one value and the real year is hidden).
    Age is taken at the record's own ``updated_at`` rather than today, so the same record always
    yields the same row. ``zip3`` follows Safe Harbor (``000`` for sparsely populated areas).
    """
    as_of = F.col("updated_at")
    grouped_year = F.year(as_of) - F.lit(AGE_GROUP_TOP)
    birth_year = F.when(
        F.col("birth_date").isNotNull(),
        F.coalesce(birth_year_generalised(F.col("birth_date"), as_of), grouped_year),
    )
    return patients.select(
        "patient_token",
        "source_system",
        "sex",
        birth_year.cast("int").alias("birth_year"),
        zip3_generalised(F.col("zip")).alias("zip3"),
        "updated_at",
    )
