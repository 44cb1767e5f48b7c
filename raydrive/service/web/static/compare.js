"use strict";
// Two or more runs of one pipeline, their metric curves overlaid: one chart per metric (named
// "action · key" when several actions report the key), one line per run.
(() => {
  const $ = (id) => document.getElementById(id);
  const ids = [...new URLSearchParams(location.search).getAll("run")].filter(Boolean).slice(0, 8);

  function fail(message) {
    $("compare-error").hidden = false;
    $("compare-error").textContent = message;
  }

  async function main() {
    if (ids.length < 2) return fail("Pick two or more runs on the runs page to compare them.");
    let runs;
    try {
      runs = await Promise.all(ids.map(async (id) => {
        const [detail, metrics] = await Promise.all([
          RD.getJSON("/ui/api/runs/" + encodeURIComponent(id)),
          RD.getJSON(RDMetrics.metricsUrl(id, { max_points: String(RDMetrics.MAX_POINTS) })),
        ]);
        return { id, detail, series: metrics.series };
      }));
    } catch (error) {
      return fail("could not load the runs: " + error.message);
    }
    const pipelines = new Set(runs.map((r) => r.detail.run.pipeline_id));
    if (pipelines.size > 1) fail("These runs belong to different pipelines; their metrics may not compare.");
    $("compare-pipeline").textContent = runs[0].detail.pipeline_name || runs[0].detail.run.pipeline_id;
    $("compare-runs").replaceChildren(...runs.map((r, i) => RD.el("tr", { "data-run-id": r.id },
      RD.el("td", { text: "line " + (i + 1) }),
      RD.el("td", {}, RD.el("a", { class: "mono", href: "/runs/" + encodeURIComponent(r.id), text: r.id })),
      RD.el("td", {}, RD.statusBadge(r.detail.run.status)),
      RD.el("td", { text: RD.fmtTime(r.detail.run.started_at) }),
      RD.el("td", { text: RD.duration(r.detail.run.started_at, r.detail.run.completed_at) }))));
    // Which actions report each key, over all runs: a key of one action is named by the key alone.
    const actionsOf = new Map();
    for (const r of runs) for (const s of r.series) {
      if (!actionsOf.has(s.key)) actionsOf.set(s.key, new Set());
      actionsOf.get(s.key).add(s.action);
    }
    const charts = new Map();
    for (const r of runs) for (const s of r.series) {
      const title = actionsOf.get(s.key).size > 1 ? s.action + " · " + s.key : s.key;
      if (!charts.has(title)) charts.set(title, new Map());
      charts.get(title).set(r.id, s);
    }
    $("metrics-empty").hidden = charts.size > 0;
    for (const title of [...charts.keys()].sort()) {
      const byRun = charts.get(title);
      const labels = runs.map((r, i) => "line " + (i + 1) + ": " + r.id.slice(0, 8));
      const series = runs.map((r) => byRun.get(r.id) || { steps: [], values: [] });
      const thinned = series.filter((s) => s.downsampled).length;
      const note = thinned ? "Thinned for drawing: the lowest and highest point of each stretch of steps." : null;
      const chart = new RDCharts.Chart($("charts"), labels, { title, note });
      chart.figure.dataset.group = title;
      chart.setAll(series);
    }
  }
  main();
})();
