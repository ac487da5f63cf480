"""The provider API over tiny curated tables: endpoints against hand-built expectations, roles,
keys, ETags, property-based fuzzing of every operation from the OpenAPI document (Schemathesis),
reloads and a request in flight across a reload (last: they change the tables)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from pyspark.sql import functions as F

from carelake.config import ConfigError
from carelake.curated import features as features_module
from carelake.delta import open_tables
from carelake.serve.access import role_policies, view_sql
from carelake.serve.api import ensure_dev_keys
from carelake.serve.api.app import create_app
from carelake.serve.api.keys import KEYS_ENV, KEYS_FILE_ENV, load_api_keys, parse_entries
from carelake.serve.api.queries import PROVIDER_MEASURES
from carelake.serve.api.snapshot import (
    ServedTable,
    SnapshotStore,
    build_snapshot,
    read_table,
    role_table,
)
from carelake.storage import table_uri
from tests.api_fixtures import hold, serving, write_curated
from tests.conftest import REPO

ROLES = {"analyst": {}, "clinician": {"hospital": ["hospital_a", "hospital_b"]}, "engineer": {}}
KEYS = {
    "analyst": "analyst-key-0123456789",
    "clinician_hospital_a": "clin-a-key-0123456789",
    "clinician_hospital_b": "clin-b-key-0123456789",
    "engineer": "engineer-key-0123456789",
}


@pytest.fixture(scope="module")
def lake(spark, base_config, tmp_path_factory):
    config = base_config.with_overrides(
        **{"lakehouse.root": str(tmp_path_factory.mktemp("api_lake")), "access.roles": ROLES}
    )
    write_curated(spark, open_tables(spark, config), config)
    return config


@pytest.fixture(scope="module")
def keys():
    return parse_entries([("test", f"{role}:{key}") for role, key in KEYS.items()], set(KEYS))


@pytest.fixture(scope="module")
def store(lake):
    return SnapshotStore(lake)


@pytest.fixture(scope="module")
def api(store, keys):
    with serving(create_app(lambda: store.current, keys)) as url:
        yield url


def get(api: str, path: str, role: str | None = "analyst", timeout: float = 10, **params) -> requests.Response:
    headers = {"X-API-Key": KEYS[role]} if role else {}
    return requests.get(f"{api}{path}", params=params, headers=headers, timeout=timeout)


def test_provider_by_npi_has_features_procedures_and_latest_scores(api, lake, spark) -> None:
    response = get(api, "/v1/providers/1000000004")
    assert response.status_code == 200
    body = response.json()
    features = body["data"]["features"]
    assert (features["npi"], features["specialty"], features["zip3"], features["composite_score"]) == (
        "1000000004", "Cardiology", "606", 0.9,
    )
    assert features["as_of"] == "2024-06-30"
    assert [(p["procedure_code"], p["volume"]) for p in body["data"]["procedures"]] == [("33533", 12), ("93458", 30)]
    # The cost model's older as_of (version 1) is not served: one latest row per model.
    assert [(s["model_name"], s["model_version"], s["score"]) for s in body["data"]["scores"]] == [
        ("carelake_cost_per_case", 2, 1550.0), ("carelake_poor_outcome", 3, 0.07),
    ]
    tables = open_tables(spark, lake)
    expected_versions = {
        n: tables.version(table_uri(lake, "curated", n))
        for n in ("provider_features", "provider_procedure_stats", "provider_scores")
    }
    assert body["meta"] == {"api_version": "v1", "role": "analyst", "as_of": "2024-06-30", "tables": expected_versions}
    assert response.headers["ETag"].startswith('"')


def test_unknown_npi_is_404_and_bad_parameters_are_422_naming_them(api) -> None:
    missing = get(api, "/v1/providers/1999999999")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no provider with NPI 1999999999 in curated.provider_features"}
    for path, params, name in [
        ("/v1/providers/12ab", {}, "npi"),
        ("/v1/providers", {"limit": 0}, "limit"),
        ("/v1/providers", {"sort": "patient_id"}, "sort"),
        ("/v1/providers", {"zip3": "6060"}, "zip3"),
        ("/v1/routing", {"zip3": "606"}, "specialty"),
        ("/v1/routing", {"zip3": "606", "specialty": "Cardiology", "procedure": "9345"}, "procedure"),
        ("/v1/demand", {"from_month": "2024-13"}, "from_month"),
        ("/v1/kpi/provider", {"npi": "10000000"}, "npi"),
        ("/v1/kpi/hospital", {"hospital": ""}, "hospital"),
    ]:
        response = get(api, path, **params)
        assert response.status_code == 422, (path, params)
        assert [e["loc"][-1] for e in response.json()["detail"]] == [name], (path, params)


def test_no_key_or_a_bad_key_is_401(api) -> None:
    no_key = get(api, "/v1/providers/1000000004", role=None)
    assert no_key.status_code == 401
    assert no_key.json() == {"detail": "missing X-API-Key header"}
    assert no_key.headers["WWW-Authenticate"] == "ApiKey"
    bad = requests.get(f"{api}/v1/providers/1000000004", headers={"X-API-Key": "not-a-key-0123456789"}, timeout=10)
    assert bad.status_code == 401
    assert bad.json() == {"detail": "unknown API key"}
    assert requests.get(f"{api}/health", timeout=10).json() == {"status": "ok", "tables": 10}


def test_providers_filtered_sorted_and_paginated(api) -> None:
    by_score = get(api, "/v1/providers", specialty="Cardiology", zip3="606", limit=2)
    assert by_score.status_code == 200
    body = by_score.json()
    assert [r["npi"] for r in body["data"]] == ["1000000004", "1000000012"]
    assert body["page"] == {"total": 3, "limit": 2, "offset": 0, "next_offset": 2}
    # The provider without encounters has a null score: it sorts last, whichever the order.
    last = get(api, "/v1/providers", specialty="Cardiology", zip3="606", limit=2, offset=2).json()
    assert [r["npi"] for r in last["data"]] == ["1000000020"] and last["page"]["next_offset"] is None
    cheapest = get(api, "/v1/providers", sort="cost_index", order="asc", min_encounters=50).json()
    assert [(r["npi"], r["cost_index"]) for r in cheapest["data"]] == [
        ("1000000004", 0.8), ("1000000046", 0.9), ("1000000038", 1.0),
    ]


def test_provider_measures_are_provider_features_columns() -> None:
    assert set(PROVIDER_MEASURES) <= set(features_module.COLUMNS)


def test_routing_lists_the_referral_routing_ranks(api) -> None:
    response = get(api, "/v1/routing", zip3="606", specialty="Cardiology")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [(p["rank"], p["npi"]) for p in data["providers"]] == [(1, "1000000012"), (2, "1000000004")]
    assert data["providers"][1]["reason"] == "quality O/E 0.82, cost O/E 0.95, headroom 30%, 4.1 km"
    assert (data["as_of"], data["reason"], data["procedure"], data["network"]) == ("2024-06-30", None, None, None)
    assert set(response.json()["meta"]["tables"]) == {"referral_routing"}
    assert [p["npi"] for p in get(api, "/v1/routing", zip3="606", specialty="Cardiology", limit=1).json()["data"]["providers"]] == [
        "1000000012"]
    none = get(api, "/v1/routing", zip3="606", specialty="Orthopedics").json()["data"]
    assert none["providers"] == [] and none["reason"] == "no eligible provider among 1 of the specialty: 1 with fewer than 5 cases"
    unknown = get(api, "/v1/routing", zip3="999", specialty="Cardiology")
    assert unknown.status_code == 404
    assert "area 999" in unknown.json()["detail"]


def test_routing_for_a_procedure_or_within_a_network(api) -> None:
    # 1000000004 did 33533 12 times (provider_procedure_stats), 1000000012 never: 1000000004 first.
    response = get(api, "/v1/routing", zip3="606", specialty="Cardiology", procedure="33533")
    providers = response.json()["data"]["providers"]
    assert [(p["rank"], p["npi"], p["procedure_volume"]) for p in providers] == [(1, "1000000004", 12), (2, "1000000012", 0)]
    assert providers[0]["reason"].startswith("33533: procedure score 0.90, 12 in 365 days; quality O/E 0.82")
    assert set(response.json()["meta"]["tables"]) == {"referral_routing", "provider_procedure_stats"}
    other = get(api, "/v1/routing", zip3="606", specialty="Cardiology", network="N2").json()["data"]
    assert other["providers"] == [] and other["reason"] == "no eligible provider in network N2 (2 eligible in other networks)"


def test_demand_filters(api) -> None:
    rows = get(api, "/v1/demand", zip3="606", from_month="2024-06", to_month="2024-06").json()["data"]
    assert [(r["specialty"], r["service_month"]) for r in rows] == [("Cardiology", "2024-06"), ("Orthopedics", "2024-06")]
    expand = get(api, "/v1/demand", expand_only="true").json()["data"]
    assert [(r["zip3"], r["specialty"]) for r in expand] == [("606", "Orthopedics")]


def test_kpi_series_by_month(api) -> None:
    rows = get(api, "/v1/kpi/executive", from_month="2024-05").json()["data"]
    assert [(r["service_month"], r["visits"]) for r in rows] == [("2024-05", 210), ("2024-06", 231)]
    provider = get(api, "/v1/kpi/provider", npi="1000000012").json()["data"]
    assert [(r["npi"], r["encounters"]) for r in provider] == [("1000000012", 4)]


def test_clinician_sees_only_its_hospital_and_another_is_403(api) -> None:
    analyst = get(api, "/v1/kpi/hospital").json()["data"]
    assert {r["hospital"] for r in analyst} == {"hospital_a", "hospital_b"}
    clinician = get(api, "/v1/kpi/hospital", role="clinician_hospital_a").json()
    assert [(r["hospital"], r["service_month"]) for r in clinician["data"]] == [
        ("hospital_a", "2024-05"), ("hospital_a", "2024-06"),
    ]
    assert clinician["meta"]["role"] == "clinician_hospital_a"
    finance_b = get(api, "/v1/kpi/finance", role="clinician_hospital_b").json()["data"]
    assert [r["hospital"] for r in finance_b] == ["hospital_b"]
    other = get(api, "/v1/kpi/hospital", role="clinician_hospital_a", hospital="hospital_b")
    assert other.status_code == 403
    assert other.json() == {"detail": "role clinician_hospital_a sees hospital_a rows only, not hospital_b"}


def test_api_rows_are_what_the_sql_view_shows(api, lake, spark) -> None:
    tables = open_tables(spark, lake)
    source = tables.read(table_uri(lake, "curated", "kpi_finance"))
    source.createOrReplaceTempView("api_kpi_finance")
    for policy in role_policies(lake):
        sql_rows = spark.sql(view_sql(policy, "api_kpi_finance", source.columns)).orderBy("hospital").collect()
        api_rows = get(api, "/v1/kpi/finance", role=policy.database).json()["data"]
        assert [r.asDict() for r in sql_rows] == sorted(api_rows, key=lambda r: r["hospital"]), policy.database


def test_role_table_drops_patient_columns_and_fails_closed(lake) -> None:
    policies = role_policies(lake)
    by_role = {p.database: p for p in policies}
    analyst = role_table(by_role["analyst"], pa.table({"npi": ["1"], "patient_id": ["p1"], "visits": [3]}))
    assert analyst.column_names == ["npi", "visits"]
    # Patient rows with no hospital column: a clinician is not served the table (nor given a SQL view).
    with_patient = pa.table({"patient_token": ["t1", "t2"], "visits": [1, 2]})
    assert role_table(by_role["clinician_hospital_a"], with_patient) is None
    snapshot = build_snapshot({"kpi_patient": ServedTable("kpi_patient", 0, with_patient)}, policies)
    assert "kpi_patient" not in snapshot.views["clinician_hospital_a"].tables
    assert snapshot.views["engineer"].tables["kpi_patient"].num_rows == 2


def test_a_table_hidden_from_a_role_is_403(store, keys) -> None:
    current = store.current
    hidden = dict(current.views)
    clinician = hidden["clinician_hospital_a"]
    hidden["clinician_hospital_a"] = type(clinician)(
        clinician.role, clinician.hospital, {k: v for k, v in clinician.tables.items() if k != "kpi_patient"},
        clinician.features_by_npi, clinician.procedures_by_npi, clinician.scores_by_npi,
    )
    snapshot = type(current)(current.tables, hidden, current.loaded_at, current.as_of)
    with serving(create_app(lambda: snapshot, keys)) as url:
        response = get(url, "/v1/kpi/patient", role="clinician_hospital_a")
        assert response.status_code == 403
        assert response.json() == {"detail": "role clinician_hospital_a may not read curated.kpi_patient"}
        assert get(url, "/v1/kpi/patient", role="analyst").status_code == 200


def test_etag_revalidates_with_304(api) -> None:
    first = get(api, "/v1/providers/1000000004")
    etag = first.headers["ETag"]
    again = requests.get(f"{api}/v1/providers/1000000004", headers={"X-API-Key": KEYS["analyst"], "If-None-Match": etag}, timeout=10)
    assert again.status_code == 304 and again.headers["ETag"] == etag and again.content == b""
    # Another role's answer is another representation.
    assert get(api, "/v1/providers/1000000004", role="engineer").headers["ETag"] != etag


def test_requests_are_logged_without_identifiers(api, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="carelake.api.access"):
        get(api, "/v1/providers/1000000012")
        get(api, "/v1/kpi/provider", npi="1000000012")
    lines = [r.getMessage() for r in caplog.records if r.name == "carelake.api.access"]
    assert any("/v1/providers/{npi} 200" in line and "role=analyst" in line for line in lines)
    assert lines and not any("1000000012" in line for line in lines)


def test_read_table_matches_spark(lake, spark) -> None:
    uri = table_uri(lake, "curated", "network_demand_by_zip")
    served = read_table(uri, {})
    expected = open_tables(spark, lake).read(uri).orderBy("zip3", "specialty", "service_month").collect()
    got = served.data.sort_by([("zip3", "ascending"), ("specialty", "ascending"), ("service_month", "ascending")])
    assert got.to_pylist() == [r.asDict() for r in expected]


def test_api_keys_from_file_and_environment(tmp_path: Path) -> None:
    secret = tmp_path / "keys"
    secret.write_text("# team keys\nanalyst:analyst-key-0123456789  # BI\n\nengineer:engineer-key-0123456789\n")
    keys = load_api_keys({"analyst", "engineer"}, {KEYS_FILE_ENV: str(secret), KEYS_ENV: "analyst:second-analyst-key-0123"})
    assert keys.role_of("analyst-key-0123456789") == "analyst"
    assert keys.role_of("engineer-key-0123456789") == "engineer"
    assert keys.role_of("second-analyst-key-0123") == "analyst"
    assert keys.role_of("engineer-key-012345678") is None and keys.role_of(None) is None
    for text, secret_part, message in [
        ("nurse:nurse-key-0123456789", "nurse-key-0123456789", "role 'nurse' is not a role database of access.roles"),
        ("analyst:zq7x", "zq7x", "the key of analyst is shorter than 16 characters"),
        ("analyst-key-0123456789", "analyst-key-0123456789", "expected '<role database>:<key>'"),
    ]:
        with pytest.raises(ConfigError, match=message) as raised:
            load_api_keys({"analyst"}, {KEYS_ENV: text})
        assert secret_part not in str(raised.value)


def test_dev_keys_are_generated_once_with_owner_only_mode(base_config, tmp_path: Path) -> None:
    config = base_config.with_overrides(**{"lakehouse.root": str(tmp_path)})
    path = ensure_dev_keys(config, ["analyst", "engineer"])
    first = Path(path).read_text()
    assert ensure_dev_keys(config, ["analyst"]) == path and Path(path).read_text() == first
    assert Path(path).stat().st_mode & 0o077 == 0
    keys = load_api_keys({"analyst", "engineer"}, {KEYS_FILE_ENV: path})
    assert sorted(set(keys.roles_by_digest.values())) == ["analyst", "engineer"]


def readme_api_lines() -> list[str]:
    """The command lines of the README's Provider API block."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Provider API", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_curl_examples_answer(api) -> None:
    lines = readme_api_lines()
    assert lines[0].startswith("make api") and lines[1].startswith("export KEY=")
    # The lines after the two that start the server and read its key file, against this server;
    # every curl fails on an HTTP error and its answer follows a marker line.
    marker = "@@end-of-answer@@"
    script = []
    for line in lines[2:]:
        line = line.replace("http://127.0.0.1:8787", api).replace("curl -s ", "curl -sS --fail-with-body ")
        script.append(f"echo {marker}; {line}" if line.startswith("curl ") else line)
    curls = [line for line in lines[2:] if line.startswith("curl ")]
    assert len(curls) >= 10
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)], env={**os.environ, "KEY": KEYS["analyst"]},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answers = [a.strip() for a in done.stdout.split(marker)[1:]]
    for line, answer in zip(curls, answers, strict=True):
        if "http_code" in line:
            assert answer == "304", line
        else:
            body = json.loads(answer)
            assert "data" in body or "openapi" in body, (line, answer[:200])


def test_fuzz_every_operation_from_the_openapi_document(api) -> None:
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/providers/{npi}", "/v1/providers", "/v1/routing", "/v1/demand", "/v1/versions",
        *(f"/v1/kpi/{s}" for s in ("executive", "patient", "provider", "hospital", "finance")),
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            # Default checks: no 5xx, documented status codes, content types and headers, bodies
            # that match their schema, and the same request without the key refused (ignored_auth).
            case.call_and_validate(headers={"X-API-Key": KEYS["clinician_hospital_a"]})

        fuzz()


def test_a_new_commit_is_served_after_reload(spark, lake, store, api) -> None:
    tables = open_tables(spark, lake)
    uri = table_uri(lake, "curated", "provider_features")
    before = get(api, "/v1/providers/1000000038")
    assert store.refresh() is False  # nothing new
    tables.write(
        tables.read(uri).withColumn("composite_score", F.when(F.col("npi") == "1000000038", 0.95).otherwise(F.col("composite_score"))),
        uri, mode="overwrite",
    )
    assert get(api, "/v1/providers/1000000038").json()["data"]["features"]["composite_score"] == 0.6  # not reloaded yet
    assert store.refresh() is True
    after = get(api, "/v1/providers/1000000038")
    assert after.json()["data"]["features"]["composite_score"] == 0.95
    assert after.json()["meta"]["tables"]["provider_features"] == before.json()["meta"]["tables"]["provider_features"] + 1
    assert after.headers["ETag"] != before.headers["ETag"]


def test_a_request_in_flight_is_answered_from_one_version(spark, lake, store, keys) -> None:
    tables = open_tables(spark, lake)
    features_uri = table_uri(lake, "curated", "provider_features")
    scores_uri = table_uri(lake, "curated", "provider_scores")
    picked, release = threading.Event(), threading.Event()
    with serving(create_app(hold(lambda: store.current, picked, release), keys)) as url, ThreadPoolExecutor(1) as pool:
        old_versions = store.current.versions(("provider_features", "provider_scores"))
        old_score = store.current.views["analyst"].features_by_npi["1000000004"]["composite_score"]
        pending = pool.submit(get, url, "/v1/providers/1000000004", timeout=300)
        assert picked.wait(timeout=10)
        # Both tables the answer reads commit and are reloaded while the request is held.
        tables.write(tables.read(features_uri).withColumn("composite_score", F.lit(0.11)), features_uri, mode="overwrite")
        tables.write(tables.read(scores_uri).withColumn("score", F.lit(-1.0)), scores_uri, mode="overwrite")
        assert store.refresh() is True
        release.set()
        body = pending.result(timeout=300).json()
    assert body["meta"]["tables"]["provider_features"] == old_versions["provider_features"]
    assert body["meta"]["tables"]["provider_scores"] == old_versions["provider_scores"]
    assert body["data"]["features"]["composite_score"] == old_score
    assert -1.0 not in [s["score"] for s in body["data"]["scores"]]
    assert store.current.views["analyst"].features_by_npi["1000000004"]["composite_score"] == 0.11
