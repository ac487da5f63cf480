"""Patient matching (an enterprise master patient index): one ``enterprise_patient_id`` for the
records of one person across source systems, found with Splink inside the restricted zone."""

from carelake.matching.enterprise_ids import assign_enterprise_ids
from carelake.matching.identifiers import IDENTIFIER_COLUMNS, normalised_identifiers
from carelake.matching.linkage import MatchSettings, link_records

__all__ = ["IDENTIFIER_COLUMNS", "MatchSettings", "assign_enterprise_ids", "link_records", "normalised_identifiers"]
