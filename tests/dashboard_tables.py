"""Tiny curated tables, written by hand, for the dashboard report and Superset tests.

The numbers are chosen so a test can say what a chart must show: two hospitals over two
months, four specialties' providers, one leaked-referral area in the latest month, and three
quarantined rows (one failing two rules).
"""

from __future__ import annotations

from datetime import date, datetime

from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.delta import DeltaTables
from carelake.storage import table_uri

MONTHS = ("2024-11", "2024-12")
# hospital -> encounters per month (kpi_hospital, one department each)
ENCOUNTERS = {"hospital_a": (10, 20), "hospital_b": (30, 40)}
PAID = {"hospital_a": (100.0, 200.0), "hospital_b": (300.0, 400.0)}
AS_OF = date(2024, 12, 31)
# Leaked referrals per area, specialty and month, for the routing frame and dataset tests.
LEAK_ROWS = [
    ("100", "cardiology", "2024-11", 4, 3, 0.75, 1.0, True), ("100", "cardiology", "2024-12", 4, 1, 0.25, 1.2, True),
    ("200", "oncology", "2024-12", 2, 2, 1.0, 0.5, False), ("300", "oncology", "2024-12", 5, 0, 0.0, 0.5, False),
    ("400", "urology", "2024-12", 3, 1, 0.33, 0.9, False), ("500", "oncology", "unknown", 9, 9, 1.0, 1.0, True),
    ("100", "cardiology", "2025-01", 0, 0, None, 0.1, False),  # a partial last month: no referrals yet
]
LEAK_SCHEMA = ("zip3 string, specialty string, service_month string, referrals_requested long, referrals_leaked long, "
               "leakage_rate double, demand_capacity_ratio double, expand_network boolean")
ROUTE_TO = ("1000000003", "1000000001", "1000000004")  # referral_routing ranks 1-3 for zip 100 cardiology


def write_dashboard_tables(spark: SparkSession, config: Config, tables: DeltaTables) -> dict[str, int]:
    """Write every table the report reads under ``config``'s root; returns table -> version."""
    rows: dict[str, tuple[list[tuple], str]] = {
        "curated.kpi_hospital": (
            [(h, "cardiology", m, n, n // 2, n * 3, round(n * 3 / 30, 4), n * 2, 3)
             for h, counts in ENCOUNTERS.items() for m, n in zip(MONTHS, counts, strict=True)]
            + [("hospital_a", "cardiology", "unknown", 99, 0, 0, 0.0, 0, 0)],
            "hospital string, department string, service_month string, encounters long, inpatient_encounters long, "
            "patient_days long, avg_daily_census double, procedures long, distinct_procedure_codes long",
        ),
        "curated.kpi_finance": (
            [(m, h, "cardiology", payer, 4, paid * 2, paid * 1.5, paid / 2 if payer == "medicare" else paid / 2, 1, 0.25, 0.5)
             for h, amounts in PAID.items() for m, paid in zip(MONTHS, amounts, strict=True) for payer in ("medicare", "aetna")],
            "service_month string, hospital string, department string, payer string, claims long, billed double, "
            "allowed double, paid double, denied_claims long, denial_rate double, collection_rate double",
        ),
        "curated.kpi_patient": (
            [("2024-11", 35, 40, 4, 0.1, 4.0), ("2024-12", 50, 60, 3, 0.05, 4.5)],
            "service_month string, patients long, visits long, readmissions long, readmission_rate double, avg_satisfaction double",
        ),
        "curated.kpi_executive": (
            [("2024-11", 35, 40, 0.1, 800.0, 400.0, None, None, None), ("2024-12", 50, 60, 0.05, 1200.0, 600.0, 0.5, 0.4286, 0.5)],
            "service_month string, patients long, visits long, readmission_rate double, billed double, paid double, "
            "visits_mom_growth double, patients_mom_growth double, paid_mom_growth double",
        ),
        "curated.kpi_provider": (
            [(npi, m, 10, 8, 1000.0, rate, rate / 2, 4.0, 500.0, 400.0)
             for npi, rate in (("1000000001", 0.2), ("1000000002", 0.1), ("1000000003", 0.0), ("1000000004", 0.3)) for m in MONTHS],
            "npi string, service_month string, encounters long, patients long, total_cost double, readmission_rate double, "
            "complication_rate double, avg_satisfaction double, billed double, paid double",
        ),
        "curated.provider_features": (
            [(npi, spec, "100", enc, 900.0 + i, 0.8 + i / 10, 0.1, 0.1 + i / 100, 0.05, 4.0, 0.9 - i / 10, "99213", 0.5, 0.3 + i / 10, 0.1, 1.5)
             for i, (npi, spec, enc) in enumerate((("1000000001", "cardiology", 20), ("1000000002", "oncology", 20),
                                                   ("1000000003", "pediatrics", 20), ("1000000004", "orthopedics", 5)))],
            "npi string, specialty string, zip3 string, encounters_365d long, cost_per_case double, cost_index double, "
            "readmission_rate double, readmission_rate_shrunk double, complication_rate_shrunk double, avg_satisfaction double, "
            "composite_score double, top_procedure_code string, top_procedure_share double, procedure_hhi double, "
            "referral_leakage_rate double, marketing_roi double",
        ),
        "curated.patient_summary": (
            [(t, h, s, y, r, v, rd, c, AS_OF) for t, h, s, y, r, v, rd, c in (
                ("t1", "hospital_a", "F", 1950, True, 3, 2, 100.0), ("t2", "hospital_a", "M", 1990, False, 1, 0, 50.0),
                ("t3", "hospital_b", "F", 2015, False, 2, 0, 70.0), ("t4", "hospital_b", "M", None, False, 1, 0, 20.0))],
            "patient_token string, source_system string, sex string, birth_year int, high_risk boolean, visits_365d long, "
            "readmissions_365d long, total_cost double, as_of date",
        ),
        "curated.provider_procedure_stats": (
            [("1000000001", "cardiology", "93000", 12), ("1000000002", "oncology", "96413", 7), ("1000000003", "pediatrics", "93000", 3)],
            "npi string, specialty string, procedure_code string, volume long",
        ),
        "curated.network_demand_by_zip": (
            [("100", "cardiology", "2024-11", 20.0, 30.0, 4, 1, 0.25, 0.67, False, ["1000000001"]),
             ("100", "cardiology", "2024-12", 40.0, 30.0, 6, 2, 0.33, 1.33, True, ["1000000001", "1000000002"]),
             ("200", "oncology", "2024-12", 5.0, 10.0, 2, 0, 0.0, 0.5, False, [])],
            "zip3 string, specialty string, service_month string, demand double, capacity double, referrals_requested long, "
            "referrals_leaked long, leakage_rate double, demand_capacity_ratio double, expand_network boolean, route_to array<string>",
        ),
        # zip 100's leaked cardiology referrals route to ROUTE_TO (rank order, not NPI order);
        # oncology in zip 200 has no eligible provider.
        "curated.referral_routing": (
            [("100", "cardiology", rank, npi, 3, AS_OF, f"rank {rank}") for rank, npi in enumerate(ROUTE_TO, start=1)]
            + [("200", "oncology", 0, None, 0, AS_OF, "no eligible provider among 1 of the specialty: 1 inactive")],
            "zip3 string, specialty string, rank int, npi string, eligible_providers long, as_of date, reason string",
        ),
        "processed._quarantine": (
            [("encounters", "hospital_a", ["npi_luhn", "admit_date_parse"], datetime(2024, 12, 30, 10)),
             ("claims", "hospital_b", ["paid_le_billed"], datetime(2024, 12, 30, 10)),
             ("claims", "hospital_b", ["paid_le_billed"], datetime(2024, 12, 31, 9))],
            "entity string, source_system string, reasons array<string>, quarantined_at timestamp",
        ),
        "curated._aggregate_state": (
            [("fact_encounter", 1, AS_OF, "r1", datetime(2024, 12, 31, 12))],
            "input string, version long, as_of date, run_id string, recorded_at timestamp",
        ),
    }
    versions = {}
    for name, (data, schema) in rows.items():
        zone, table = name.split(".")
        result = tables.write(spark.createDataFrame(data, schema), table_uri(config, zone, table), mode="overwrite")
        versions[name] = result.version
    return versions
