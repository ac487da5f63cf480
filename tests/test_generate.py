"""The sample data generator: layouts from config, determinism, clean content, defects, scale."""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import re
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest

from carelake.config import Config, load_config
from carelake.generate import DEFECT_KINDS, MANIFEST_NAME, Manifest, generate
from carelake.generate.formats import spark_to_strftime
from carelake.generate.reference import AREA_POPULATION_PATH
from carelake.generate.truth import (
    AREAS_FILE,
    ENCOUNTERS_FILE,
    PATIENTS_FILE,
    PROVIDERS_FILE,
    TRUTH_DIR,
)

REPO = Path(__file__).resolve().parents[1]
SCALE = 0.01
DEFECT_RATE = 0.1
NPI_COLUMNS = ("npi", "referring_npi", "referred_to_npi")
# Date patterns of conf/local.yaml, written out by hand for reading the files back.
DATE_FORMATS = {"hospital_a": "%Y-%m-%d", "hospital_b": "%Y-%m-%d", "hospital_c": "%m/%d/%Y",
                "crm": "%Y-%m-%d", "claims": "%Y%m%d"}


def luhn_ok(npi: str) -> bool:
    """NPI check: Luhn over '80840' + all ten digits must sum to a multiple of 10."""
    if not re.fullmatch(r"\d{10}", npi):
        return False
    digits = [int(c) for c in "80840" + npi]
    total = 0
    for pos, d in enumerate(reversed(digits)):
        if pos % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def read_rows(config: Config, out: Path, rel: str, system: str, entity: str | None = None) -> tuple[list[str], list[dict]]:
    """Header and rows of one generated file, read with csv/json (not the generator).

    A FHIR file has no header; its rows are the resources of ``entity``'s type (tests/test_fhir.py
    checks their content)."""
    text = (out / rel).read_text(encoding="utf-8")
    if config.sources[system].format == "fhir":
        wanted = config.sources[system].entities[entity or ""].resource
        documents = [json.loads(line) for line in text.splitlines() if line.strip()] if rel.endswith(".ndjson") else [json.loads(text)]
        resources = [e["resource"] for d in documents for e in (d["entry"] if d["resourceType"] == "Bundle" else [{"resource": d}])]
        return [], [r for r in resources if r["resourceType"] == wanted]
    if config.sources[system].format == "json":
        rows = [json.loads(line) for line in text.splitlines()]
        return (list(rows[0]) if rows else []), rows
    lines = list(csv.reader(text.splitlines(), delimiter=config.sources[system].options["delimiter"]))
    header = lines[0]
    return header, [dict(zip(header, line, strict=False)) for line in lines[1:]]


def tabular(config: Config, files: list) -> list:
    """The files of delimited and JSON-lines sources (FHIR files are checked in tests/test_fhir.py)."""
    return [f for f in files if config.sources[f.source_system].format != "fhir"]


def cell(row: dict, column: str) -> str:
    value = row.get(column)
    return "" if value is None else str(value)


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "conf" / "local.yaml", env={})


@pytest.fixture(scope="module")
def clean(config: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("clean")
    return out, generate(out, config, scale=SCALE, seed=42)


@pytest.fixture(scope="module")
def broken(config: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("broken")
    return out, generate(out, config, scale=SCALE, seed=42, defect_rate=DEFECT_RATE)


def test_luhn_helper_knows_a_valid_npi() -> None:
    assert luhn_ok("1234567893")
    assert not luhn_ok("1234567890")


def test_spark_patterns_translate_to_strftime() -> None:
    assert spark_to_strftime("yyyy-MM-dd") == "%Y-%m-%d"
    assert spark_to_strftime("MM/dd/yyyy HH:mm") == "%m/%d/%Y %H:%M"
    assert spark_to_strftime("yyyyMMdd HHmmss") == "%Y%m%d %H%M%S"
    assert spark_to_strftime("yyyy-MM-dd'T'HH:mm:ss'Z'") == "%Y-%m-%dT%H:%M:%SZ"
    with pytest.raises(ValueError, match="'SSS'"):
        spark_to_strftime("yyyy-MM-dd HH:mm:ss.SSS")


def test_same_seed_same_bytes_other_seed_other_bytes(config: Config, clean, tmp_path: Path) -> None:
    _, first = clean
    again = generate(tmp_path / "again", config, scale=SCALE, seed=42)
    other = generate(tmp_path / "other", config, scale=SCALE, seed=7)
    digests = {f.path: f.sha256 for f in first.files}
    assert {f.path: f.sha256 for f in again.files} == digests
    other_digests = {f.path: f.sha256 for f in other.files}
    common = other_digests.keys() & digests.keys()
    assert len(common) >= 0.9 * len(digests)
    assert all(other_digests[p] != digests[p] for p in common)
    out, _ = clean
    for name in (PROVIDERS_FILE, PATIENTS_FILE, ENCOUNTERS_FILE):  # same seed, same truth
        assert (tmp_path / "again" / TRUTH_DIR / name).read_bytes() == (out / TRUTH_DIR / name).read_bytes()
        assert (tmp_path / "other" / TRUTH_DIR / name).read_bytes() != (out / TRUTH_DIR / name).read_bytes()


def _truth_rows(out: Path, name: str) -> list[dict]:
    with (out / TRUTH_DIR / name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_truth_describes_every_provider_patient_and_encounter(clean) -> None:
    out, manifest = clean
    rows = manifest.rows_by_entity()
    providers = _truth_rows(out, PROVIDERS_FILE)
    assert len({p["npi"] for p in providers}) == len(providers) >= 20
    assert all(luhn_ok(p["npi"]) and float(p["cost_factor"]) > 0 for p in providers)
    encounters = _truth_rows(out, ENCOUNTERS_FILE)
    assert len(encounters) == rows["encounters"]
    patients = {(p["source_system"], p["patient_id"]) for p in _truth_rows(out, PATIENTS_FILE)}
    assert {(e["source_system"], e["patient_id"]) for e in encounters} <= patients
    assert {e["npi"] for e in encounters} <= {p["npi"] for p in providers}


def test_area_population_is_the_patients_over_a_planted_market_share(config: Config, tmp_path: Path) -> None:
    # Without the extra registrations every truth patient is one resident of their area.
    out = tmp_path / "own"
    generate(out, config, scale=SCALE, seed=42, months=1, persons=False)
    with (out / AREA_POPULATION_PATH).open(encoding="utf-8") as f:
        landed = {r["zip3"]: int(r["population"]) for r in csv.DictReader(f)}
    areas = {a["zip3"]: a for a in _truth_rows(out, AREAS_FILE)}
    patients: dict[str, int] = {}
    for p in _truth_rows(out, PATIENTS_FILE):
        patients[p["zip3"]] = patients.get(p["zip3"], 0) + 1
    assert set(landed) == set(areas) == set(patients)
    for zip3, area in areas.items():
        assert int(area["population"]) == landed[zip3] == round(patients[zip3] / float(area["market_share"]))
        assert 0.04 <= float(area["market_share"]) <= 0.06


def test_readmissions_are_later_inpatient_stays_of_the_same_patient(clean) -> None:
    out, _ = clean
    encounters = _truth_rows(out, ENCOUNTERS_FILE)
    by_id = {(e["source_system"], e["encounter_id"]): e for e in encounters}
    readmissions = [e for e in encounters if e["readmission_of"]]
    assert readmissions and any(e["planned_readmission"] == "True" for e in readmissions)
    person = {(p["source_system"], p["patient_id"]): p["person_id"] for p in _truth_rows(out, "persons.csv")}
    elsewhere = 0
    for e in readmissions:
        system, _, index_id = e["readmission_of"].rpartition(":")
        index = by_id[(system or e["source_system"], index_id)]
        gap = (datetime.fromisoformat(e["admit_date"]) - datetime.fromisoformat(index["discharge_date"])).days
        assert index["encounter_type"] == e["encounter_type"] == "inpatient"
        assert 1 <= gap <= 30, (index, e)
        if system:  # at another hospital of the same person; that hospital's flag cannot know
            elsewhere += 1
            assert system != e["source_system"] and e["planned_readmission"] == "False"
            assert person[(system, index["patient_id"])] == person[(e["source_system"], e["patient_id"])], (index, e)
            continue
        assert index["patient_id"] == e["patient_id"], (index, e)
        assert index["readmitted_30d_flag"] == "True"
        assert (e["diagnosis_code"] == "Z51.11") == (e["planned_readmission"] == "True")
    assert elsewhere > 0  # carelake.generate.persons plants them


def test_sicker_patients_go_to_providers_with_more_case_mix_pull(clean) -> None:
    out, _ = clean
    pull = {p["npi"]: float(p["case_mix_pull"]) for p in _truth_rows(out, PROVIDERS_FILE)}
    rows = [(float(e["patient_risk"]), pull[e["npi"]]) for e in _truth_rows(out, ENCOUNTERS_FILE)]
    high = [p for r, p in rows if r > 1]
    low = [p for r, p in rows if r < -1]
    assert sum(high) / len(high) > sum(low) / len(low) + 0.3


def test_files_match_globs_and_configured_headers(config: Config, clean) -> None:
    out, manifest = clean
    seen = set()
    for f in manifest.files:
        system = config.sources[f.source_system]
        entity = system.entities[f.entity]
        if system.format == "fhir":
            assert fnmatch.fnmatch(f.path, entity.path) or fnmatch.fnmatch(f.path, system.bundles or ""), f.path
            seen.add((f.source_system, f.entity))
            continue
        assert fnmatch.fnmatch(f.path, entity.path), f"{f.path} does not match {entity.path}"
        header, _ = read_rows(config, out, f.path, f.source_system)
        assert header == list(entity.columns.values()), f.path
        seen.add((f.source_system, f.entity))
    configured = {(s, e) for s, src in config.sources.items() for e in src.entities}
    assert seen == configured
    months = {f.path for f in manifest.files if f.entity == "encounters" and f.source_system == "hospital_a"}
    linked = {p for p in months if p.endswith("-linked.csv")}  # people registered at several hospitals
    assert len(months - linked) == 12 and len(linked) == 12
    assert "hospital_a/providers/providers_2024-01.csv" in {f.path for f in manifest.files}
    assert "claims/claims_2024-12.csv" in {f.path for f in manifest.files}


def test_clean_npis_pass_luhn(config: Config, clean) -> None:
    out, manifest = clean
    checked = 0
    for f in tabular(config, manifest.files):
        columns = config.sources[f.source_system].entities[f.entity].columns
        _, rows = read_rows(config, out, f.path, f.source_system)
        for canonical in NPI_COLUMNS:
            if canonical in columns:
                bad = [r[columns[canonical]] for r in rows if not luhn_ok(str(r[columns[canonical]]))]
                assert bad == [], f"{f.path} {columns[canonical]}: {bad[:3]}"
                checked += len(rows)
    assert checked > 3000


def test_some_providers_work_at_two_hospitals(config: Config, clean) -> None:
    out, _ = clean
    npis = {}
    for system in ("hospital_a", "hospital_b", "hospital_c"):
        entity = config.sources[system].entities["providers"]
        _, rows = read_rows(config, out, entity.path.replace("*", "providers_2024-01"), system)
        npis[system] = {r[entity.columns["npi"]] for r in rows}
    shared = (npis["hospital_a"] & npis["hospital_b"]) | (npis["hospital_a"] & npis["hospital_c"]) | (
        npis["hospital_b"] & npis["hospital_c"])
    assert shared


def test_hospital_c_uses_pipes_and_its_date_pattern(clean) -> None:
    out, _ = clean
    lines = (out / "hospital_c/encounters/encounters_2024-03.txt").read_text().splitlines()
    assert lines[0].split("|")[:3] == ["VISIT_NO", "PAT_NO", "ATTENDING_NPI"]
    for line in lines[1:]:
        fields = line.split("|")
        assert len(fields) == 12
        admit = datetime.strptime(fields[5], "%m/%d/%Y")
        assert admit.month == 3
        datetime.strptime(fields[11], "%m/%d/%Y %H:%M")
        assert fields[8] in ("0", "1") and fields[9] in ("0", "1")


def test_value_codes_and_formats_follow_config(config: Config, clean) -> None:
    out, _ = clean
    _, providers_a = read_rows(config, out, "hospital_a/providers/providers_2024-01.csv", "hospital_a")
    assert {r["status"] for r in providers_a} <= {"A", "I"}
    _, providers_c = read_rows(config, out, "hospital_c/providers/providers_2024-01.txt", "hospital_c")
    assert {r["ACTIVE_FLAG"] for r in providers_c} <= {"1", "0"}
    _, providers_b = read_rows(config, out, "hospital_b/providers/providers_2024-01.jsonl", "hospital_b")
    assert {type(r["active"]) for r in providers_b} == {bool}
    for r in providers_b:
        datetime.strptime(r["updatedAt"], "%Y-%m-%dT%H:%M:%SZ")
    _, claims = read_rows(config, out, "claims/claims_2024-05.csv", "claims")
    # hospital_d (NGT) sends its own claims as FHIR ExplanationOfBenefit: the feed carries the others'
    assert {r["FACILITY"] for r in claims} == {"RIV", "LAK", "SUM"}
    for r in claims:
        datetime.strptime(r["SVC_DT"], "%Y%m%d")
        datetime.strptime(r["FILE_DT"], "%Y%m%d %H%M%S")
    _, referrals = read_rows(config, out, "crm/referrals/referrals_2024-05.csv", "crm")
    assert {r["patient_system"] for r in referrals} <= {"hospital_a", "hospital_b", "hospital_c", "hospital_d"}


def test_hospital_b_amounts_are_integer_cents(config: Config, clean) -> None:
    out, _ = clean
    _, rows = read_rows(config, out, "hospital_b/procedures/procedures_2024-02.jsonl", "hospital_b")
    assert rows and all(type(r["chargeCents"]) is int and r["chargeCents"] > 0 for r in rows)
    _, rows_a = read_rows(config, out, "hospital_a/procedures/procedures_2024-02.csv", "hospital_a")
    assert all(re.fullmatch(r"\d+\.\d\d", r["charge"]) for r in rows_a)


def test_clean_stays_and_claims_are_consistent(config: Config, clean) -> None:
    out, manifest = clean
    for f in tabular(config, manifest.files):
        columns = config.sources[f.source_system].entities[f.entity].columns
        fmt = DATE_FORMATS[f.source_system]
        _, rows = read_rows(config, out, f.path, f.source_system)
        if f.entity == "encounters":
            for r in rows:
                admit = datetime.strptime(r[columns["admit_date"]], fmt)
                discharge = datetime.strptime(r[columns["discharge_date"]], fmt)
                assert 0 <= (discharge - admit).days <= 10, (f.path, r)
        if f.entity == "claims":
            for r in rows:
                billed, allowed, paid = (float(r[c]) for c in ("BILLED", "ALLOWED", "PAID"))
                assert billed >= allowed >= paid >= 0, (f.path, r)
                if r["CLM_STATUS"] == "DENIED":
                    assert paid == 0


def test_manifest_counts_equal_file_contents(config: Config, clean) -> None:
    out, manifest = clean
    assert Manifest.load(out / MANIFEST_NAME) == manifest
    per_entity: dict[str, int] = {}
    for f in manifest.files:
        _, rows = read_rows(config, out, f.path, f.source_system, f.entity)
        assert len(rows) == f.rows, f.path
        assert hashlib.sha256((out / f.path).read_bytes()).hexdigest() == f.sha256
        per_entity[f.entity] = per_entity.get(f.entity, 0) + len(rows)
    assert manifest.clean_rows == per_entity
    assert manifest.defects == []
    assert manifest.parameters == {"scale": SCALE, "seed": 42, "defect_rate": 0.0,
                                   "start": "2024-01-01", "months": 12}
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and TRUTH_DIR not in p.parts}
    assert written - {MANIFEST_NAME, AREA_POPULATION_PATH} == {f.path for f in manifest.files}


def test_scale_001_volumes(clean) -> None:
    _, manifest = clean
    rows = manifest.rows_by_entity()
    # ~1,000 of each hospital's own, plus those of people registered at a second hospital
    # (their visits and readmissions there: about a tenth more).
    assert 900 <= rows["encounters"] <= 1200
    assert rows["encounters"] * 1.4 <= rows["procedures"] <= rows["encounters"] * 2.1
    assert rows["encounters"] * 0.85 <= rows["claims"] <= rows["encounters"]
    assert 120 <= rows["referrals"] <= 180 and 40 <= rows["crm_activity"] <= 60


def test_rows_grow_linearly_with_scale(config: Config, clean, tmp_path: Path) -> None:
    _, small = clean
    double = generate(tmp_path, config, scale=2 * SCALE, seed=42).rows_by_entity()
    for entity, n in small.rows_by_entity().items():
        assert 1.7 * n <= double[entity] <= 2.3 * n, (entity, n, double[entity])


def _row_of(config: Config, out: Path, defect) -> tuple[list[dict], dict]:
    _, rows = read_rows(config, out, defect.file, defect.source_system)
    return rows, rows[defect.row]


def test_recorded_defects_are_in_the_files(config: Config, broken) -> None:
    out, manifest = broken
    ids: dict[str, set[str]] = {"patients": set(), "encounters": set()}
    for f in tabular(config, manifest.files):
        if f.entity in ids:
            key = config.sources[f.source_system].entities[f.entity].columns[
                "patient_id" if f.entity == "patients" else "encounter_id"]
            ids[f.entity] |= {cell(r, key) for r in read_rows(config, out, f.path, f.source_system)[1]}
    for d in manifest.defects:
        if config.sources[d.source_system].format == "fhir":
            continue  # tests/test_fhir.py finds FHIR defects in the resources
        if d.kind == "header_only":
            assert (out / d.file).read_text().count("\n") == 1
            continue
        columns = config.sources[d.source_system].entities[d.entity].columns
        key_col = columns[{"providers": "npi", "patients": "patient_id", "encounters": "encounter_id",
                           "procedures": "procedure_id", "claims": "claim_id",
                           "referrals": "referral_id", "crm_activity": "activity_id"}[d.entity]]
        rows, row = _row_of(config, out, d)
        if d.kind == "truncated_line":
            assert d.row == len(rows) - 1
            assert not (out / d.file).read_bytes().endswith(b"\n")
            assert None in row.values() or len([v for v in row.values() if v is not None]) < len(columns)
            continue
        if d.kind == "null_key":
            assert cell(row, key_col) == "" and d.key is None
            continue
        assert cell(row, key_col) == d.key, d
        value = cell(row, d.source_column) if d.source_column else None
        if d.source_column:
            assert value == ("" if d.value is None else str(d.value))
        if d.kind == "invalid_npi":
            assert not luhn_ok(value)
        elif d.kind == "duplicate":
            assert rows[d.row - 1] == row
        elif d.kind == "conflicting_duplicate":
            previous = rows[d.row - 1]
            assert cell(previous, key_col) == d.key and previous != row
            assert cell(previous, d.source_column) != value
        elif d.kind == "unparseable_date":
            with pytest.raises(ValueError):
                datetime.strptime(value, DATE_FORMATS[d.source_system])
        elif d.kind == "future_date":
            assert "2099" in value
        elif d.kind == "unparseable_amount":
            with pytest.raises(ValueError):
                float(value)
        elif d.kind == "negative_amount":
            assert float(value) < 0
        elif d.kind == "paid_gt_billed":
            assert float(value) > float(row["BILLED"])
        elif d.kind == "discharge_before_admit":
            fmt = DATE_FORMATS[d.source_system]
            assert datetime.strptime(value, fmt) < datetime.strptime(cell(row, columns["admit_date"]), fmt)
        elif d.kind == "unknown_code":
            assert value in ("ZZZ", "99999X")
        elif d.kind == "orphan_reference":
            target = "encounters" if d.column == "encounter_id" else "patients"
            assert value not in ids[target]
        else:
            pytest.fail(f"unexpected defect kind {d.kind}")


def test_defects_cover_every_kind_at_about_the_rate(broken) -> None:
    _, manifest = broken
    counts = manifest.defect_counts()
    assert sum(counts.values()) == len(manifest.defects)
    kinds = {k for _, k in counts}
    assert kinds == set(DEFECT_KINDS) == {"invalid_npi", "null_key", "duplicate", "conflicting_duplicate",
                     "unparseable_date", "future_date", "unparseable_amount", "negative_amount",
                     "paid_gt_billed", "discharge_before_admit", "unknown_code",
                     "orphan_reference", "truncated_line", "header_only"}
    assert counts[("claims", "paid_gt_billed")] >= 1
    assert counts[("encounters", "header_only")] == 1
    rows = manifest.rows_by_entity()
    broken_rows = len([d for d in manifest.defects if d.entity == "encounters" and d.row is not None])
    assert 0.06 * rows["encounters"] <= broken_rows <= 0.14 * rows["encounters"]
    for entity, n in rows.items():
        defective = len([d for d in manifest.defects if d.entity == entity and d.row is not None])
        assert manifest.clean_rows[entity] == n - defective


def test_clean_content_does_not_depend_on_defect_rate(clean, broken) -> None:
    (clean_out, _), (broken_out, _) = clean, broken
    # same seed: the defect run is the clean run plus broken rows, never other clean rows
    clean_lines = set((clean_out / "hospital_a/encounters/encounters_2024-06.csv").read_text().splitlines())
    broken_lines = set((broken_out / "hospital_a/encounters/encounters_2024-06.csv").read_text().splitlines())
    assert len(clean_lines & broken_lines) >= 0.8 * len(clean_lines)


def test_a_hospital_added_in_yaml_is_generated(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        f"extends: {REPO / 'conf' / 'local.yaml'}\n"
        "sources:\n"
        "  hospital_e:\n"
        "    format: csv\n"
        "    options: {delimiter: ';'}\n"
        "    date_format: dd.MM.yyyy\n"
        "    timestamp_format: dd.MM.yyyy HH:mm\n"
        "    amount_unit: cents\n"
        "    entities:\n"
        "      patients:\n"
        "        path: hospital_e/pat/*.csv\n"
        "        columns: {patient_id: PID, birth_date: GEB, updated_at: TS}\n"
        "      encounters:\n"
        "        path: hospital_e/fall/*.csv\n"
        "        columns: {encounter_id: FALL, patient_id: PID, npi: ARZT, admit_date: AUFN,\n"
        "                  discharge_date: ENTL, updated_at: TS}\n"
    )
    config = load_config(extra, env={})
    manifest = generate(tmp_path / "out", config, scale=SCALE, months=2)
    paths = {f.path for f in manifest.files}
    assert {"hospital_e/pat/pat_2024-01.csv", "hospital_e/fall/fall_2024-02.csv"} <= paths
    lines = (tmp_path / "out" / "hospital_e/fall/fall_2024-02.csv").read_text().splitlines()
    assert lines[0] == "FALL;PID;ARZT;AUFN;ENTL;TS"
    first = lines[1].split(";")
    assert re.fullmatch(r"\d\d\.02\.2024", first[3]) and luhn_ok(first[2])
    claims = (tmp_path / "out" / "claims/claims_2024-01.csv").read_text()
    assert ",hospital_e," in claims  # no FACILITY code configured: the system name is written


def test_a_month_is_not_retained(config: Config, tmp_path: Path) -> None:
    def peak(scale: float, months: int) -> int:
        tracemalloc.start()
        try:
            generate(tmp_path / f"{scale}-{months}", config, scale=scale, months=months)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    generate(tmp_path / "warm-up", config, scale=0.005, months=2)  # first-call caches
    quarter, year, wider = peak(0.01, 3), peak(0.01, 12), peak(0.04, 3)
    # four times the months must not take much more memory; four times the scale does
    assert year < 1.5 * quarter
    assert wider > 2 * quarter


def test_the_everyday_code_takes_its_share_and_the_others_split_the_rest_evenly() -> None:
    from collections import Counter

    from carelake.generate.activity import EVERYDAY_CODE_SHARE, everyday_weighted_index

    draws = [(i + 0.5) / 10_000 for i in range(10_000)]  # an even grid over [0, 1)
    picked = Counter(everyday_weighted_index(u, 5) for u in draws)
    assert sorted(picked) == [0, 1, 2, 3, 4]
    assert picked[0] / len(draws) == pytest.approx(0.45, abs=0.001)
    rest = (1 - 0.45) / 4
    assert all(picked[i] / len(draws) == pytest.approx(rest, abs=0.001) for i in range(1, 5))
    assert EVERYDAY_CODE_SHARE == 0.45  # the share docs/measures.md states
    assert {everyday_weighted_index(u, 1) for u in draws} == {0}
