"""Zip centroids and distances (carelake.geo) against places whose geography is known."""

from __future__ import annotations

import pytest

from carelake.geo import (
    LOCATED_BY_ZIP,
    LOCATED_BY_ZIP3,
    area_to_zip_distances,
    zip3_centroid,
    zip_centroid,
)


def test_a_listed_zip_is_placed_at_its_own_centroid_in_its_city():
    lat, lon, how = zip_centroid("60604")  # the Chicago Loop: about 41.88 N, 87.63 W
    assert how == LOCATED_BY_ZIP
    assert lat == pytest.approx(41.88, abs=0.05) and lon == pytest.approx(-87.63, abs=0.05)
    assert zip_centroid("60604-1234")[:2] == (lat, lon)


def test_an_unlisted_zip_falls_back_to_its_areas_centroid_and_says_so():
    # 60667 is not a delivery zip; its area (606, Chicago) is.
    lat, lon, how = zip_centroid("60667")
    assert how == LOCATED_BY_ZIP3
    assert (lat, lon) == zip3_centroid("606")
    assert lat == pytest.approx(41.85, abs=0.2) and lon == pytest.approx(-87.7, abs=0.2)


@pytest.mark.parametrize("bad", ["", "6060", "abcde", "00012"])
def test_what_is_not_a_zip_or_in_no_known_area_is_not_placed(bad):
    # 000 is no prefix of any US zip, so 00012 has neither a centroid nor an area to fall back to.
    assert zip_centroid(bad) is None
    assert zip3_centroid("000") is None and zip3_centroid("60") is None


def test_area_to_zip_distances_are_great_circle_kilometres(spark):
    # Chicago to downtown Cleveland is about 495 km as the crow flies, Chicago to Seattle about
    # 2,800 km; a zip's distance from its own area's centroid is a few km.
    rows = {(r.zip3, r.zip): r for r in area_to_zip_distances(spark, ["606", "xyz"], ["44114", "98101", "60604", None]).collect()}
    assert set(rows) == {("606", "44114"), ("606", "98101"), ("606", "60604")}
    assert 470 < rows["606", "44114"].distance_km < 520
    assert 2700 < rows["606", "98101"].distance_km < 2900
    assert rows["606", "60604"].distance_km < 15
    assert {r.located_by for r in rows.values()} == {LOCATED_BY_ZIP}
