"""De-identification: keyed patient tokens and HIPAA Safe Harbor generalisation."""

from carelake.privacy.safe_harbor import (
    RESTRICTED_ZIP3,
    age_band,
    birth_year_generalised,
    month_grain,
    zip3_generalised,
)
from carelake.privacy.tokens import TOKEN_KEY_ENV, TokenKeyError, hmac_sha256_hex, token_key

__all__ = [
    "RESTRICTED_ZIP3",
    "age_band",
    "TOKEN_KEY_ENV",
    "TokenKeyError",
    "birth_year_generalised",
    "hmac_sha256_hex",
    "month_grain",
    "token_key",
    "zip3_generalised",
]
