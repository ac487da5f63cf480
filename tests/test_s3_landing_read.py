"""The landing-file reader (used for local and S3 roots) reads what Spark's CSV/JSON readers read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql.types import StringType, StructField, StructType

from carelake.config import Config
from carelake.ingest.read import CORRUPT_RECORD, LANDING_FORMAT, read_source_files

CSV_COLUMNS = ["provider_npi", "first_name", "last_name", "specialty"]
TRICKY_CSV = (
    b'\xef\xbb\xbfprovider_npi,first_name,last_name,specialty\r\n'
    b'1,"a,b","",x\r\n\r\n'
    b'2,"unterminated,c,d\r\n'
    b'3,,,\r\n'
    b'4,a"b,c,d,e\n'
    b'5, spaced ,"say ""hi""",z\r'
    b'6,Zo\xc3\xab,M\xc3\xbcller,w'
)
JSON_COLUMNS = ["npi", "firstName", "lastName", "active", "specialty"]
TRICKY_JSON = (
    b'{"npi": 1, "firstName": 1.50, "lastName": null, "active": true, "specialty": {"a": [1, 2]}}\n\n  \n'
    b'{"npi": "2", "firstName": ""}\r\n{bad json\n[1,2]\n'
    b'{"npi": "3", "firstName": "\\u00e9", "unknown": 1}\n'
)


def spark_rows(spark, system_format: str, columns: list[str], path: Path) -> list[tuple]:
    schema = StructType([StructField(c, StringType()) for c in columns] + [StructField(CORRUPT_RECORD, StringType())])
    reader = spark.read.schema(schema).option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT_RECORD)
    if system_format == "csv":
        frame = reader.csv(str(path), header=True, sep=",", quote='"', escape='"', multiLine=False, enforceSchema=True)
    else:
        frame = reader.json(str(path))
    return sorted((tuple(r) for r in frame.collect()), key=repr)


def landing_rows(spark, config: Config, system_format: str, columns: list[str], path: Path, split_bytes: int | None = None) -> list[tuple]:
    if split_bytes is None:
        system = config.sources["hospital_a" if system_format == "csv" else "hospital_b"]
        frame = read_source_files(spark, config, system, columns, [str(path)])
    else:
        frame = (
            spark.read.format(LANDING_FORMAT).option("files", json.dumps([str(path)])).option("columns", json.dumps(columns))
            .option("format", system_format).option("split_bytes", str(split_bytes)).load()
        )
    assert {r[0] for r in frame.select("_source_file").distinct().collect()} == {str(path)}
    return sorted((tuple(r) for r in frame.drop("_source_file").collect()), key=repr)


@pytest.mark.parametrize(("system_format", "columns", "content"), [("csv", CSV_COLUMNS, TRICKY_CSV), ("json", JSON_COLUMNS, TRICKY_JSON)])
def test_landing_reader_matches_spark_readers_in_any_split_size(spark, config: Config, tmp_path: Path, system_format, columns, content) -> None:
    path = tmp_path / f"tricky.{system_format}"
    path.write_bytes(content)

    expected = spark_rows(spark, system_format, columns, path)
    actual = landing_rows(spark, config, system_format, columns, path)

    assert actual == expected
    assert sum(r[-1] is not None for r in actual) >= 2  # malformed lines are kept, flagged
    # splits of a few bytes cut lines, \r\n pairs and the BOM: every line is still read once
    assert landing_rows(spark, config, system_format, columns, path, split_bytes=5) == expected
