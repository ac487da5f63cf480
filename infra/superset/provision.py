"""Apply carelake's dashboard definition inside Superset (run with Superset's own Python).

    .bi/venv/bin/python infra/superset/provision.py DEFINITION.json USERS.json

DEFINITION.json is written by ``carelake.dashboards.superset.definition`` from the repository's
dashboard catalog and ``access.roles``; USERS.json holds the passwords to give the users. Every
object is replaced by name, so running it again leaves the same dashboards. Clinician roles get
Gamma's permissions, access to the datasets, and a row-level security filter on the datasets
that have a hospital column.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from superset.app import create_app

app = create_app()


def position(title: str, chart_ids: list[tuple[int, str, str]]) -> dict:
    """A dashboard layout: two charts a row, each half the width; a row of big numbers is low."""
    layout = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": title}},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
    }
    for start in range(0, len(chart_ids), 2):
        row = f"ROW-{start // 2}"
        layout["GRID_ID"]["children"].append(row)
        layout[row] = {"type": "ROW", "id": row, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                       "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        pair = chart_ids[start:start + 2]
        height = 25 if all(viz == "big_number_total" for _, _, viz in pair) else 60
        for chart_id, name, _ in pair:
            key = f"CHART-{chart_id}"
            layout[row]["children"].append(key)
            layout[key] = {"type": "CHART", "id": key, "children": [], "parents": ["ROOT_ID", "GRID_ID", row],
                           "meta": {"chartId": chart_id, "width": 6, "height": height, "sliceName": name, "uuid": str(uuid.uuid4())}}
    return layout


def main(definition_file: str, users_file: str) -> None:
    spec = json.loads(Path(definition_file).read_text())
    passwords = json.loads(Path(users_file).read_text())
    with app.app_context():
        from superset import db, security_manager
        from superset.connectors.sqla.models import RowLevelSecurityFilter, SqlaTable
        from superset.models.core import Database
        from superset.models.dashboard import Dashboard
        from superset.models.slice import Slice

        session = db.session
        database = session.query(Database).filter_by(database_name=spec["database"]["name"]).one_or_none()
        if database is None:
            database = Database(database_name=spec["database"]["name"])
            session.add(database)
        database.set_sqlalchemy_uri(spec["database"]["uri"])
        database.expose_in_sqllab = True
        session.commit()

        datasets = {}
        column_labels = spec.get("column_labels", {})
        for name, sql in spec["datasets"].items():
            table = session.query(SqlaTable).filter_by(table_name=name, database_id=database.id).one_or_none()
            if table is None:
                table = SqlaTable(table_name=name, database=database)
                session.add(table)
            table.sql = sql
            table.schema = None
            session.commit()
            table.fetch_metadata()
            for column in table.columns:
                column.verbose_name = column_labels.get(column.column_name)
            session.commit()
            datasets[name] = table

        for dashboard_spec in spec["dashboards"]:
            old = session.query(Dashboard).filter_by(slug=dashboard_spec["slug"]).one_or_none()
            if old is not None:
                for chart in list(old.slices):
                    session.delete(chart)
                session.delete(old)
                session.commit()
            charts = []
            for chart_spec in dashboard_spec["charts"]:
                table = datasets[chart_spec["dataset"]]
                params = {**chart_spec["params"], "viz_type": chart_spec["viz_type"], "datasource": f"{table.id}__table"}
                chart = Slice(slice_name=chart_spec["name"], viz_type=chart_spec["viz_type"], datasource_type="table",
                              datasource_id=table.id, params=json.dumps(params), description=chart_spec["description"])
                session.add(chart)
                charts.append(chart)
            session.commit()
            dashboard = Dashboard(
                dashboard_title=dashboard_spec["title"], slug=dashboard_spec["slug"], published=True, slices=charts,
                position_json=json.dumps(position(dashboard_spec["title"], [(c.id, c.slice_name, c.viz_type) for c in charts])),
                json_metadata=json.dumps({"native_filter_configuration": [], "color_scheme": "supersetColors"}),
            )
            session.add(dashboard)
            session.commit()

        def ensure_user(name: str, first: str, last: str, role) -> None:
            user = security_manager.find_user(name)
            if user is None:
                security_manager.add_user(name, first, last, f"{name}@carelake.local", role, password=passwords[name])
            else:
                security_manager.reset_password(user.id, passwords[name])

        ensure_user("admin", "carelake", "admin", security_manager.find_role("Admin"))
        gamma = security_manager.find_role("Gamma")
        for clinician in spec["clinicians"]:
            role = security_manager.find_role(clinician["role"]) or security_manager.add_role(clinician["role"])
            role.permissions = list(gamma.permissions)
            for name in clinician["visible"]:
                role.permissions.append(security_manager.add_permission_view_menu("datasource_access", datasets[name].perm))
            session.commit()
            ensure_user(clinician["role"], "clinician", clinician["hospital"], role)
            rls_name = f"carelake {clinician['role']}"
            rls = session.query(RowLevelSecurityFilter).filter_by(name=rls_name).one_or_none()
            if rls is None:
                rls = RowLevelSecurityFilter(name=rls_name, filter_type="Regular")
                session.add(rls)
            rls.clause = clinician["clause"]
            rls.description = f"{clinician['role']} sees only rows of {clinician['hospital']} (access.roles)"
            rls.roles = [role]
            rls.tables = [datasets[name] for name in clinician["filtered"]]
            session.commit()
        print(f"provisioned {len(datasets)} datasets, {len(spec['dashboards'])} dashboards, {len(spec['clinicians'])} clinician roles")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
