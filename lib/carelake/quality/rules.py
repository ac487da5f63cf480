"""Row-level validation rules, as Spark expressions, and which rules apply to which entity.

``ENTITY_RULES`` is the one declarative place: entities in dependency order (a table is
processed after the tables it references) and, per entity, its required keys, NPI columns,
code columns, ranges, ordering rules and references. Parse rules follow from the canonical
schema: every typed column the source sends is checked for text that did not parse.

Rule names (stable; they are what ``_failed_rules`` and ``processed/_quarantine.reasons`` hold):

``row_malformed``                the source line could not be split into the header's columns
``key_missing:<col>``            a required key or id is null or blank
``npi_invalid:<col>``            not ten digits, or the Luhn check digit over ``80840`` + the
                                 first nine digits does not match the tenth
``date_unparseable:<col>``       a date/timestamp was sent but did not match the source's patterns
``date_in_future:<col>``         a date/timestamp after today (UTC session time)
``discharge_before_admit``       ``discharge_date`` < ``admit_date``
``amount_unparseable:<col>``     an amount was sent but is not a number
``amount_negative:<col>``        an amount below zero
``paid_exceeds_billed``          ``paid_amount`` > ``billed_amount``
``value_unparseable:<col>``      an integer or boolean column whose text did not parse
``value_out_of_range:<col>``     a number outside its allowed range (satisfaction 1..5)
``code_invalid:<col>``           a code that does not have its code system's shape
``orphan:<col>``                 a reference to a row that is not in the processed table it names
``source_not_configured``        the raw row's source system has no mapping for the entity
                                 (set by ``carelake.quality.quarantine.unconfigured_rows``)
``fhir_invalid:<element>: <msg>``, ``resource_type_unexpected:<type>``, ``fhir_id_missing``,
``fhir_check:<name>``, ``reference_unresolved:<col>``
                                 a FHIR source's resource failed validation or its references
                                 (see ``carelake.sources.fhir``; carried in ``_source_issues``)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from operator import add

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DateType, DecimalType, IntegerType, TimestampType

from carelake.sources.canonical import canonical_schema
from carelake.sources.conform import CORRUPT_RECORD, SOURCE_ISSUES, raw_text_column

FAILED_RULES = "_failed_rules"

ICD10_PATTERN = r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"
NPI_PATTERN = r"^\d{10}$"
# Procedure codes are CPT (five digits) or HCPCS (letter + four digits); conformance sets
# code_system only when one of the two shapes matches.
PROCEDURE_CODE = "procedure_code"


@dataclass(frozen=True)
class Reference:
    """``column`` of this entity must exist as ``key`` in the processed table ``entity``."""

    column: str
    entity: str
    key: str


@dataclass(frozen=True)
class EntityRules:
    """The rules of one entity beyond those implied by its schema (parse, future, negative)."""

    required: tuple[str, ...]
    npis: tuple[str, ...] = ()
    codes: dict[str, str] = field(default_factory=dict)  # column -> regex; procedure_code via code_system
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    not_before: tuple[tuple[str, str, str], ...] = ()  # (later, earlier, rule): later >= earlier
    not_above: tuple[tuple[str, str, str], ...] = ()  # (smaller, larger, rule): smaller <= larger
    references: tuple[Reference, ...] = ()


ENTITY_RULES: dict[str, EntityRules] = {
    "providers": EntityRules(required=("npi",), npis=("npi",)),
    "patients": EntityRules(required=("patient_key",)),
    "encounters": EntityRules(
        required=("encounter_key", "patient_key", "npi"),
        npis=("npi",),
        codes={"diagnosis_code": ICD10_PATTERN},
        ranges={"satisfaction_score": (1, 5)},
        not_before=(("discharge_date", "admit_date", "discharge_before_admit"),),
        references=(
            Reference("npi", "providers", "npi"),
            Reference("patient_key", "patients", "patient_key"),
        ),
    ),
    "procedures": EntityRules(
        required=("procedure_key", "encounter_key", "npi"),
        npis=("npi",),
        codes={PROCEDURE_CODE: ""},
        references=(Reference("encounter_key", "encounters", "encounter_key"),),
    ),
    "claims": EntityRules(
        required=("claim_id", "encounter_key", "npi"),
        npis=("npi",),
        not_above=(("paid_amount", "billed_amount", "paid_exceeds_billed"),),
        references=(Reference("encounter_key", "encounters", "encounter_key"),),
    ),
    "referrals": EntityRules(
        required=("referral_id", "referring_npi", "referred_to_npi"),
        npis=("referring_npi", "referred_to_npi"),
        references=(
            Reference("referring_npi", "providers", "npi"),
            Reference("referred_to_npi", "providers", "npi"),
        ),
    ),
    "crm_activity": EntityRules(required=("activity_id", "npi"), npis=("npi",)),
}

# Dependency order: referenced tables first.
ENTITY_ORDER: tuple[str, ...] = tuple(ENTITY_RULES)


def entity_rules(entity: str) -> EntityRules:
    """The rules of ``entity``; a clear error for an unknown one."""
    try:
        return ENTITY_RULES[entity]
    except KeyError:
        raise KeyError(f"no validation rules for entity {entity!r}: expected one of {', '.join(ENTITY_ORDER)}") from None


def npi_valid(npi: Column) -> Column:
    """True when ``npi`` is ten digits whose last is the Luhn check digit over ``80840`` + the first nine."""
    digits = F.concat(F.lit("80840"), npi)
    terms = []
    for i in range(15):
        digit = F.substring(digits, i + 1, 1).try_cast("int")
        # Luhn doubles every second digit counting from the check digit (rightmost, position 1).
        if (15 - i) % 2 == 0:
            digit = F.when(digit * 2 > 9, digit * 2 - 9).otherwise(digit * 2)
        terms.append(digit)
    return F.when(npi.rlike(NPI_PATTERN), reduce(add, terms) % 10 == 0).otherwise(F.lit(False))


def _unparseable(df: DataFrame, column: str) -> Column:
    raw = raw_text_column(column)
    return F.col(raw).isNotNull() & F.col(column).isNull() if raw in df.columns else F.lit(False)


def _row_checks(df: DataFrame, entity: str) -> list[tuple[str, Column]]:
    """(rule name, condition that fails the row) for every row rule of ``entity``."""
    rules = entity_rules(entity)
    checks: list[tuple[str, Column]] = [("row_malformed", F.col(CORRUPT_RECORD).isNotNull())]
    checks += [(f"key_missing:{c}", F.col(c).isNull()) for c in rules.required]
    checks += [(f"npi_invalid:{c}", F.col(c).isNotNull() & ~npi_valid(F.col(c))) for c in rules.npis]
    for f in canonical_schema(entity).fields:
        name, col = f.name, F.col(f.name)
        if name.startswith("_"):
            continue
        if isinstance(f.dataType, DateType):
            checks += [(f"date_unparseable:{name}", _unparseable(df, name)), (f"date_in_future:{name}", col > F.current_date())]
        elif isinstance(f.dataType, TimestampType):
            checks += [(f"date_unparseable:{name}", _unparseable(df, name)), (f"date_in_future:{name}", col > F.current_timestamp())]
        elif isinstance(f.dataType, DecimalType):
            checks += [(f"amount_unparseable:{name}", _unparseable(df, name)), (f"amount_negative:{name}", col < 0)]
        elif isinstance(f.dataType, (IntegerType, BooleanType)):
            checks.append((f"value_unparseable:{name}", _unparseable(df, name)))
    for name, (low, high) in rules.ranges.items():
        checks.append((f"value_out_of_range:{name}", ~F.col(name).between(low, high)))
    for name, pattern in rules.codes.items():
        shape_ok = F.col("code_system").isNotNull() if name == PROCEDURE_CODE else F.col(name).rlike(pattern)
        checks.append((f"code_invalid:{name}", F.col(name).isNotNull() & ~shape_ok))
    checks += [(rule, F.col(later) < F.col(earlier)) for later, earlier, rule in rules.not_before]
    checks += [(rule, F.col(smaller) > F.col(larger)) for smaller, larger, rule in rules.not_above]
    return checks


def check_rows(conformed: DataFrame, entity: str) -> DataFrame:
    """Add ``_failed_rules: array<string>``: the name of EVERY row rule the row fails (empty when valid).

    In: the output of ``carelake.sources.conform.conform`` for ``entity``. Out: the same rows
    and columns plus ``_failed_rules``. Referential rules are added by :func:`check_references`.
    """
    failures = F.array(*(F.when(condition, F.lit(name)) for name, condition in _row_checks(conformed, entity)))
    if SOURCE_ISSUES in conformed.columns:
        failures = F.concat(F.col(SOURCE_ISSUES), failures)
    # A null condition (comparison with a null) is "not failed": the key/parse rules report nulls.
    return conformed.withColumn(FAILED_RULES, F.array_compact(failures))


def check_references(checked: DataFrame, entity: str, references: dict[str, DataFrame]) -> DataFrame:
    """Append ``orphan:<col>`` to ``_failed_rules`` where a reference finds no row.

    In: rows with ``_failed_rules`` (from :func:`check_rows`) and, per referenced entity
    name, a DataFrame holding that processed table's key column(s) (the existing table plus
    this run's valid rows). A null reference is not an orphan (``key_missing`` reports it).
    """
    out = checked
    for i, ref in enumerate(entity_rules(entity).references):
        if ref.entity not in references:
            raise KeyError(f"check_references({entity}): expected keys of {ref.entity!r} for {ref.column!r}; got {sorted(references)}")
        key, hit = f"_ref_key_{i}", f"_ref_hit_{i}"
        keys = references[ref.entity].select(F.col(ref.key).alias(key)).where(F.col(key).isNotNull()).distinct()
        out = (
            out.join(keys.withColumn(hit, F.lit(True)), F.col(ref.column) == F.col(key), "left")
            .withColumn(
                FAILED_RULES,
                F.array_compact(
                    F.concat(
                        F.col(FAILED_RULES),
                        F.array(F.when(F.col(ref.column).isNotNull() & F.col(hit).isNull(), F.lit(f"orphan:{ref.column}"))),
                    )
                ),
            )
            .drop(key, hit)
        )
    return out
