"""Sniffing landing files: what is rejected whole, and why."""

from __future__ import annotations

import pytest

from carelake.config import load_config
from carelake.ingest import sniff_file
from tests.conftest import REPO

CONFIG = load_config(REPO / "conf" / "local.yaml", env={})
A = CONFIG.sources["hospital_a"]
B = CONFIG.sources["hospital_b"]
C = CONFIG.sources["hospital_c"]


def sniff(data: bytes, system=A, entity="providers"):
    return sniff_file(data, len(data), system, system.entities[entity])


def test_good_csv_header_is_read() -> None:
    result = sniff(b"provider_npi,first_name,last_name\n1234567893,Ann,Lee\n")
    assert result.accepted
    assert result.columns == ("provider_npi", "first_name", "last_name")


def test_utf8_bom_is_ignored() -> None:
    result = sniff("\ufeffprovider_npi,first_name\n1,Zoë\n".encode())
    assert result.columns == ("provider_npi", "first_name")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"   \n", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "binary content"),
        (b"provider_npi,first_name\n", "header only"),
        (b"provider_npi;first_name;last_name\n1;a;b\n", "header matches no configured column"),
        (b"provider_npi,first_name,FIRST_NAME\n1,a,b\n", "repeated column names"),
        (b"provider_npi,\xff\xfe\xfa,x\n1,2,3\n" + b"y" * 10, "not decodable as UTF-8"),
    ],
)
def test_unreadable_files_are_rejected_with_reason(data: bytes, reason: str) -> None:
    result = sniff(data)
    assert not result.accepted
    assert reason in result.reason


def test_pipe_delimited_source_uses_its_delimiter() -> None:
    assert sniff(b"NPI_NUM|PROV_FIRST\n1234567893|Ann\n", system=C).columns == ("NPI_NUM", "PROV_FIRST")
    # the same header with commas is not hospital_c's layout
    assert not sniff(b"NPI_NUM,PROV_FIRST\n1234567893,Ann\n", system=C).accepted


def test_json_lines_collect_keys_and_configured_columns() -> None:
    data = b'{"npi": "1234567893", "firstName": "Ann", "extraField": 1}\n{"npi": "1", "lastName": "Lee"}\n'
    result = sniff(data, system=B)
    assert result.accepted
    assert result.columns[:4] == ("npi", "firstName", "extraField", "lastName")
    # configured columns are always present so conformance finds them
    assert set(B.entities["providers"].columns.values()) <= set(result.columns)


def test_json_that_is_not_json_lines_is_rejected() -> None:
    assert "not JSON lines" in sniff(b"npi,firstName\n1,2\n", system=B).reason
