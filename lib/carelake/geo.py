"""Where zips are, and how far apart: zip centroids from the ``zipcodes`` package, great-circle
distances from ``haversine``.

Curated tables know patients by their Safe Harbor zip3 only, and providers by their practice zip,
so distances here run from an area's centroid (the mean of the package's zips with that prefix)
to a provider zip's own centroid. A zip the package does not list (a retired or made-up one) is
placed at its zip3's centroid and says so (``located_by``), rather than being dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import zipcodes
from haversine import Unit, haversine_vector
from pyspark.sql import DataFrame, SparkSession

LOCATED_BY_ZIP, LOCATED_BY_ZIP3 = "zip", "zip3"
DISTANCE_DIGITS = 1  # km; centroids are a few km from where anybody lives anyway


@lru_cache(maxsize=1024)
def zip3_centroid(zip3: str) -> tuple[float, float] | None:
    """(lat, lon) mean of the package's active zips starting with ``zip3``; None when it has none."""
    if not (len(zip3) == 3 and zip3.isdigit()):
        return None
    points = [(float(z["lat"]), float(z["long"])) for z in zipcodes.similar_to(zip3)
              if z.get("active") and z.get("lat") and z.get("long")]
    if not points:
        return None
    lat, lon = np.mean(np.array(points), axis=0).tolist()
    return lat, lon


@lru_cache(maxsize=4096)
def zip_centroid(zip_code: str) -> tuple[float, float, str] | None:
    """(lat, lon, located_by) of a 5-digit zip (or the first 5 digits of a ZIP+4): its own
    centroid, else its zip3's; None when neither is known."""
    digits = "".join(ch for ch in str(zip_code) if ch.isdigit())[:5]
    if len(digits) != 5:
        return None
    found = [z for z in zipcodes.matching(digits) if z.get("lat") and z.get("long")]
    if found:
        return float(found[0]["lat"]), float(found[0]["long"]), LOCATED_BY_ZIP
    area = zip3_centroid(digits[:3])
    return (area[0], area[1], LOCATED_BY_ZIP3) if area else None


def area_to_zip_distances(spark: SparkSession, areas: Iterable[str], zips: Iterable[str]) -> DataFrame:
    """Every (zip3, zip) pair of the given areas and zips with ``distance_km`` from the area's
    centroid to the zip's, and how the zip was located; pairs with an unlocatable side are left
    out. A small table (areas x distinct zips) for broadcasting into joins."""
    origins = [(a, c) for a in sorted({str(a) for a in areas if a is not None}) if (c := zip3_centroid(a))]
    targets = [(z, c) for z in sorted({str(z) for z in zips if z is not None}) if (c := zip_centroid(z))]
    schema = "zip3 string, zip string, distance_km double, located_by string"
    if not origins or not targets:
        return spark.createDataFrame([], schema)
    km = haversine_vector(np.array([c for _, c in origins]), np.array([c[:2] for _, c in targets]),
                          Unit.KILOMETERS, comb=True)  # shape (targets, origins)
    rows = [(a, z, round(float(km[j, i]), DISTANCE_DIGITS), c[2])
            for i, (a, _) in enumerate(origins) for j, (z, c) in enumerate(targets)]
    return spark.createDataFrame(rows, schema)
