"""Bad input: a landing folder holding a corpus of broken and odd files next to good ones.

One ingest + process run over the whole corpus (one pipeline run keeps the suite fast), then
one assertion per case: each file is either parsed into the right values or rejected /
quarantined with its reason, and the good files of the same batch are fully processed. A renamed
key column is a breaking schema change, held with its entity: see test_resilience_schema.py.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from carelake.config import Config
from carelake.delta import DeltaTables, open_tables
from carelake.ingest import INGEST_LOG_TABLE
from carelake.pipeline import run_pipeline
from carelake.process import QUARANTINE_TABLE
from carelake.storage import table_uri

A_HEADER = (
    "provider_npi,first_name,last_name,specialty,taxonomy_code,org_name,practice_zip,"
    "network_id,employer_id,status,last_updated"
)
CRM_HEADER = "activity_id,npi,activity_date,activity_type,marketing_spend,contacts,opportunity_value,modified_at"
HUGE = 1_000_000


def npi(n: int) -> str:
    """A valid NPI: nine digits from ``n`` plus the Luhn check digit over ``80840`` + them."""
    base = f"{100_000_000 + n:09d}"
    total = 0
    for i, ch in enumerate(reversed("80840" + base)):
        d = int(ch)
        if i % 2 == 0:  # doubled: every second digit counting left from the check digit
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return base + str((10 - total % 10) % 10)


def provider(n: int, first: str = "Ann", last: str = "Lee", org: str = "Riverside", npi_text: str | None = None) -> str:
    return f"{npi_text or npi(n)},{first},{last},Cardiology,207RC0000X,{org},60601,N1,E1,A,2024-01-01 00:00:00"


def activity(ident: str, spend: str = "10.00", date: str = "2024-03-05", contacts: str = "3", value: str = "100") -> str:
    return f"{ident},{npi(900)},{date},email,{spend},{contacts},{value},2024-03-06 00:00:00"


@dataclass(frozen=True)
class Case:
    """One landing file of the corpus."""

    name: str
    path: str
    content: bytes


def _csv(*lines: str, end: str = "\n") -> bytes:
    return (end.join(lines) + end).encode("utf-8")


LATE_LATIN1 = (
    "\n".join([A_HEADER, *(provider(300 + i) for i in range(900))]).encode("utf-8")
    + b"\n"
    + provider(299, first="J\xfcrgen").encode("latin-1")
    + b"\n"
)

CASES: dict[str, Case] = {
    c.name: c
    for c in [
        Case("good", "hospital_a/providers/good.csv", _csv(A_HEADER, provider(1), provider(2), provider(3))),
        Case("good_crm", "crm/activity/good_crm.csv", _csv(CRM_HEADER, activity("G1"), activity("G2"))),
        Case("wrong_delimiter", "hospital_a/providers/semicolon.csv", _csv(A_HEADER.replace(",", ";"), provider(10).replace(",", ";"))),
        Case("latin1", "hospital_a/providers/latin1.csv", (A_HEADER + "\n" + provider(11, last="M\xfcller") + "\n").encode("latin-1")),
        Case("latin1_late", "hospital_a/providers/latin1_late.csv", LATE_LATIN1),
        Case("bom", "hospital_a/providers/bom.csv", b"\xef\xbb\xbf" + _csv(A_HEADER, provider(12))),
        Case("mixed_line_endings", "hospital_a/providers/mixed.csv",
             (A_HEADER + "\r\n" + provider(13) + "\n" + provider(14) + "\r\n" + provider(15) + "\n").encode("utf-8")),
        Case("unterminated_quote", "hospital_a/providers/quote.csv",
             _csv(A_HEADER, provider(16), provider(17, first='"Bo'), provider(18))),
        Case("extra_columns", "hospital_a/providers/extra.csv", _csv(A_HEADER + ",fax_number", provider(19) + ",555-0100")),
        Case("missing_columns", "hospital_a/providers/missing.csv",
             _csv(A_HEADER.replace("specialty,taxonomy_code,", ""), provider(20).replace("Cardiology,207RC0000X,", ""))),
        Case("blank_file", "hospital_a/providers/blank.csv", b"\n  \r\n\n"),
        Case("header_only", "hospital_a/providers/header_only.csv", _csv(A_HEADER)),
        Case("binary_garbage", "hospital_a/providers/compressed.csv", gzip.compress(_csv(A_HEADER, provider(22)), mtime=0)),
        Case("zero_bytes", "hospital_a/providers/zero.csv", b""),
        Case("huge_field", "hospital_a/providers/huge.csv", _csv(A_HEADER, provider(23, org="x" * HUGE))),
        Case("npi_formatting", "hospital_a/providers/npi_format.csv",
             _csv(A_HEADER, provider(24, npi_text=f" {npi(24)[:3]}-{npi(24)[3:6]}-{npi(24)[6:]} "),
                  provider(25, npi_text=f"{npi(25)[:5]} {npi(25)[5:]}"))),
        Case("unicode_names", "hospital_a/providers/unicode.csv",
             _csv(A_HEADER, provider(26, first="Zoë", last="Nguyễn"), provider(27, first="李", last="Ødegård-Ñúñez"))),
        Case("amounts", "crm/activity/amounts.csv",
             _csv(CRM_HEADER, activity("M1", spend='"$1,234.50"', value='"1,000,000"', contacts='"1,200"'),
                  activity("M2", spend="$99"), activity("M3", spend="€99"), activity("M4", spend='"1,50"'))),
        Case("date_formats", "crm/activity/dates.csv",
             _csv(CRM_HEADER, activity("D1", date="2024-03-05"), activity("D2", date="2024-03-05 10:30:00"),
                  activity("D3", date="03/05/2024"), activity("D4", date="20240305"), activity("D5", date="5 March 2024"))),
        Case("json_bad_line", "hospital_b/providers/bad_line.jsonl",
             (f'{{"npi": "{npi(28)}", "firstName": "Eve", "updatedAt": "2024-01-02T00:00:00Z"}}\n'
              f'{{"npi": "{npi(29)}", "firstName": "Bad\n'
              f'{{"npi": "{npi(30)}", "firstName": "Fay", "updatedAt": "2024-01-02T00:00:00Z"}}\n').encode()),
    ]
}


@dataclass
class CorpusRun:
    """Everything the per-case assertions read, collected once after the single run."""

    config: Config
    summary: object
    log: dict[str, tuple[str, str | None, int | None]]  # landing path -> (status, reason, rows)
    processed: dict[str, dict[str, dict]]  # entity -> key -> row (as dict), with _source_file
    quarantine: list[dict]
    raw_columns: dict[str, list[str]]


def _file_of(row: dict, key: str = "_source_file") -> str:
    return row[key].rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def corpus(spark, base_config: Config, tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    root = tmp_path_factory.mktemp("bad_input")
    config = base_config.with_overrides(
        **{
            "lakehouse.root": str(root / "lakehouse"),
            # The corpus is mostly bad on purpose: thresholds would only turn the run "failed".
            "ingest.max_rejected_file_rate": 1.0,
            "quality.max_quarantine_rate": 1.0,
            "quality.great_expectations": False,
        }
    )
    for case in CASES.values():
        path = Path(config.landing) / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.content)
    summary = run_pipeline(spark, config, ("ingest", "process"))
    tables: DeltaTables = open_tables(spark, config)
    log = {
        r.file_name: (r.status, r.reason, r.rows)
        for r in tables.read(table_uri(config, "raw", INGEST_LOG_TABLE)).collect()
    }
    keys = {"providers": "npi", "crm_activity": "activity_id"}
    processed = {
        entity: {r[key]: r.asDict() for r in tables.read(table_uri(config, "processed", entity)).collect()}
        for entity, key in keys.items()
    }
    quarantine = [r.asDict() for r in tables.read(table_uri(config, "processed", QUARANTINE_TABLE)).collect()]
    raw_columns = {e: tables.read(table_uri(config, "raw", e)).columns for e in keys}
    return CorpusRun(config, summary, log, processed, quarantine, raw_columns)


def rows_of(run: CorpusRun, entity: str, case: str) -> dict[str, dict]:
    name = CASES[case].path.rsplit("/", 1)[-1]
    return {k: r for k, r in run.processed[entity].items() if _file_of(r) == name}


def quarantined(run: CorpusRun, case: str) -> list[list[str]]:
    name = CASES[case].path.rsplit("/", 1)[-1]
    return sorted(sorted(q["reasons"]) for q in run.quarantine if _file_of(q, "source_file") == name)


def reason(run: CorpusRun, case: str) -> str:
    status, text, _ = run.log[CASES[case].path]
    assert status == "rejected", f"{case}: expected the file rejected, ingest log says {status!r}"
    return text or ""


def test_the_run_completes_and_reconciles(corpus: CorpusRun) -> None:
    stages = {s.stage: s for s in corpus.summary.stages}
    assert [s.status for s in corpus.summary.stages] == ["ok", "ok"], [s.notes for s in corpus.summary.stages]
    for entity in ("providers", "crm_activity"):
        counts = stages["process"].entities[entity]
        assert counts.reconciles, counts


def test_good_files_are_fully_ingested_and_processed(corpus: CorpusRun) -> None:
    assert corpus.log[CASES["good"].path] == ("ingested", None, 3)
    good = rows_of(corpus, "providers", "good")
    assert sorted(good) == sorted(npi(n) for n in (1, 2, 3))
    assert {(r["first_name"], r["active"]) for r in good.values()} == {("Ann", True)}
    assert sorted(rows_of(corpus, "crm_activity", "good_crm")) == ["G1", "G2"]
    assert quarantined(corpus, "good") == [] and quarantined(corpus, "good_crm") == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_delimiter", "header matches no configured column (delimiter ','"),
        ("latin1", "not decodable as UTF-8"),
        ("blank_file", "empty file"),
        ("zero_bytes", "empty file"),
        ("header_only", "header only: no data rows"),
        ("binary_garbage", "binary content"),
    ],
)
def test_unreadable_file_is_rejected_whole_with_its_reason(corpus: CorpusRun, case: str, expected: str) -> None:
    assert expected in reason(corpus, case)
    assert rows_of(corpus, "providers", case) == {} and quarantined(corpus, case) == []


def test_invalid_utf8_after_the_sniff_window_is_quarantined_not_mangled(corpus: CorpusRun) -> None:
    """The sniffer sees only the first 64 KB: a later undecodable line must not become U+FFFD text."""
    assert len(LATE_LATIN1) > 64 * 1024
    rows = rows_of(corpus, "providers", "latin1_late")
    assert len(rows) == 900
    assert not any("\ufffd" in (r["first_name"] or "") for r in corpus.processed["providers"].values())
    assert npi(299) not in rows
    assert quarantined(corpus, "latin1_late") == [["key_missing:npi", "row_malformed"]]
    payload = next(q["raw_payload"] for q in corpus.quarantine if _file_of(q, "source_file") == "latin1_late.csv")
    assert "not decodable as UTF-8" in payload


@pytest.mark.parametrize(
    ("case", "npis"),
    [("bom", [12]), ("mixed_line_endings", [13, 14, 15]), ("extra_columns", [19]), ("missing_columns", [20])],
)
def test_format_variations_parse_to_the_same_values(corpus: CorpusRun, case: str, npis: list[int]) -> None:
    rows = rows_of(corpus, "providers", case)
    assert sorted(rows) == sorted(npi(n) for n in npis)
    for row in rows.values():
        # the last column parsed whole: no stray \r, the status code mapped, the timestamp typed
        assert (row["first_name"], row["active"], str(row["updated_at"])) == ("Ann", True, "2024-01-01 00:00:00")
        assert row["specialty"] == (None if case == "missing_columns" else "Cardiology")
    assert quarantined(corpus, case) == []


def test_extra_source_column_is_kept_in_raw_only(corpus: CorpusRun) -> None:
    assert "fax_number" in corpus.raw_columns["providers"]
    assert "fax_number" not in next(iter(corpus.processed["providers"].values()))


def test_unterminated_quote_quarantines_that_row_only(corpus: CorpusRun) -> None:
    assert sorted(rows_of(corpus, "providers", "unterminated_quote")) == sorted([npi(16), npi(18)])
    assert quarantined(corpus, "unterminated_quote") == [["row_malformed"]]


def test_huge_field_survives_whole(corpus: CorpusRun) -> None:
    row = corpus.processed["providers"][npi(23)]
    assert len(row["organization"]) == HUGE and set(row["organization"]) == {"x"}


def test_npi_whitespace_and_dashes_are_formatting(corpus: CorpusRun) -> None:
    assert sorted(rows_of(corpus, "providers", "npi_formatting")) == sorted([npi(24), npi(25)])


def test_unicode_names_round_trip(corpus: CorpusRun) -> None:
    rows = corpus.processed["providers"]
    assert (rows[npi(26)]["first_name"], rows[npi(26)]["last_name"]) == ("Zoë", "Nguyễn")
    assert (rows[npi(27)]["first_name"], rows[npi(27)]["last_name"]) == ("李", "Ødegård-Ñúñez")


def test_amounts_with_currency_and_thousands_separators(corpus: CorpusRun) -> None:
    rows = rows_of(corpus, "crm_activity", "amounts")
    assert sorted(rows) == ["M1", "M2"]
    assert (rows["M1"]["marketing_spend"], rows["M1"]["opportunity_value"], rows["M1"]["contacts"]) == (
        Decimal("1234.50"), Decimal("1000000.00"), 1200,
    )
    assert rows["M2"]["marketing_spend"] == Decimal("99.00")
    # another currency, and a decimal comma, are not guessed at
    assert quarantined(corpus, "amounts") == [["amount_unparseable:marketing_spend"]] * 2


def test_dates_only_in_the_sources_configured_patterns(corpus: CorpusRun) -> None:
    rows = rows_of(corpus, "crm_activity", "date_formats")
    assert {k: str(r["activity_date"]) for k, r in rows.items()} == {"D1": "2024-03-05", "D2": "2024-03-05"}
    # 03/05/2024 is March or May depending on the sender: never guessed
    assert quarantined(corpus, "date_formats") == [["date_unparseable:activity_date"]] * 3


def test_json_line_that_does_not_parse_is_quarantined(corpus: CorpusRun) -> None:
    rows = rows_of(corpus, "providers", "json_bad_line")
    assert sorted(rows) == sorted([npi(28), npi(30)])
    assert quarantined(corpus, "json_bad_line") == [["key_missing:npi", "row_malformed"]]


def test_every_case_is_accounted_for(corpus: CorpusRun) -> None:
    """No file is silently dropped: each is in the ingest log, ingested or rejected."""
    assert sorted(corpus.log) == sorted(c.path for c in CASES.values())
