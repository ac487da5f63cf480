"""Superset settings for carelake's `make bi` (read through SUPERSET_CONFIG_PATH).

Superset's own metadata (users, roles, datasets, charts, dashboards) lives in a SQLite file
under CARELAKE_SUPERSET_HOME (default lakehouse/_superset), rebuilt from the repository's
definitions on every start. The secret key comes from the environment or a key file generated
there on first start; nothing secret is kept in the repository.
"""

import os
import secrets
from pathlib import Path

HOME = Path(os.environ.get("CARELAKE_SUPERSET_HOME", "lakehouse/_superset")).resolve()
HOME.mkdir(parents=True, exist_ok=True)
_key_file = HOME / "secret.key"
if "SUPERSET_SECRET_KEY" not in os.environ and not _key_file.exists():
    _key_file.write_text(secrets.token_hex(32))
    _key_file.chmod(0o600)
SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY") or _key_file.read_text().strip()
SQLALCHEMY_DATABASE_URI = f"sqlite:///{HOME / 'superset.db'}?check_same_thread=false"
DATA_DIR = str(HOME)

# Row-level security filters are set up from conf's access.roles (clinician_<hospital>).
FEATURE_FLAGS = {"ROW_LEVEL_SECURITY": True, "DASHBOARD_RBAC": True, "EMBEDDED_SUPERSET": False}
# No outside network: no telemetry, no map tiles, no thumbnails through a worker.
ENABLE_PROXY_FIX = False
SCARF_ANALYTICS = False
THUMBNAIL_SELENIUM_USER = None
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 60}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
# The browser tests and the provisioning call the REST API with a JWT from /api/v1/security/login.
WTF_CSRF_ENABLED = True
WTF_CSRF_EXEMPT_LIST = ["superset.views.core.log", "superset.charts.data.api.data"]
TALISMAN_ENABLED = False
SQLLAB_CTAS_NO_LIMIT = True
