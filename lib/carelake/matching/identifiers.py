"""The identifiers matching compares, normalised as Spark expressions.

Input: ``processed/patients`` (quasi-identifiers: birth date, sex, zip) and the restricted
``processed/patients_pii`` (names, SSN, phone) of the same ``patient_key``. Output: one row per
patient record with every identifier in one comparable form, or null when a value cannot be one
(an SSN that was never issued, a phone without ten digits): a null compares as "no information"
in Splink, while a junk value would count as a disagreement.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

IDENTIFIER_COLUMNS = ("patient_key", "source_system", "first_name", "first_name_names", "last_name", "birth_date",
                      "sex", "zip5", "ssn", "phone")
_PATIENT_COLUMNS = ("patient_key", "source_system", "birth_date", "sex", "zip")
_PII_COLUMNS = ("patient_key", "first_name", "last_name", "ssn", "phone")


def _require(df: DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: expected columns {', '.join(missing)}; found {', '.join(df.columns)}")


def name_key(name: Column) -> Column:
    """Lower case letters only (accents, spaces, hyphens and apostrophes dropped); null when empty."""
    letters = F.regexp_replace(F.lower(F.translate(name, "áàâäãåçéèêëíìîïñóòôöõúùûüýÿ", "aaaaaaceeeeiiiinooooouuuuyy")),
                               "[^a-z]", "")
    return F.when(F.length(letters) > 0, letters)


def ssn_key(ssn: Column) -> Column:
    """Nine digits of an SSN that can have been issued (area not 000, 666 or 9xx; group not 00;
    serial not 0000); null otherwise."""
    digits = F.regexp_replace(ssn, "[^0-9]", "")
    area, group, serial = F.substring(digits, 1, 3), F.substring(digits, 4, 2), F.substring(digits, 6, 4)
    valid = (F.length(digits) == 9) & ~area.isin("000", "666") & ~area.startswith("9") & (group != "00") & (serial != "0000")
    return F.when(valid, digits)


def phone_key(phone: Column) -> Column:
    """The ten digits of a North American number (a leading country code 1 dropped); null otherwise."""
    digits = F.regexp_replace(phone, "[^0-9]", "")
    ten = F.when((F.length(digits) == 11) & digits.startswith("1"), F.substring(digits, 2, 10)).otherwise(digits)
    return F.when(F.length(ten) == 10, ten)


def zip5_key(zip_code: Column) -> Column:
    """The first five digits of a 5- or 9-digit zip; null otherwise."""
    digits = F.regexp_replace(zip_code, "[^0-9]", "")
    return F.when(F.length(digits).isin(5, 9), F.substring(digits, 1, 5))


def nickname_table(spark: SparkSession) -> DataFrame:
    """(``name``, ``nickname``) pairs of the ``nicknames`` package (a curated table of English
    given names and their nicknames: ``robert`` -> ``bob``), lower case."""
    from nicknames import name_triplets

    pairs = sorted({(t.name1.lower(), t.name2.lower()) for t in name_triplets()})
    return spark.createDataFrame(pairs, "name string, nickname string")


def name_groups(names: DataFrame, nicknames: DataFrame) -> DataFrame:
    """Distinct normalised first names (``first_name``) -> (``first_name``, ``first_name_names``):
    the name with its nicknames and the names it is a nickname of, sorted."""
    related = nicknames.select("name", "nickname").unionByName(
        nicknames.select(F.col("nickname").alias("name"), F.col("name").alias("nickname")))
    found = names.join(related, names["first_name"] == related["name"], "left").groupBy("first_name").agg(
        F.collect_set("nickname").alias("_related"))
    return found.select("first_name", F.array_sort(F.array_union(F.array("first_name"), "_related")).alias("first_name_names"))


def normalised_identifiers(patients: DataFrame, pii: DataFrame, nicknames: DataFrame) -> DataFrame:
    """``processed/patients`` + ``processed/patients_pii`` + a :func:`nickname_table` ->
    :data:`IDENTIFIER_COLUMNS`, one row per ``patient_key`` (birth date as ``yyyy-MM-dd`` text,
    sex ``F``/``M`` or null, ``first_name_names`` the first name and its nickname relatives)."""
    _require(patients, _PATIENT_COLUMNS, "patients")
    _require(pii, _PII_COLUMNS, "patients_pii")
    sex = F.upper(F.trim("sex"))
    joined = patients.select(*_PATIENT_COLUMNS).join(pii.select(*_PII_COLUMNS), "patient_key", "left")
    normal = joined.select(
        "patient_key", "source_system",
        name_key(F.col("first_name")).alias("first_name"),
        name_key(F.col("last_name")).alias("last_name"),
        F.date_format("birth_date", "yyyy-MM-dd").alias("birth_date"),
        F.when(sex.isin("F", "M"), sex).alias("sex"),
        zip5_key(F.col("zip")).alias("zip5"),
        ssn_key(F.col("ssn")).alias("ssn"),
        phone_key(F.col("phone")).alias("phone"),
    )
    groups = name_groups(normal.select("first_name").where(F.col("first_name").isNotNull()).distinct(), nicknames)
    return normal.join(groups, "first_name", "left").select(*IDENTIFIER_COLUMNS)
