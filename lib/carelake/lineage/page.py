"""The lineage page: one self-contained HTML file (no script, style or font fetched from
anywhere) that each run writes to ``<root>/_reports/latest/lineage.html``.

It draws the zones as columns and every table the events know as a box, with the table edges
between them; the tables the latest run wrote are marked with the version written. Clicking a
table lists its columns, and clicking a column shows its upstream columns (down to the landing
folders' source columns) and its downstream ones. ``lineage.html#<zone>/<table>[.<column>]``
opens on that table or column, so a report can link straight to a number's lineage.
"""

from __future__ import annotations

import html
import json

from carelake.config import Config
from carelake.lineage.graph import LineageGraph, load_graph
from carelake.lineage.settings import lineage_settings
from carelake.storage import filesystem_for, join_uri

PAGE_PATH = ("_reports", "latest", "lineage.html")
ZONE_ORDER = ("landing", "raw", "processed", "curated")
BOX_W, BOX_H, GAP_Y, COL_W = 190, 24, 8, 260


def page_data(graph: LineageGraph) -> dict:
    """What the page shows, as plain JSON: tables per zone, table edges, columns with their
    direct upstream and downstream columns, and the latest run's versions."""
    latest_run = graph.runs[-1].run_id if graph.runs else None
    latest = {graph.label(t): v for r in graph.runs if r.run_id == latest_run for t, v in r.outputs.items()}
    tables = sorted({graph.label(d) for d in graph.datasets() if graph.label(d).split("/", 1)[0] in ZONE_ORDER})
    columns: dict[str, dict[str, dict[str, list[str]]]] = {}
    for (inp, out) in graph.column_edges:
        for (ds, col), key, other in (((out[0], out[1]), "up", inp), ((inp[0], inp[1]), "down", out)):
            if ds == other[0]:
                continue
            entry = columns.setdefault(graph.label(ds), {}).setdefault(col, {"up": [], "down": []})
            entry[key].append(f"{graph.label(other[0])}.{other[1]}")
    for cols in columns.values():
        for entry in cols.values():
            entry["up"].sort()
            entry["down"].sort()
    edges = sorted({(graph.label(a), graph.label(b)) for a, b in graph.table_edges} - {(a, a) for a in tables})
    return {
        "run_id": latest_run,
        "tables": tables,
        "edges": [e for e in edges if e[0] in tables and e[1] in tables],
        "latest": latest,
        "columns": columns,
    }


def render_page(data: dict) -> str:
    """The HTML of the lineage page for ``data`` (from :func:`page_data`)."""
    positions: dict[str, tuple[int, int]] = {}
    by_zone: dict[str, list[str]] = {z: [] for z in ZONE_ORDER}
    for table in data["tables"]:
        by_zone[table.split("/", 1)[0]].append(table)
    for x, zone in enumerate(ZONE_ORDER):
        for y, table in enumerate(by_zone[zone]):
            positions[table] = (20 + x * COL_W, 50 + y * (BOX_H + GAP_Y))
    height = 80 + max((len(v) for v in by_zone.values()), default=1) * (BOX_H + GAP_Y)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{20 + len(ZONE_ORDER) * COL_W}" height="{height}">']
    for x, zone in enumerate(ZONE_ORDER):
        parts.append(f'<text x="{20 + x * COL_W}" y="30" class="zone">{zone}</text>')
    for source, target in data["edges"]:
        (x1, y1), (x2, y2) = positions[source], positions[target]
        y1, y2 = y1 + BOX_H // 2, y2 + BOX_H // 2
        # Within one zone (a curated table built from another) the edge loops out to the right.
        end, bend = (x2 + BOX_W, x2 + BOX_W + 40) if x1 == x2 else (x2, x2 - 35)
        parts.append(
            f'<path class="edge" data-from="{html.escape(source)}" data-to="{html.escape(target)}" '
            f'd="M{x1 + BOX_W},{y1} C{x1 + BOX_W + 40 if x1 == x2 else x1 + BOX_W + 35},{y1} {bend},{y2} {end},{y2}"/>'
        )
    for table, (x, y) in positions.items():
        version = data["latest"].get(table)
        name = table.split("/", 1)[1] if "/" in table else table
        text = f"{name} v{version}" if version is not None else name
        css = "table written" if version is not None else "table"
        parts.append(
            f'<g class="{css}" data-table="{html.escape(table)}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4"/>'
            f'<text x="{x + 6}" y="{y + 16}">{html.escape(text[:30])}</text></g>'
        )
    parts.append("</svg>")
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return PAGE_TEMPLATE.replace("@RUN@", html.escape(str(data["run_id"]))).replace("@SVG@", "".join(parts)).replace("@DATA@", payload)


def write_lineage_page(config: Config) -> str | None:
    """Write the page for every event under the lineage folder; its URI (None without event files)."""
    settings = lineage_settings(config)
    if settings.folder is None:
        return None
    graph = load_graph(config, settings.folder)
    uri = join_uri(config.root, *PAGE_PATH)
    filesystem, path = filesystem_for(uri, config)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(render_page(page_data(graph)).encode("utf-8"))
    return uri


PAGE_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>carelake lineage</title>
<style>
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px} .zone{font-weight:bold;font-size:14px;text-transform:uppercase;fill:#555}
.table rect{fill:#eef3f8;stroke:#7a93ad} .table.written rect{fill:#d8f0dc;stroke:#3d8b4f}
.table text{font-size:12px} .table{cursor:pointer} .table.selected rect{stroke:#d35400;stroke-width:3}
.edge{fill:none;stroke:#b5c2cf;stroke-width:1.2} .edge.lit{stroke:#d35400;stroke-width:2}
#detail{margin-top:12px} #detail li{cursor:pointer} .cols{columns:3} code{background:#f3f3f3;padding:0 3px}
</style></head><body>
<h1>carelake lineage &mdash; latest run @RUN@</h1>
<p>Zones left to right; green tables were written by the latest run (with the Delta version written).
Click a table for its columns, a column for where it comes from and what uses it.
The same answers on the command line: <code>carelake lineage &lt;zone&gt;/&lt;table&gt;[.&lt;column&gt;]</code>.</p>
<div id="graph">@SVG@</div>
<div id="detail"></div>
<script type="application/json" id="lineage-data">@DATA@</script>
<script>
const data = JSON.parse(document.getElementById('lineage-data').textContent);
const detail = document.getElementById('detail');
function esc(s){return s.replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function walk(start, key){
  const out = [], seen = new Set([start]);
  (function visit(node, depth){
    const [table, ...rest] = node.split('.'); const col = rest.join('.');
    const entry = ((data.columns[table] || {})[col] || {})[key] || [];
    for (const next of entry){ if (seen.has(next)) continue; seen.add(next); out.push([depth, next]); visit(next, depth + 1); }
  })(start, 0);
  return out;
}
function showColumn(table, col){
  const name = table + '.' + col;
  const list = rows => rows.length ? '<ul>' + rows.map(([d, n]) => '<li style="margin-left:' + (d * 18) + 'px">' + esc(n) + '</li>').join('') + '</ul>' : '<p>none recorded</p>';
  detail.innerHTML = '<h2>' + esc(name) + '</h2><h3>upstream</h3>' + list(walk(name, 'up')) + '<h3>downstream</h3>' + list(walk(name, 'down'));
}
function showTable(table){
  document.querySelectorAll('.table').forEach(g => g.classList.toggle('selected', g.dataset.table === table));
  document.querySelectorAll('.edge').forEach(p => p.classList.toggle('lit', p.dataset.from === table || p.dataset.to === table));
  const cols = Object.keys(data.columns[table] || {}).sort();
  const v = data.latest[table];
  detail.innerHTML = '<h2>' + esc(table) + (v !== undefined ? ' (version ' + v + ')' : '') + '</h2>' +
    (cols.length ? '<ul class="cols">' + cols.map(c => '<li data-col="' + esc(c) + '">' + esc(c) + '</li>').join('') + '</ul>' : '<p>no column lineage recorded</p>');
  detail.querySelectorAll('li[data-col]').forEach(li => li.addEventListener('click', () => showColumn(table, li.dataset.col)));
}
document.querySelectorAll('.table').forEach(g => g.addEventListener('click', () => showTable(g.dataset.table)));
// lineage.html#<zone>/<table>[.<column>] opens on that table or column (links from the report).
const wanted = decodeURIComponent(location.hash.slice(1));
if (wanted) { const [t, ...c] = wanted.split('.'); showTable(t); if (c.length) showColumn(t, c.join('.')); }
</script></body></html>
"""
