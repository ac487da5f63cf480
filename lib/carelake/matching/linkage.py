"""Probabilistic record linkage with Splink (Fellegi-Sunter), on DuckDB or on Spark.

The model compares first names (exact, nicknames from the ``nicknames`` package, Jaro-Winkler),
last names (Jaro-Winkler with term-frequency adjustment: a shared "Smith" says less than a
shared "Okafor"), birth date (exact, one edit, within a month / year),
sex, zip, SSN (exact, one or two edits: a transposition is one) and phone. Its m and u
probabilities are estimated on every run from the records themselves: u by random sampling,
m by expectation maximisation on two blocking passes (birth date, then SSN), so no labelled
pairs are needed. Pairs are generated only within the blocking rules below; every scored pair
at or above ``review_threshold`` is returned, and records are clustered (connected components)
over the pairs at or above ``match_threshold``.

Backends: ``duckdb`` collects the normalised identifiers to the driver (they fit in memory at
the populations this project serves: 40k records take seconds) and runs Splink in-process;
``spark`` runs the same model on the cluster with Splink's Scala similarity functions (the jar
Splink ships, added to the session here). docs/matching.md has the measurements behind the
default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.config import Config, ConfigError

BACKENDS = ("duckdb", "spark")
MATCH, REVIEW = "match", "review"
# Candidate pairs: records sharing any of these (an OR of rules; a pair is scored once).
BLOCKING_RULES: tuple[tuple[str, ...], ...] = (
    ("ssn",), ("birth_date",), ("phone",), ("last_name", "zip5"), ("first_name", "last_name"),
)
# m probability of "unrelated first name, SSN not matching" among records of one person.
DIFFERENT_PERSON_M = 1e-6
# Expectation maximisation passes: each estimates the m probabilities of the columns it does not block on.
EM_BLOCKING_RULES: tuple[tuple[str, ...], ...] = (("birth_date",), ("ssn",))


@dataclass(frozen=True)
class MatchSettings:
    """Matching configuration (section ``matching``)."""

    enabled: bool = True
    backend: str = "duckdb"
    match_threshold: float = 0.99  # a pair at or above is the same person
    review_threshold: float = 0.5  # pairs between this and match_threshold are kept for review
    u_sample_pairs: float = 2e6  # record pairs sampled to estimate u probabilities
    seed: int = 42

    @classmethod
    def from_config(cls, config: Config) -> MatchSettings:
        block, where = config.settings("matching", cls.__dataclass_fields__)
        def typed(key: str, value: Any) -> Any:
            if isinstance(getattr(cls, key), bool):  # "false" from the environment is False
                return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes")
            return type(getattr(cls, key))(value)

        settings = cls(**{k: typed(k, v) for k, v in block.items()})
        if settings.backend not in BACKENDS:
            raise ConfigError(f"{where}.backend: expected one of {', '.join(BACKENDS)}, found {settings.backend!r}")
        if not 0 < settings.review_threshold <= settings.match_threshold < 1:
            raise ConfigError(f"{where}: expected 0 < review_threshold <= match_threshold < 1, found "
                              f"{settings.review_threshold} and {settings.match_threshold}")
        return settings


def first_name_comparison() -> Any:
    """First name: exact, nickname (``first_name_names`` overlap: Bob and Robert), Jaro-Winkler
    >= 0.92 and >= 0.8, a different name on a record with the same SSN, and else.

    The last level is close to a veto, with a fixed, tiny m probability: a registration of
    the same person with an unrelated first name *and* no matching SSN is rare, while twins
    share a birth date, last name, zip and often a phone -- evidence Fellegi-Sunter adds up as
    if independent, so without it they score as one person. Its m is fixed
    (:data:`DIFFERENT_PERSON_M`), not estimated: EM would learn it from the twins it cannot
    tell apart.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name="first_name",
        comparison_description="first name, nickname-aware; unrelated names without a matching SSN as different people",
        comparison_levels=[
            cll.NullLevel("first_name"),
            cll.ExactMatchLevel("first_name"),
            cll.ArrayIntersectLevel("first_name_names", 1).configure(label_for_charts="nickname"),
            cll.JaroWinklerLevel("first_name", 0.92),
            cll.JaroWinklerLevel("first_name", 0.8),
            cll.ExactMatchLevel("ssn").configure(label_for_charts="different first name, same SSN"),
            cll.ElseLevel().configure(m_probability=DIFFERENT_PERSON_M, fix_m_probability=True,
                                      label_for_charts="unrelated first name, SSN not matching"),
        ],
    )


def splink_settings() -> Any:
    """The Splink model: comparisons, blocking rules, the record id ``patient_key``."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="patient_key",
        comparisons=[
            first_name_comparison(),
            cl.JaroWinklerAtThresholds("last_name", [0.92, 0.8]).configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.ExactMatch("sex"),
            cl.ExactMatch("zip5"),
            cl.DamerauLevenshteinAtThresholds("ssn", [1, 2]),
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=[block_on(*rule) for rule in BLOCKING_RULES],
        additional_columns_to_retain=["source_system"],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=True,  # each comparison's match weight, for review
    )


def _database(spark: SparkSession, backend: str) -> Any:
    if backend == "duckdb":
        from splink import DuckDBAPI

        return DuckDBAPI()
    from splink import SparkAPI
    from splink.backends.spark import similarity_jar_location

    # Splink's Scala similarity functions (jaro_winkler, damerau_levenshtein, ...); their one
    # dependency, Apache Commons Text, ships with pip pyspark.
    spark.sql(f"ADD JAR '{similarity_jar_location()}'")
    return SparkAPI(spark_session=spark, break_lineage_method="persist")


def _to_spark(spark: SparkSession, table: Any, backend: str, columns: list[str] | None = None) -> DataFrame:
    """A Splink result as a Spark DataFrame (only ``columns`` when given: the clusters table also
    carries every input column, identifiers included, which need not leave the matcher)."""
    if backend == "spark":
        frame = spark.table(table.physical_name)
        return frame.select(*columns) if columns else frame
    frame = table.as_pandas_dataframe()
    if columns:
        frame = frame[columns].copy()
    # an explicit schema: a run may score no pair at all, and Spark infers none from no rows
    schema = ", ".join(f"`{c}` {'double' if frame[c].dtype.kind in 'fiu' else 'string'}" for c in frame.columns)
    text = [c for c in frame.columns if frame[c].dtype.kind not in "fiu"]
    frame[text] = frame[text].astype(object).where(frame[text].notna(), None)
    return spark.createDataFrame(frame, schema)


def _sharing(identifiers: DataFrame, columns: tuple[str, ...]) -> bool:
    """Whether two records have equal, non-null ``columns``."""
    present = identifiers.dropna(subset=list(columns))
    return present.groupBy(*columns).count().where(F.col("count") > 1).limit(1).count() > 0


@dataclass
class Linkage:
    """What one matching run found: scored pairs and clusters (Spark DataFrames)."""

    # patient_key_l/_r, source_system_l/_r, match_weight, match_probability, mw_* (the match weight
    # each comparison contributed; mw_tf_adj_last_name the last name's frequency adjustment), decision
    pairs: DataFrame
    clusters: DataFrame  # patient_key, cluster_id
    notes: list[str]  # estimation steps that had too little to go on


def link_records(spark: SparkSession, identifiers: DataFrame, settings: MatchSettings) -> Linkage:
    """Normalised identifiers (:func:`carelake.matching.normalised_identifiers`) -> the pairs
    scored at or above ``review_threshold`` with their ``decision`` (``match`` at or above
    ``match_threshold``, else ``review``) and every record's cluster."""
    from splink import Linker, block_on
    from splink.internals.exceptions import EMTrainingException  # not re-exported publicly

    db = _database(spark, settings.backend)
    records = identifiers if settings.backend == "spark" else identifiers.toPandas()
    linker = Linker(db.register(records, table_name="carelake_patient_identifiers"), splink_settings(), log_level=None)
    training, notes = linker.training, []
    if _sharing(identifiers, ("ssn", "birth_date")):
        training.estimate_probability_two_random_records_match([block_on("ssn", "birth_date")], recall=0.7)
    else:  # Splink would estimate 0 and fail on its logarithm
        notes.append("no two records share SSN and birth date: the prior match probability is Splink's default")
    training.estimate_u_using_random_sampling(max_pairs=settings.u_sample_pairs, seed=settings.seed, num_chunks=1)
    for rule in EM_BLOCKING_RULES:
        try:
            training.estimate_parameters_using_expectation_maximisation(block_on(*rule))
        except (ValueError, EMTrainingException) as exc:  # too few pairs or likely matches to estimate m from
            notes.append(f"expectation maximisation blocked on {', '.join(rule)} failed ({exc}): "
                         "the m probabilities it would estimate keep Splink's defaults")
    predictions = linker.inference.predict(threshold_match_probability=settings.review_threshold, warning_mode="never")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=settings.match_threshold)
    pairs = _to_spark(spark, predictions, settings.backend)
    weights = [c for c in pairs.columns if c.startswith("mw_")]
    pairs = pairs.select(
        "patient_key_l", "patient_key_r", "source_system_l", "source_system_r",
        F.col("match_weight").cast("double").alias("match_weight"),
        F.col("match_probability").cast("double").alias("match_probability"),
        *[F.col(c).cast("double").alias(c) for c in weights],
        F.when(F.col("match_probability") >= settings.match_threshold, F.lit(MATCH)).otherwise(F.lit(REVIEW)).alias("decision"),
    )
    clustered = _to_spark(spark, clusters, settings.backend, ["patient_key", "cluster_id"])
    return Linkage(pairs.localCheckpoint(eager=True), clustered.localCheckpoint(eager=True), notes)
