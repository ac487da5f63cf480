"""Validating events against OpenLineage's JSON schema (spec/OpenLineage.json and
spec/facets/*.json of the OpenLineage repository).

No package this project installs ships that schema, so it is read from ``$OPENLINEAGE_SPEC_DIR``
(a checkout's ``spec/`` folder); without it the tests that need it are skipped, saying so.
Each facet whose ``_schemaURL`` names a facet schema in that folder is validated against it too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

SPEC_ENV = "OPENLINEAGE_SPEC_DIR"


def spec_validator():
    """A function event -> list of schema errors (strings); skips the test without the schema."""
    folder = os.environ.get(SPEC_ENV)
    if not folder or not Path(folder, "OpenLineage.json").exists():
        pytest.skip(f"OpenLineage's JSON schema ships in no package this project installs: set {SPEC_ENV} "
                    "to the spec/ folder of an OpenLineage checkout to validate the events")
    import jsonschema
    from referencing import Registry, Resource

    schemas = [json.loads(Path(folder, "OpenLineage.json").read_text())]
    schemas += [json.loads(p.read_text()) for p in sorted(Path(folder, "facets").glob("*.json"))]
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    core = jsonschema.Draft202012Validator(schemas[0], registry=registry)
    by_id = {s["$id"]: s for s in schemas[1:]}

    def errors(event: dict[str, Any]) -> list[str]:
        found = [e.message for e in core.iter_errors(event)]
        for facet in _facets(event):
            url = str(facet.get("_schemaURL", ""))
            schema_id, _, pointer = url.partition("#")
            if schema_id in by_id:
                validator = jsonschema.Draft202012Validator({"$ref": url}, registry=registry)
                found += [f"{url}: {e.message}" for e in validator.iter_errors(facet)]
        return found

    return errors


def _facets(event: dict[str, Any]):
    yield from (event.get("run") or {}).get("facets", {}).values()
    yield from (event.get("job") or {}).get("facets", {}).values()
    for dataset in [*(event.get("inputs") or []), *(event.get("outputs") or [])]:
        for key in ("facets", "inputFacets", "outputFacets"):
            yield from (dataset.get(key) or {}).values()
