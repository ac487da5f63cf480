// Draws a carelake dashboard page with Plotly from the rows embedded in the page
// (window.CARELAKE_PAGE), re-aggregating them whenever a filter changes. Each chart's element
// gets data-state = rendered | empty | error and data-points = the values drawn, which the
// browser tests read.
(function () {
  "use strict";
  const page = window.CARELAKE_PAGE;
  const frames = {};
  for (const [name, frame] of Object.entries(page.frames)) {
    frames[name] = frame.data.map((values) => Object.fromEntries(frame.columns.map((c, i) => [c, values[i]])));
  }
  const state = { hospital: "", from: "", to: "", specialty: "" };
  const label = (column, value) => (page.labels[column] && page.labels[column][value]) || value;

  function keep(row) {
    if (state.hospital && "hospital" in row && row.hospital !== state.hospital) return false;
    if (state.specialty && "specialty" in row && row.specialty !== state.specialty) return false;
    if ("service_month" in row) {
      if (state.from && row.service_month < state.from) return false;
      if (state.to && row.service_month > state.to) return false;
    }
    return true;
  }

  // Sums per group of every column the measures need, each column summed once however many
  // measures use it; value() turns them into the measure.
  function group(rows, keys, measures) {
    const sums = new Set();
    const means = [];
    for (const m of measures) {
      if (m.how === "mean") means.push(m);
      else sums.add(m.column);
      if (m.how === "ratio") sums.add(m.weight);
    }
    const groups = new Map();
    for (const row of rows) {
      const key = keys.map((k) => row[k]).join("\u0001");
      let acc = groups.get(key);
      if (!acc) {
        acc = { keys: Object.fromEntries(keys.map((k) => [k, row[k]])), sum: {}, weighted: {}, weight: {} };
        groups.set(key, acc);
      }
      for (const column of sums) {
        const v = row[column];
        if (v !== null && v !== undefined) acc.sum[column] = (acc.sum[column] || 0) + v;
      }
      for (const m of means) {
        const v = row[m.column];
        const w = row[m.weight];
        if (v === null || v === undefined || w === null || w === undefined) continue;
        const id = `${m.column}|${m.weight}`;
        acc.weighted[id] = (acc.weighted[id] || 0) + v * w;
        acc.weight[id] = (acc.weight[id] || 0) + w;
      }
    }
    return [...groups.values()];
  }

  function value(m, acc) {
    if (m.how === "mean") {
      const id = `${m.column}|${m.weight}`;
      return acc.weight[id] ? acc.weighted[id] / acc.weight[id] : null;
    }
    if (m.how === "ratio") return acc.sum[m.weight] ? (acc.sum[m.column] || 0) / acc.sum[m.weight] : null;
    return acc.sum[m.column] === undefined ? null : acc.sum[m.column];
  }

  const layoutBase = { margin: { l: 60, r: 20, t: 10, b: 50 }, legend: { orientation: "h", y: -0.2 }, hovermode: "closest",
    font: { family: "system-ui, sans-serif", size: 12 }, paper_bgcolor: "white", plot_bgcolor: "white" };

  function figure(chart, rows) {
    const ms = chart.measures;
    if (chart.kind === "kpi") {
      const acc = group(rows, [], ms)[0];
      const data = ms.map((m, i) => ({ type: "indicator", mode: "number", value: acc ? value(m, acc) : null,
        number: { valueformat: m.format, font: { size: 34 } }, title: { text: m.label, font: { size: 14 } },
        domain: { row: 0, column: i } }));
      return { data, layout: { ...layoutBase, grid: { rows: 1, columns: ms.length }, height: 150, margin: { l: 10, r: 10, t: 30, b: 10 } },
        points: data.filter((d) => d.value !== null).length };
    }
    if (chart.kind === "scatter") {
      const [mx, my] = ms;
      const bySeries = group(rows.map((r, i) => ({ ...r, _i: i })), chart.series ? [chart.series] : [], []);
      const data = bySeries.map((g) => {
        const pts = rows.filter((r) => !chart.series || r[chart.series] === g.keys[chart.series])
          .filter((r) => r[mx.column] !== null && r[my.column] !== null);
        const maxSize = Math.max(1, ...rows.map((r) => r[chart.size] || 0));
        return { type: "scatter", mode: "markers", name: chart.series ? label(chart.series, g.keys[chart.series]) : mx.label,
          x: pts.map((r) => r[mx.column]), y: pts.map((r) => r[my.column]), text: pts.map((r) => r.npi),
          marker: { size: pts.map((r) => 6 + 24 * Math.sqrt((r[chart.size] || 0) / maxSize)), opacity: 0.6 },
          hovertemplate: `NPI %{text}<br>${mx.label} %{x:${mx.format}}<br>${my.label} %{y:${my.format}}<extra></extra>` };
      });
      return { data, layout: { ...layoutBase, height: 460, xaxis: { title: { text: mx.label }, tickformat: mx.format },
        yaxis: { title: { text: my.label }, tickformat: my.format } }, points: data.reduce((n, t) => n + t.x.length, 0) };
    }
    if (chart.kind === "table") {
      const sortBy = ms[0].column;
      const sorted = rows.filter((r) => r[sortBy] !== null)
        .sort((a, b) => (chart.ascending ? a[sortBy] - b[sortBy] : b[sortBy] - a[sortBy]))
        .slice(0, chart.top || rows.length);
      const cols = chart.columns;
      const data = [{ type: "table", columnwidth: cols.map((c) => (c === "route_to" || c === "failed_expectations" ? 3 : 1)),
        header: { values: cols.map((c) => `<b>${page.headers[c] || c}</b>`), fill: { color: "#e8eef6" }, align: "left" },
        cells: { values: cols.map((c) => sorted.map((r) => (c in page.labels ? label(c, r[c]) : r[c]))),
          format: cols.map((c) => page.formats[c] || ""), align: "left", height: 26 } }];
      return { data, layout: { ...layoutBase, height: 90 + 27 * Math.max(1, sorted.length), margin: { l: 5, r: 5, t: 5, b: 5 } },
        points: sorted.length };
    }
    // line, bar, hbar: group by x (and series), one trace per measure x series value.
    const keys = chart.series ? [chart.x, chart.series] : [chart.x];
    const groups = group(rows, keys, ms);
    let xs = [...new Set(groups.map((g) => g.keys[chart.x]))];
    if (chart.kind === "hbar") {
      const overall = new Map(group(rows, [chart.x], ms).map((g) => [g.keys[chart.x], value(ms[0], g)]));
      xs.sort((a, b) => (chart.ascending ? overall.get(a) - overall.get(b) : overall.get(b) - overall.get(a)));
      if (chart.top) xs = xs.slice(0, chart.top);
      xs.reverse(); // largest at the top
      if (ms[0].how !== "sum" && chart.series) {
        // a rate does not stack: draw the overall rate per bar
        return rateBars(chart, xs, overall);
      }
    } else {
      xs.sort();
    }
    const series = chart.series ? [...new Set(groups.map((g) => g.keys[chart.series]))].sort() : [null];
    const data = [];
    for (const m of ms) {
      for (const s of series) {
        const cells = new Map(groups.filter((g) => s === null || g.keys[chart.series] === s).map((g) => [g.keys[chart.x], value(m, g)]));
        const name = s === null ? m.label : (ms.length > 1 ? `${m.label} — ` : "") + label(chart.series, s);
        const ys = xs.map((x) => (cells.has(x) ? cells.get(x) : null));
        const xl = xs.map((x) => label(chart.x, x));
        if (chart.kind === "hbar") {
          data.push({ type: "bar", orientation: "h", name, y: xl, x: ys, hovertemplate: `%{y}: %{x:${m.format}}<extra>${name}</extra>` });
        } else if (chart.kind === "bar") {
          data.push({ type: "bar", name, x: xl, y: ys, hovertemplate: `%{x}: %{y:${m.format}}<extra>${name}</extra>` });
        } else {
          data.push({ type: "scatter", mode: "lines+markers", name, x: xl, y: ys, connectgaps: false,
            hovertemplate: `%{x}: %{y:${m.format}}<extra>${name}</extra>` });
        }
      }
    }
    return finishBars(chart, data, xs);
  }

  function rateBars(chart, xs, overall) {
    const m = chart.measures[0];
    const data = [{ type: "bar", orientation: "h", name: m.label, y: xs.map((x) => label(chart.x, x)),
      x: xs.map((x) => overall.get(x)), hovertemplate: `%{y}: %{x:${m.format}}<extra></extra>` }];
    return finishBars(chart, data, xs);
  }

  function finishBars(chart, data, xs) {
    const m = chart.measures[0];
    const horizontal = chart.kind === "hbar";
    const valueAxis = { tickformat: m.format, title: { text: chart.measures.length > 1 ? "" : m.label }, rangemode: "tozero" };
    const layout = { ...layoutBase, barmode: "stack", showlegend: data.length > 1,
      height: horizontal ? Math.max(260, 90 + 24 * xs.length) : 380,
      xaxis: horizontal ? valueAxis : { type: "category", automargin: true },
      yaxis: horizontal ? { type: "category", automargin: true } : valueAxis };
    const points = data.reduce((n, t) => n + (horizontal ? t.x : t.y).filter((v) => v !== null).length, 0);
    return { data, layout, points };
  }

  function draw(chart) {
    const el = document.getElementById(`chart-${chart.key}`);
    try {
      const rows = frames[chart.frame].filter(keep);
      const fig = figure(chart, rows);
      el.dataset.points = String(fig.points);
      if (!fig.points) {
        fig.layout.annotations = [{ text: "No data for these filters", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
          font: { size: 16, color: "#888" } }];
      }
      return Plotly.react(el, fig.data, fig.layout, { responsive: true, displaylogo: false })
        .then(() => { el.dataset.state = fig.points ? "rendered" : "empty"; })
        .catch((err) => fail(el, err));
    } catch (err) {
      fail(el, err);
      return Promise.resolve();
    }
  }

  function fail(el, err) {
    el.dataset.state = "error";
    el.textContent = `This chart could not be drawn: ${err}`;
    console.error(err);
  }

  function drawAll() {
    document.body.dataset.state = "drawing";
    Promise.all(page.charts.map(draw)).then(() => { document.body.dataset.state = "ready"; });
  }

  function fillSelect(id, values, column, all) {
    const select = document.getElementById(id);
    if (!select) return;
    select.append(new Option(all, ""));
    for (const v of values) select.append(new Option(column ? label(column, v) : v, v));
  }

  fillSelect("filter-hospital", page.filters.hospital, "hospital", "All hospitals");
  fillSelect("filter-specialty", page.filters.specialty, "specialty", "All specialties");
  fillSelect("filter-from", page.filters.service_month, null, "First month");
  fillSelect("filter-to", page.filters.service_month, null, "Last month");
  for (const [id, key] of [["filter-hospital", "hospital"], ["filter-specialty", "specialty"], ["filter-from", "from"], ["filter-to", "to"]]) {
    const select = document.getElementById(id);
    if (select) select.addEventListener("change", () => { state[key] = select.value; drawAll(); });
  }
  drawAll();
})();
