"""Run the processed-table suites with Great Expectations' Spark support.

One ephemeral GX context per stage run (nothing of GX's own is persisted besides what the
stage writes): a Spark data source with one dataframe asset per entity, the DataFrame passed
as the batch parameter, and, when a folder is given, a data-docs site that each validation
updates. Usage statistics are off.

Each batch is validated first with result format ``BOOLEAN_ONLY``: GX then computes only the
counts each expectation needs, bundled into a few Spark aggregations. Only a batch that fails
is validated again with ``SUMMARY``, which adds per expectation the jobs that collect sample
unexpected values, so the saved result says what was wrong. Rows that break a row rule were
quarantined before, so a failing suite is the exception and most runs pay for one pass only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import great_expectations as gx
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from pyspark.sql import DataFrame

from carelake.quality.suites import expectation_suite

DOCS_SITE = "carelake"


@dataclass(frozen=True)
class SuiteOutcome:
    """The result of validating one processed batch: pass/fail, failed expectations, GX's JSON, seconds."""

    entity: str
    success: bool
    failed: list[str]
    result: dict[str, Any]
    seconds: float


def _failed_expectations(result: dict[str, Any]) -> list[str]:
    out = []
    for item in result.get("results", []):
        if not item.get("success"):
            config = item.get("expectation_config", {})
            kwargs = config.get("kwargs", {})
            target = kwargs.get("column") or kwargs.get("column_A") or ",".join(kwargs.get("column_list", []) or [])
            out.append(f"{config.get('type')}:{target}" if target else str(config.get("type")))
    return out


class SuiteRunner:
    """Validates processed DataFrames against their entity's suite, optionally updating data docs."""

    def __init__(self, docs_dir: str | None = None) -> None:
        """``docs_dir``: a local folder for GX's HTML data docs, or None for no docs."""
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        sites = {}
        if docs_dir:
            sites[DOCS_SITE] = {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            data_docs_sites=sites,
        )
        self._context = gx.get_context(mode="ephemeral", project_config=config)
        self._source = self._context.data_sources.add_spark(name="processed")
        self._docs = bool(docs_dir)
        self._checkpoints: dict[str, tuple[gx.Checkpoint, gx.Checkpoint]] = {}

    def _checkpoints_for(self, entity: str) -> tuple[gx.Checkpoint, gx.Checkpoint]:
        """(pass/fail checkpoint, detailed checkpoint) over one validation definition."""
        batch = self._source.add_dataframe_asset(name=entity).add_batch_definition_whole_dataframe(entity)
        suite = self._context.suites.add(expectation_suite(entity))
        definition = self._context.validation_definitions.add(gx.ValidationDefinition(name=entity, data=batch, suite=suite))
        actions = [UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])] if self._docs else []
        quick, detail = (
            self._context.checkpoints.add(
                gx.Checkpoint(name=name, validation_definitions=[definition], actions=actions, result_format=result_format)
            )
            for name, result_format in ((entity, "BOOLEAN_ONLY"), (f"{entity}.detail", "SUMMARY"))
        )
        return quick, detail

    def validate(self, df: DataFrame, entity: str) -> SuiteOutcome:
        """Validate ``df`` (a processed batch of ``entity``, canonical columns) against its suite."""
        started = time.monotonic()
        if entity not in self._checkpoints:
            self._checkpoints[entity] = self._checkpoints_for(entity)
        quick, detail = self._checkpoints[entity]
        run = quick.run(batch_parameters={"dataframe": df})
        if not run.success:
            run = detail.run(batch_parameters={"dataframe": df})
        result = next(iter(run.run_results.values())).to_json_dict()
        return SuiteOutcome(
            entity=entity,
            success=bool(run.success),
            failed=_failed_expectations(result),
            result=result,
            seconds=round(time.monotonic() - started, 3),
        )
