"""Great Expectations suites for the processed tables, built from the declared rules.

The suites are built in code from ``ENTITY_RULES`` and the canonical schemas rather than kept
as JSON files: the row rules and the table expectations then state the same contract once and
cannot drift apart when a column or rule changes. What the suites add on top of the row rules
is what only a whole table can show: exactly the canonical columns, unique business keys.
``expectation_suite(entity).to_json_dict()`` prints a suite in GX's own format for review.
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe
from pyspark.sql.types import DecimalType

from carelake.quality.rules import NPI_PATTERN, PROCEDURE_CODE, entity_rules
from carelake.sources.canonical import BUSINESS_KEYS, canonical_schema
from carelake.sources.conform import CPT_PATTERN, HCPCS_PATTERN

CODE_SYSTEMS = ["CPT", "HCPCS"]


def expectations(entity: str) -> list[gxe.Expectation]:
    """The expectations a processed batch of ``entity`` must meet."""
    rules = entity_rules(entity)
    schema = canonical_schema(entity)
    keys = BUSINESS_KEYS[entity]
    out: list[gxe.Expectation] = [gxe.ExpectTableColumnsToMatchSet(column_set=schema.fieldNames(), exact_match=True)]
    if len(keys) == 1:
        out.append(gxe.ExpectColumnValuesToBeUnique(column=keys[0]))
    else:
        out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(keys)))
    out += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in dict.fromkeys((*keys, *rules.required))]
    out += [gxe.ExpectColumnValuesToMatchRegex(column=c, regex=NPI_PATTERN) for c in rules.npis]
    for column, pattern in rules.codes.items():
        if column == PROCEDURE_CODE:
            out.append(gxe.ExpectColumnValuesToMatchRegexList(column=column, regex_list=[CPT_PATTERN, HCPCS_PATTERN], match_on="any"))
            out.append(gxe.ExpectColumnValuesToBeInSet(column="code_system", value_set=CODE_SYSTEMS))
        else:
            out.append(gxe.ExpectColumnValuesToMatchRegex(column=column, regex=pattern))
    out += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi) for c, (lo, hi) in rules.ranges.items()]
    out += [gxe.ExpectColumnValuesToBeBetween(column=f.name, min_value=0) for f in schema.fields if isinstance(f.dataType, DecimalType)]
    out += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=high, column_B=low, or_equal=True, ignore_row_if="either_value_is_missing"
        )
        for high, low, _ in rules.not_before
    ]
    out += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=high, column_B=low, or_equal=True, ignore_row_if="either_value_is_missing"
        )
        for low, high, _ in rules.not_above
    ]
    return out


def expectation_suite(entity: str) -> gx.ExpectationSuite:
    """The suite named ``processed.<entity>``."""
    return gx.ExpectationSuite(name=f"processed.{entity}", expectations=expectations(entity))
