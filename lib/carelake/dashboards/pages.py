"""What the report shows: the dashboards, their charts, and the frames the charts draw.

A chart names a frame (:data:`FRAMES`), a kind, the column on its x axis and its measures. The
page aggregates the frame's rows in the browser after the viewer's filters, so a measure says
how its rows combine: ``sum``, ``mean`` (weighted by another column) or ``ratio`` (sum over sum).
Pointing a chart at a new column (a risk-adjusted measure, say) is a one-line change here: add
the column to its frame in :mod:`carelake.dashboards.frames` and name it in a :class:`Measure`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import DataFrame

from carelake.dashboards import frames

FILTERS = ("hospital", "service_month", "specialty")  # the frame columns page filters apply to
KINDS = ("kpi", "line", "bar", "hbar", "scatter", "table")


@dataclass(frozen=True)
class Measure:
    """A number a chart draws. ``how``: ``sum`` of ``column``; ``mean`` of ``column`` weighted by
    ``weight``; ``ratio`` = sum(``column``) / sum(``weight``). ``format`` is a d3 format."""

    column: str
    label: str
    how: str = "sum"
    weight: str | None = None
    format: str = ",.0f"


@dataclass(frozen=True)
class Chart:
    """One chart: ``says`` is the sentence under its title. ``x`` groups the rows (the x axis, or
    the bars of ``hbar``); ``series`` splits them into coloured traces. ``scatter`` draws one
    point per row (x, y = the first two measures, ``size`` a column). ``table`` lists ``columns``
    sorted by the first measure. ``top`` keeps the largest groups; ``ascending`` flips that."""

    key: str
    title: str
    says: str
    frame: str
    kind: str
    measures: tuple[Measure, ...]
    x: str | None = None
    series: str | None = None
    size: str | None = None
    columns: tuple[str, ...] = ()
    top: int | None = None
    ascending: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"chart {self.key}: kind {self.kind!r}, expected one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Section:
    title: str
    charts: tuple[Chart, ...]


@dataclass(frozen=True)
class Dashboard:
    key: str
    title: str
    audience: str
    answers: str
    sections: tuple[Section, ...]

    @property
    def charts(self) -> tuple[Chart, ...]:
        return tuple(c for s in self.sections for c in s.charts)


@dataclass(frozen=True)
class Frame:
    """A frame: the curated (or processed) tables it is built from and how."""

    tables: tuple[str, ...]
    build: Callable[[dict[str, DataFrame], date], DataFrame] = field(repr=False)


FRAMES: dict[str, Frame] = {
    "kpi_patient": Frame(("curated.kpi_patient",), lambda t, _: frames.plain_numbers(frames.dated_months(t["curated.kpi_patient"]))),
    "kpi_finance": Frame(("curated.kpi_finance",), lambda t, _: frames.plain_numbers(frames.dated_months(t["curated.kpi_finance"]))),
    "kpi_hospital": Frame(("curated.kpi_hospital",), lambda t, _: frames.plain_numbers(frames.dated_months(t["curated.kpi_hospital"]))),
    "kpi_executive": Frame(
        ("curated.kpi_executive",), lambda t, _: frames.plain_numbers(frames.dated_months(t["curated.kpi_executive"]))
    ),
    "specialty_months": Frame(
        ("curated.kpi_provider", "curated.provider_features"),
        lambda t, _: frames.specialty_months(t["curated.kpi_provider"], t["curated.provider_features"]),
    ),
    "ranked_providers": Frame(
        ("curated.provider_features",), lambda t, _: frames.ranked_providers(t["curated.provider_features"])
    ),
    "patient_mix": Frame(
        ("curated.patient_summary",), lambda t, as_of: frames.patient_mix(t["curated.patient_summary"], as_of)
    ),
    "procedure_volume": Frame(
        ("curated.provider_procedure_stats",), lambda t, _: frames.procedure_volume(t["curated.provider_procedure_stats"])
    ),
    "demand_months": Frame(
        ("curated.network_demand_by_zip",), lambda t, _: frames.demand_months(t["curated.network_demand_by_zip"])
    ),
    "routing_latest": Frame(
        ("curated.network_demand_by_zip", "curated.referral_routing"),
        lambda t, _: frames.routing_latest(t["curated.network_demand_by_zip"], t["curated.referral_routing"]),
    ),
    "quarantine_by_rule": Frame(
        ("processed._quarantine",), lambda t, _: frames.quarantine_by_rule(t["processed._quarantine"])
    ),
}
# Frames made from the run's own records rather than tables (filled by the report builder).
RUN_FRAMES = ("reconciliation", "expectations")

MONEY = ",.3s"
RATE = ".1%"
SCORE = ".2f"

VISITS = Measure("encounters", "Encounters")
PAID = Measure("paid", "Paid ($)", format=MONEY)

DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "executive", "Executive summary", "Hospital executives and the board",
        "How much care did the system give, what did it earn, and how safe was it, month by month?",
        (
            Section("The period at a glance", (
                Chart("exec_care_tiles", "Care given", "Encounters, inpatient stays and patient days in the selected months and hospitals.",
                      "kpi_hospital", "kpi", (VISITS, Measure("inpatient_encounters", "Inpatient stays"),
                                              Measure("patient_days", "Patient days"))),
                Chart("exec_money_tiles", "Money", "Billed and paid amounts of claims with service in the selected months; the share of claims denied.",
                      "kpi_finance", "kpi", (Measure("billed", "Billed ($)", format=MONEY), PAID,
                                             Measure("denied_claims", "Denial rate", "ratio", "claims", RATE))),
            )),
            Section("Trends", (
                Chart("exec_visits", "Encounters by month", "Encounters admitted each month, one line per hospital.",
                      "kpi_hospital", "line", (VISITS,), x="service_month", series="hospital"),
                Chart("exec_paid", "Paid revenue by month", "Paid amount of claims by month of service, stacked by hospital.",
                      "kpi_finance", "bar", (PAID,), x="service_month", series="hospital"),
                Chart("exec_readmissions", "30-day readmission rate by month",
                      "Share of encounters followed by a readmission within 30 days (all hospitals).",
                      "kpi_patient", "line", (Measure("readmissions", "Readmission rate", "ratio", "visits", RATE),), x="service_month"),
                Chart("exec_growth", "Month-over-month growth", "Visits and paid revenue against the previous calendar month (0% = flat).",
                      "kpi_executive", "line", (Measure("visits_mom_growth", "Visits growth", format=RATE),
                                                Measure("paid_mom_growth", "Paid growth", format=RATE)), x="service_month"),
            )),
        ),
    ),
    Dashboard(
        "patients", "Patients", "Clinical leads and patient-experience teams",
        "Who are our patients, how often do they come back, and how satisfied are they?",
        (
            Section("Volume and experience", (
                Chart("patient_volume", "Patients and visits by month", "Distinct patients and encounters admitted each month (all hospitals).",
                      "kpi_patient", "line", (Measure("visits", "Visits"), Measure("patients", "Patients")), x="service_month"),
                Chart("patient_satisfaction", "Satisfaction by month", "Mean satisfaction score (1-5) of the month's encounters.",
                      "kpi_patient", "line", (Measure("avg_satisfaction", "Satisfaction", "mean", "visits", SCORE),), x="service_month"),
            )),
            Section("Who they are (as of the report date)", (
                Chart("patient_age_sex", "Patients by age band and sex", "De-identified patients by Safe Harbor age band, split by recorded sex.",
                      "patient_mix", "bar", (Measure("patients", "Patients"),), x="age_band", series="sex"),
                Chart("patient_high_risk", "High-risk share by hospital",
                      "Share of patients with 2+ readmissions or 4+ inpatient stays in the last 365 days.",
                      "patient_mix", "hbar", (Measure("high_risk_patients", "High-risk share", "ratio", "patients", RATE),), x="hospital"),
            )),
        ),
    ),
    Dashboard(
        "doctors", "Doctors", "Chief medical officer and the medical staff office",
        "Which specialties carry the load, and how do their outcomes and patient ratings compare?",
        (
            Section("Workload", (
                Chart("doctor_encounters", "Encounters by specialty and month", "Encounters each month, stacked by the provider's specialty.",
                      "specialty_months", "bar", (VISITS,), x="service_month", series="specialty"),
            )),
            Section("Outcomes and ratings", (
                Chart("doctor_readmission", "Readmission rate by specialty", "Share of encounters readmitted within 30 days, weighted by encounters.",
                      "specialty_months", "hbar", (Measure("readmission_rate", "Readmission rate", "mean", "encounters", RATE),), x="specialty"),
                Chart("doctor_satisfaction", "Satisfaction by specialty", "Mean satisfaction score (1-5), weighted by encounters.",
                      "specialty_months", "hbar", (Measure("avg_satisfaction", "Satisfaction", "mean", "encounters", SCORE),), x="specialty"),
                Chart("doctor_top", "Top providers by composite score",
                      "Cost-effectiveness and quality score (0-1) of providers with at least 10 encounters in 365 days.",
                      "ranked_providers", "table", (Measure("composite_score", "Score", format=SCORE),),
                      columns=("npi", "specialty", "encounters_365d", "cost_index", "readmission_rate_shrunk", "avg_satisfaction", "composite_score"),
                      top=15),
            )),
        ),
    ),
    Dashboard(
        "finance", "Finance", "Chief financial officer and revenue-cycle managers",
        "What did we bill and collect, from which payers, and how much was denied?",
        (
            Section("The period at a glance", (
                Chart("finance_tiles", "Revenue cycle", "Claims with service in the selected months and hospitals.",
                      "kpi_finance", "kpi", (Measure("billed", "Billed ($)", format=MONEY), Measure("allowed", "Allowed ($)", format=MONEY), PAID,
                                             Measure("paid", "Collection rate", "ratio", "allowed", RATE),
                                             Measure("denied_claims", "Denial rate", "ratio", "claims", RATE))),
            )),
            Section("Trends and payers", (
                Chart("finance_trend", "Billed, allowed and paid by month", "Claim amounts by month of service.",
                      "kpi_finance", "line", (Measure("billed", "Billed", format=MONEY), Measure("allowed", "Allowed", format=MONEY),
                                              Measure("paid", "Paid", format=MONEY)), x="service_month"),
                Chart("finance_payer_paid", "Paid by payer", "Paid amount per payer, largest first.",
                      "kpi_finance", "hbar", (PAID,), x="payer", top=12),
                Chart("finance_payer_denials", "Denial rate by payer", "Share of each payer's claims that were denied.",
                      "kpi_finance", "hbar", (Measure("denied_claims", "Denial rate", "ratio", "claims", RATE),), x="payer", top=12),
                Chart("finance_department", "Paid by department", "Paid amount per department of the claim's encounter, stacked by hospital.",
                      "kpi_finance", "bar", (PAID,), x="department", series="hospital"),
            )),
        ),
    ),
    Dashboard(
        "hospital", "Hospital overview", "Hospital operations and department heads",
        "How busy is each hospital and department, and how many beds does that take?",
        (
            Section("Capacity", (
                Chart("hospital_census", "Average daily census by month", "Patient days / days in the month: about how many beds were in use.",
                      "kpi_hospital", "line", (Measure("avg_daily_census", "Beds in use", format=",.1f"),), x="service_month", series="hospital"),
                Chart("hospital_inpatient", "Inpatient stays by month", "Inpatient encounters admitted each month, stacked by hospital.",
                      "kpi_hospital", "bar", (Measure("inpatient_encounters", "Inpatient stays"),), x="service_month", series="hospital"),
            )),
            Section("Departments", (
                Chart("hospital_departments", "Encounters by department", "Encounters per department, stacked by hospital.",
                      "kpi_hospital", "hbar", (VISITS,), x="department", series="hospital"),
                Chart("hospital_procedures", "Procedures by department", "Procedures performed in each department's encounters.",
                      "kpi_hospital", "hbar", (Measure("procedures", "Procedures"),), x="department"),
            )),
        ),
    ),
    Dashboard(
        "providers", "Provider questions", "Network management, finance and clinical leads",
        "Who is cost-effective, who specialises in what, who has the best outcomes, where must the network grow, "
        "and where should demand go?",
        (
            Section("1. Cost-effectiveness", (
                Chart("prov_cost_outcome", "Cost against outcome",
                      "Each dot is a provider: cost index (1 = as expected for the case mix; left is cheaper) against the "
                      "readmission rate shrunk toward the specialty (lower is better). Dot size: encounters.",
                      "ranked_providers", "scatter", (Measure("cost_index", "Cost index", format=SCORE),
                                                      Measure("readmission_rate_shrunk", "Readmission rate (shrunk)", format=RATE)),
                      series="specialty", size="encounters_365d"),
                Chart("prov_top_score", "Most cost-effective providers", "Highest composite score (cost 40%, readmission 20%, complication 20%, satisfaction 20%).",
                      "ranked_providers", "table", (Measure("composite_score", "Score", format=SCORE),),
                      columns=("npi", "specialty", "encounters_365d", "cost_per_case", "cost_index", "composite_score"), top=10),
            )),
            Section("2. Specialisation", (
                Chart("prov_procedures", "Busiest procedure codes", "Procedures performed in the 365 days to the report date, by code.",
                      "procedure_volume", "hbar", (Measure("volume", "Procedures"),), x="procedure_code", top=15),
                Chart("prov_focus", "Most specialised providers",
                      "Procedure-mix concentration (HHI: 1 = a single code) and the provider's top code.",
                      "ranked_providers", "table", (Measure("procedure_hhi", "HHI", format=SCORE),),
                      columns=("npi", "specialty", "top_procedure_code", "top_procedure_share", "procedure_hhi", "encounters_365d"), top=10),
            )),
            Section("3. Outcomes", (
                Chart("prov_best_outcomes", "Best outcomes", "Lowest readmission rate shrunk toward the specialty (fair to small practices).",
                      "ranked_providers", "table", (Measure("readmission_rate_shrunk", "Readmission (shrunk)", format=RATE),),
                      columns=("npi", "specialty", "encounters_365d", "readmission_rate", "readmission_rate_shrunk",
                               "complication_rate_shrunk", "avg_satisfaction"), top=10, ascending=True),
                Chart("prov_complications", "Complication rate by specialty", "Share of encounters with a complication, weighted by encounters.",
                      "specialty_months", "hbar", (Measure("complication_rate", "Complication rate", "mean", "encounters", RATE),), x="specialty"),
            )),
            Section("4. Network growth", (
                Chart("prov_demand", "Demand against capacity", "Encounters plus leaked referrals (demand) against the capacity proxy, by month.",
                      "demand_months", "line", (Measure("demand", "Demand"), Measure("capacity", "Capacity")), x="service_month"),
                Chart("prov_expand", "Areas to expand", "Area x specialty cells whose demand passed 90% of capacity, by month and specialty.",
                      "demand_months", "bar", (Measure("cells_to_expand", "Cells over 90% of capacity"),), x="service_month", series="specialty"),
            )),
            Section("5. Routing", (
                Chart("prov_routing", "Where to route leaked referrals (latest month with leaks)",
                      "Areas and specialties whose referrals left the network, with the eligible in-network providers to send them to "
                      "(near, with headroom and volume), best routing score first, and why; or why no provider is eligible.",
                      "routing_latest", "table", (Measure("referrals_leaked", "Leaked referrals"),),
                      columns=("zip3", "specialty", "referrals_requested", "referrals_leaked", "leakage_rate", "eligible_providers",
                               "route_to", "routing_reason"),
                      top=15),
            )),
        ),
    ),
    Dashboard(
        "quality", "Data quality", "Data engineering and data stewards",
        "What was rejected, by which rule and from which source; do the counts reconcile; did the expectation suites pass?",
        (
            Section("Quarantine", (
                Chart("quality_by_rule", "Quarantined rows by rule", "Rows rejected by each row rule (a row failing two rules counts under both).",
                      "quarantine_by_rule", "hbar", (Measure("rows", "Rows"),), x="rule", series="hospital", top=20),
                Chart("quality_over_time", "Quarantined rows over time", "Rows quarantined per day of processing, by source.",
                      "quarantine_by_rule", "bar", (Measure("rows", "Rows"),), x="quarantined_on", series="hospital"),
                Chart("quality_by_entity", "Quarantined rows by table", "Rows rejected per entity and source.",
                      "quarantine_by_rule", "bar", (Measure("rows", "Rows"),), x="entity", series="hospital"),
            )),
            Section("This run", (
                Chart("quality_reconciliation", "Reconciliation", "Per stage and table: rows in = valid + quarantined + duplicates dropped.",
                      "reconciliation", "table", (Measure("rows_in", "Rows in"),),
                      columns=("stage", "table", "rows_in", "rows_valid", "rows_quarantined", "duplicates_dropped", "rows_written",
                               "delta_version", "reconciles")),
                Chart("quality_expectations", "Great Expectations results", "The expectation suite of each processed table, latest validation.",
                      "expectations", "table", (Measure("evaluated", "Expectations"),),
                      columns=("entity", "run_id", "success", "evaluated", "failed", "failed_expectations")),
            )),
        ),
    ),
)


def frames_needed() -> set[str]:
    """Every frame some chart draws."""
    return {c.frame for d in DASHBOARDS for c in d.charts}


def check_catalog() -> None:
    """Every chart names a known frame; fails naming the chart otherwise."""
    for dashboard in DASHBOARDS:
        for chart in dashboard.charts:
            if chart.frame not in FRAMES and chart.frame not in RUN_FRAMES:
                raise ValueError(f"dashboard {dashboard.key}, chart {chart.key}: unknown frame {chart.frame!r}")
