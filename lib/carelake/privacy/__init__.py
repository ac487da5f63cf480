"""De-identification: keyed patient tokens and HIPAA Safe Harbor generalisation."""

from carelake.privacy.safe_harbor import (
    RESTRICTED_ZIP3,
    age_band,
    birth_year_generalised,
    coarsen_dates,
    date_grain,
    month_grain,
    zip3_generalised,
)
from carelake.privacy.tokens import (
    PATIENT_TOKEN,
    TOKEN_KEY_ENV,
    TokenKeyError,
    hmac_sha256_hex,
    resolve_token_key,
    token_key,
    tokenise_patient_key,
)

__all__ = [
    "PATIENT_TOKEN",
    "RESTRICTED_ZIP3",
    "TOKEN_KEY_ENV",
    "TokenKeyError",
    "age_band",
    "birth_year_generalised",
    "coarsen_dates",
    "date_grain",
    "hmac_sha256_hex",
    "month_grain",
    "resolve_token_key",
    "token_key",
    "tokenise_patient_key",
    "zip3_generalised",
]
