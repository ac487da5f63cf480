"""Tiny curated tables for the API tests (written once per module through carelake.delta), and a
uvicorn server on a free loopback port in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime

import uvicorn
from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.delta import DeltaTables
from carelake.serve.cluster import free_port
from carelake.storage import table_uri

AS_OF = date(2024, 6, 30)
# Four providers: two cardiologists in 606 (one without encounters: null score), one in 100,
# one orthopedist in 606. Columns are a subset of provider_features' own, same names and types.
FEATURES_DDL = (
    "npi string, as_of date, specialty string, zip string, zip3 string, network_id string, active boolean, "
    "encounters_365d long, patients_365d long, procedures_365d long, cost_per_case double, cost_index double, "
    "risk_adjusted_cost_per_case double, readmission_rate_shrunk double, complication_rate_shrunk double, "
    "avg_satisfaction double, referral_leakage_rate double, marketing_roi double, composite_score double"
)
FEATURES_ROWS = [
    ("1000000004", AS_OF, "Cardiology", "60601", "606", "N1", True, 120, 90, 300, 1500.0, 0.8, 1400.0, 0.05, 0.02, 4.5, 0.1, 2.0, 0.9),
    ("1000000012", AS_OF, "Cardiology", "60614", "606", "N1", True, 40, 35, 80, 2500.0, 1.3, 2600.0, 0.12, 0.06, 3.9, 0.3, 0.5, 0.4),
    ("1000000020", AS_OF, "Cardiology", "60622", "606", "N2", True, 0, 0, 0, None, None, None, None, None, None, None, None, None),
    ("1000000038", AS_OF, "Cardiology", "10001", "100", "N3", True, 60, 50, 120, 1800.0, 1.0, 1800.0, 0.08, 0.03, 4.1, 0.2, 1.1, 0.6),
    ("1000000046", AS_OF, "Orthopedics", "60610", "606", "N1", True, 75, 70, 150, 4000.0, 0.9, 3900.0, 0.04, 0.05, 4.4, 0.05, 3.0, 0.7),
]
PROCEDURES_DDL = (
    "npi string, procedure_code string, as_of date, specialty string, volume long, mean_cost double, "
    "cost_index double, procedure_score double, specialty_rank int"
)
PROCEDURES_ROWS = [
    ("1000000004", "93458", AS_OF, "Cardiology", 30, 900.0, 0.9, 0.8, 1),
    ("1000000004", "33533", AS_OF, "Cardiology", 12, 5000.0, 0.7, 0.9, 1),
    ("1000000012", "93458", AS_OF, "Cardiology", 8, 1300.0, 1.3, 0.5, 2),
]
SCORES_DDL = "npi string, model_name string, model_version int, score double, as_of date, scored_at timestamp"
SCORES_ROWS = [
    ("1000000004", "carelake_cost_per_case", 1, 1700.0, date(2024, 3, 31), datetime(2024, 4, 1, 2, 0)),
    ("1000000004", "carelake_cost_per_case", 2, 1550.0, AS_OF, datetime(2024, 7, 1, 2, 0)),
    ("1000000004", "carelake_poor_outcome", 3, 0.07, AS_OF, datetime(2024, 7, 1, 2, 0)),
    ("1000000012", "carelake_cost_per_case", 2, 2400.0, AS_OF, datetime(2024, 7, 1, 2, 0)),
]
DEMAND_DDL = (
    "zip3 string, specialty string, service_month string, encounters long, referrals_requested long, "
    "referrals_leaked long, leakage_rate double, active_providers long, capacity double, utilisation double, "
    "demand long, demand_capacity_ratio double, expand_network boolean, route_to array<string>"
)
DEMAND_ROWS = [
    ("606", "Cardiology", "2024-05", 150, 20, 5, 0.25, 2, 200.0, 0.75, 155, 0.775, False, ["1000000012", "1000000004"]),
    ("606", "Cardiology", "2024-06", 160, 30, 12, 0.4, 3, 200.0, 0.8, 172, 0.86, False, ["1000000004", "1000000012", "1000000020"]),
    ("606", "Cardiology", "unknown", 3, 0, 0, None, 3, 200.0, 0.015, 3, 0.015, False, ["1000000020"]),
    ("606", "Orthopedics", "2024-06", 70, 10, 6, 0.6, 1, 60.0, 1.17, 76, 1.27, True, ["1000000046"]),
    ("100", "Cardiology", "2024-06", 60, 5, 1, 0.2, 1, 80.0, 0.75, 61, 0.76, False, ["1000000038"]),
]
ROUTING_DDL = (
    "zip3 string, specialty string, rank int, as_of date, npi string, network_id string, distance_km double, "
    "quality_oe double, cost_oe double, routing_score double, headroom double, reason string"
)
ROUTING_ROWS = [
    ("606", "Cardiology", 1, AS_OF, "1000000012", "N1", 6.0, 0.8, 0.9, 0.83, 0.5,
     "quality O/E 0.80, cost O/E 0.90, headroom 50%, 6.0 km"),
    ("606", "Cardiology", 2, AS_OF, "1000000004", "N1", 4.1, 0.82, 0.95, 0.859, 0.3,
     "quality O/E 0.82, cost O/E 0.95, headroom 30%, 4.1 km"),
    ("606", "Orthopedics", 0, AS_OF, None, None, None, None, None, None, None,
     "no eligible provider among 1 of the specialty: 1 with fewer than 5 cases"),
    ("100", "Cardiology", 1, AS_OF, "1000000038", "N3", 2.0, 1.0, 1.0, 1.0, 0.4,
     "quality O/E 1.00, cost O/E 1.00, headroom 40%, 2.0 km"),
]
KPI_HOSPITAL_DDL = (
    "hospital string, department string, service_month string, encounters long, inpatient_encounters long, "
    "patient_days long, avg_daily_census double, procedures long, distinct_procedure_codes long"
)
KPI_HOSPITAL_ROWS = [
    ("hospital_a", "Cardiology", "2024-05", 100, 10, 40, 1.29, 150, 12),
    ("hospital_a", "Cardiology", "2024-06", 110, 12, 44, 1.47, 160, 13),
    ("hospital_b", "Cardiology", "2024-06", 80, 9, 30, 1.0, 90, 9),
]
KPI_EXECUTIVE_DDL = (
    "service_month string, patients long, visits long, readmission_rate double, billed double, paid double, "
    "visits_mom_growth double, patients_mom_growth double, paid_mom_growth double"
)
KPI_EXECUTIVE_ROWS = [
    ("2024-04", 180, 200, 0.1, 50000.0, 30000.0, None, None, None),
    ("2024-05", 190, 210, 0.09, 52000.0, 31000.0, 0.05, 0.0556, 0.0333),
    ("2024-06", 200, 231, 0.08, 55000.0, 33000.0, 0.1, 0.0526, 0.0645),
]
KPI_PATIENT_DDL = "service_month string, patients long, visits long, readmissions long, readmission_rate double, avg_satisfaction double"
KPI_PATIENT_ROWS = [("2024-06", 200, 231, 18, 0.078, 4.2)]
KPI_PROVIDER_DDL = (
    "npi string, service_month string, encounters long, patients long, total_cost double, readmission_rate double, "
    "complication_rate double, avg_satisfaction double, billed double, paid double"
)
KPI_PROVIDER_ROWS = [
    ("1000000004", "2024-06", 12, 11, 18000.0, 0.08, 0.0, 4.6, 20000.0, 15000.0),
    ("1000000012", "2024-06", 4, 4, 10000.0, 0.25, 0.0, 3.8, 11000.0, 7000.0),
]
KPI_FINANCE_DDL = (
    "service_month string, hospital string, department string, payer string, claims long, billed double, "
    "allowed double, paid double, denied_claims long, denial_rate double, collection_rate double"
)
KPI_FINANCE_ROWS = [
    ("2024-06", "hospital_a", "Cardiology", "acme", 10, 10000.0, 8000.0, 7000.0, 1, 0.1, 0.875),
    ("2024-06", "hospital_b", "Cardiology", "acme", 5, 4000.0, 3000.0, 3000.0, 0, 0.0, 1.0),
]
TABLES = {
    "provider_features": (FEATURES_DDL, FEATURES_ROWS),
    "provider_procedure_stats": (PROCEDURES_DDL, PROCEDURES_ROWS),
    "provider_scores": (SCORES_DDL, SCORES_ROWS),
    "network_demand_by_zip": (DEMAND_DDL, DEMAND_ROWS),
    "referral_routing": (ROUTING_DDL, ROUTING_ROWS),
    "kpi_hospital": (KPI_HOSPITAL_DDL, KPI_HOSPITAL_ROWS),
    "kpi_executive": (KPI_EXECUTIVE_DDL, KPI_EXECUTIVE_ROWS),
    "kpi_patient": (KPI_PATIENT_DDL, KPI_PATIENT_ROWS),
    "kpi_provider": (KPI_PROVIDER_DDL, KPI_PROVIDER_ROWS),
    "kpi_finance": (KPI_FINANCE_DDL, KPI_FINANCE_ROWS),
}


def write_curated(spark: SparkSession, tables: DeltaTables, config: Config) -> None:
    """Every table of :data:`TABLES` into the curated zone of ``config``, one commit each."""
    for name, (ddl, rows) in TABLES.items():
        tables.write(spark.createDataFrame(rows, ddl), table_uri(config, "curated", name), mode="overwrite")


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free 127.0.0.1 port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def hold(current: Callable[[], object], picked: threading.Event, release: threading.Event) -> Callable[[], object]:
    """A ``current`` that signals ``picked`` once it has chosen a snapshot and returns it only
    after ``release``: a request held in flight across a reload."""

    def held() -> object:
        snapshot = current()
        picked.set()
        release.wait(timeout=300)
        return snapshot

    return held
