"""Fixed reference data for the sample generator: specialties, codes, places, names, payers.

These are constants, not seeded: the seed only decides which of them each record uses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Specialty:
    """A clinical specialty and what its encounters look like."""

    name: str
    taxonomy: str  # NUCC provider taxonomy code
    department: str
    weight: float  # share of providers
    type_probs: tuple[float, float, float]  # inpatient, outpatient, emergency
    # CPT (5 digits) or HCPCS (letter + 4 digits); the first is the everyday one, the most done
    procedures: tuple[str, ...]
    diagnoses: tuple[str, ...]  # ICD-10-CM
    primary_care: bool = False


ENCOUNTER_TYPES = ("inpatient", "outpatient", "emergency")

SPECIALTIES: tuple[Specialty, ...] = (
    Specialty("Family Medicine", "207Q00000X", "Primary Care", 0.14, (0.02, 0.95, 0.03),
              ("99213", "99214", "99203", "99204", "G0439", "83036", "80053", "90460", "99396"),
              ("I10", "E11.9", "E78.5", "Z00.00", "J45.909", "F41.1", "M54.50"), True),
    Specialty("Internal Medicine", "207R00000X", "Internal Medicine", 0.12, (0.25, 0.7, 0.05),
              ("99213", "99214", "99223", "99232", "80053", "83036", "G0439"),
              ("I10", "E11.9", "N18.4", "D50.9", "E03.9", "J18.9"), True),
    Specialty("Pediatrics", "208000000X", "Pediatrics", 0.08, (0.04, 0.9, 0.06),
              ("99392", "99213", "90460", "99203"), ("Z00.129", "J45.909", "J18.9", "R10.9"), True),
    Specialty("Cardiology", "207RC0000X", "Cardiology", 0.06, (0.3, 0.65, 0.05),
              ("93000", "93306", "93458", "92928", "99214", "99223"),
              ("I25.10", "I48.91", "I50.9", "R07.9", "I10")),
    Specialty("Orthopaedic Surgery", "207X00000X", "Orthopedics", 0.06, (0.35, 0.6, 0.05),
              ("27447", "27130", "29881", "20610", "J3301", "99214"),
              ("M17.11", "M16.11", "S82.201A", "M54.50")),
    Specialty("Obstetrics & Gynecology", "207V00000X", "Women's Health", 0.06, (0.4, 0.55, 0.05),
              ("59400", "59510", "76805", "99213"), ("O80", "Z34.90")),
    Specialty("General Surgery", "208600000X", "Surgery", 0.06, (0.5, 0.45, 0.05),
              ("47562", "44970", "49505", "99223", "74177"), ("K80.20", "K35.80", "K40.90")),
    Specialty("Emergency Medicine", "207P00000X", "Emergency", 0.08, (0.15, 0.0, 0.85),
              ("99283", "99284", "99285", "71046", "74177", "A0427"),
              ("R07.9", "R10.9", "S06.0X0A", "J18.9")),
    Specialty("Neurology", "2084N0400X", "Neurology", 0.04, (0.2, 0.75, 0.05),
              ("95819", "70551", "99214", "99204"), ("G40.909", "G43.909")),
    Specialty("Dermatology", "207N00000X", "Dermatology", 0.04, (0.0, 1.0, 0.0),
              ("11102", "17000", "99213", "J3301"), ("L57.0", "L70.0")),
    Specialty("Gastroenterology", "207RG0100X", "Gastroenterology", 0.04, (0.15, 0.8, 0.05),
              ("45378", "43239", "G0121", "99214"), ("K21.9", "K80.20", "D50.9")),
    Specialty("Hematology & Oncology", "207RH0003X", "Oncology", 0.04, (0.2, 0.8, 0.0),
              ("96413", "77385", "J9355", "J0897", "99215"), ("C50.911", "C34.90", "D50.9")),
    Specialty("Psychiatry", "2084P0800X", "Behavioral Health", 0.05, (0.1, 0.88, 0.02),
              ("90834", "90792", "99214"), ("F32.9", "F41.1")),
    Specialty("Pulmonary Disease", "207RP1001X", "Pulmonology", 0.04, (0.3, 0.65, 0.05),
              ("94010", "31622", "E0601", "99214", "71046"), ("J44.9", "J45.909", "J18.9")),
    Specialty("Nephrology", "207RN0300X", "Nephrology", 0.03, (0.3, 0.7, 0.0),
              ("90935", "80053", "99214"), ("N18.4", "E11.9")),
    Specialty("Urology", "208800000X", "Urology", 0.03, (0.25, 0.75, 0.0),
              ("50590", "52000", "99214"), ("N20.0", "N40.0")),
    Specialty("Endocrinology", "207RE0101X", "Endocrinology", 0.03, (0.05, 0.95, 0.0),
              ("83036", "99214", "99204"), ("E11.9", "E03.9")),
)

# Typical charge per unit in dollars, before the provider's cost factor.
PROCEDURE_PRICES: dict[str, float] = {
    "99203": 150, "99204": 230, "99213": 110, "99214": 165, "99215": 240, "99223": 280,
    "99232": 110, "99283": 180, "99284": 320, "99285": 480, "99392": 140, "99396": 190,
    "93000": 25, "93306": 280, "93458": 2400, "92928": 5200, "27447": 14500, "27130": 15200,
    "29881": 3200, "20610": 95, "59400": 2900, "59510": 3400, "76805": 210, "47562": 6100,
    "44970": 5800, "49505": 3900, "95819": 390, "70551": 560, "11102": 120, "17000": 85,
    "45378": 850, "43239": 780, "96413": 310, "77385": 1200, "71046": 45, "74177": 450,
    "90834": 120, "90792": 210, "94010": 55, "31622": 650, "90935": 350, "50590": 3800,
    "52000": 420, "83036": 18, "80053": 20, "90460": 30, "G0439": 175, "G0121": 720,
    "J9355": 4100, "J0897": 1900, "A0427": 520, "E0601": 90, "J3301": 12,
}

# (zip3, city, telephone area code): patients and providers cluster in these areas.
ZIP_AREAS: tuple[tuple[str, str, str], ...] = (
    ("606", "Chicago", "312"),
    ("441", "Cleveland", "216"),
    ("981", "Seattle", "206"),
    ("303", "Atlanta", "404"),
)
ZIPS_PER_AREA = 15
# Residents per area, landed as reference data beside the source files (not a source entity:
# ingest's globs do not match it); the aggregates stage reads it for providers per 100,000.
AREA_POPULATION_PATH = "reference/area_population.csv"

NEIGHBOURHOODS: dict[str, tuple[str, ...]] = {
    "606": ("North Shore", "Lincoln Park", "Lakeview", "Hyde Park", "Wicker Park"),
    "441": ("Lakewood", "Shaker Heights", "Ohio City", "Tremont", "Parma"),
    "981": ("Ballard", "Capitol Hill", "Fremont", "Queen Anne", "Green Lake"),
    "303": ("Buckhead", "Midtown", "Decatur", "Inman Park", "Druid Hills"),
}
ORGANIZATION_KINDS = ("Medical Group", "Physicians", "Health Partners", "Clinic", "Specialty Associates")
NETWORKS = tuple(f"NET-{i:02d}" for i in range(1, 9))

FIRST_NAMES_F = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah",
    "Karen", "Nancy", "Lisa", "Betty", "Margaret", "Sandra", "Ashley", "Emily", "Donna", "Michelle",
    "Carol", "Amanda", "Melissa", "Deborah", "Stephanie", "Rebecca", "Laura", "Sharon", "Cynthia",
    "Maria", "Olivia", "Sofia", "Aisha", "Mei", "Priya", "Fatima",
)
FIRST_NAMES_M = (
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul",
    "Andrew", "Joshua", "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Jason",
    "Edward", "Jose", "Luis", "Wei", "Arjun", "Omar", "Hiroshi", "Kwame",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Patel", "Kim", "Chen", "Okafor",
    "Novak", "Kowalski", "Murphy", "O'Brien", "Schmidt", "Cohen",
)
STREETS = (
    "Oak", "Maple", "Cedar", "Pine", "Elm", "Washington", "Lake", "Hill", "Park", "Main",
    "Church", "Highland", "Franklin", "Jefferson", "Madison", "Sunset", "Ridge", "Walnut",
    "Chestnut", "Lincoln", "Spring", "Willow", "River", "Meadow", "Forest",
)
STREET_KINDS = ("St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct")
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example")

COMMERCIAL_PAYERS = ("Aetna", "UnitedHealthcare", "Cigna", "Blue Cross Blue Shield", "Humana")
CLAIM_STATUSES = ("PAID", "DENIED", "PENDING", "PARTIAL")
CLAIM_STATUS_PROBS = (0.78, 0.08, 0.07, 0.07)
# Share of billed that each payer allows, on average.
PAYER_ALLOWED_RATIO: dict[str, float] = {
    "Medicare": 0.42, "Medicaid": 0.35, "Aetna": 0.62, "UnitedHealthcare": 0.6, "Cigna": 0.64,
    "Blue Cross Blue Shield": 0.58, "Humana": 0.55, "Self-Pay": 0.8,
}

REFERRAL_STATUSES = ("completed", "scheduled", "cancelled", "leaked")
ACTIVITY_TYPES = ("campaign", "visit", "call", "event")
# (low, high) marketing spend in dollars per activity type, and typical contacts reached.
ACTIVITY_SPEND: dict[str, tuple[float, float, int]] = {
    "campaign": (2000, 20000, 400), "visit": (100, 500, 3), "call": (0, 50, 1), "event": (1000, 10000, 60),
}
