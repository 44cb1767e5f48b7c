"use strict";
// The runs list: server-side pages, refreshed every second while the tab is visible.
(() => {
  const REFRESH_MS = 1000;
  const params = new URLSearchParams(location.search);
  const state = {
    status: params.get("status") || "",
    pipeline: params.get("pipeline") || "",
    skip: Math.max(0, parseInt(params.get("skip") || "0", 10) || 0),
    limit: Math.min(500, Math.max(1, parseInt(params.get("limit") || "50", 10) || 50)),
    metric: params.get("metric") || "",
  };
  const SPARK_POINTS = 60;
  const selected = new Map();  // run id -> pipeline name, across refreshes
  const sparks = new Map();    // run id -> {sig, values}: a run's history is fetched again when it changed
  let lastKeys = "";
  const $ = (id) => document.getElementById(id);
  const tbody = $("runs");
  let timer = null;
  let lastPipelines = "";

  $("status").value = state.status;
  $("pipeline").value = state.pipeline;

  function query() {
    const q = new URLSearchParams();
    if (state.status) q.set("status", state.status);
    if (state.pipeline) q.set("pipeline", state.pipeline);
    if (state.skip) q.set("skip", String(state.skip));
    if (state.limit !== 50) q.set("limit", String(state.limit));
    if (state.metric) q.set("metric", state.metric);
    return q;
  }

  function row(run) {
    const bar = RD.el("progress", { max: "1", value: String(run.progress), "aria-label": "overall progress" });
    const tr = RD.el("tr", { "data-run-id": run.id, "data-status": run.status });
    const pick = RD.el("input", { type: "checkbox", class: "pick", "aria-label": "compare run " + run.id,
      "data-pipeline": run.pipeline_name || run.pipeline_id });
    pick.checked = selected.has(run.id);
    pick.addEventListener("change", () => {
      if (pick.checked) selected.set(run.id, pick.dataset.pipeline); else selected.delete(run.id);
      compareState();
    });
    tr.append(
      RD.el("td", {}, pick),
      RD.el("td", { class: "pipeline", text: run.pipeline_name || run.pipeline_id }),
      RD.el("td", {}, RD.el("a", { class: "mono", href: "/runs/" + encodeURIComponent(run.id), text: run.id })),
      RD.el("td", {}, RD.statusBadge(run.status)),
      RD.el("td", { class: "current", text: run.current_action || "—" }),
      RD.el("td", {}, bar, RD.el("span", { class: "pct",
        text: RD.percent(run.progress) + " (" + run.actions_done + "/" + run.actions_total + ")" })),
      RD.el("td", { text: RD.fmtTime(run.started_at) }),
      RD.el("td", { class: "duration", text: RD.duration(run.started_at, run.completed_at) }),
      metricCell(run),
    );
    return tr;
  }

  function metricCell(run) {
    const td = RD.el("td", { class: "metric" });
    if (!state.metric) return td;
    const value = (run.metrics || {})[state.metric];
    if (value === undefined) { td.textContent = "—"; return td; }
    td.append(RD.el("span", { class: "value", text: RDCharts.fmt(value) }));
    const known = sparks.get(run.id);
    if (known) td.append(RDCharts.sparkline(known.values, state.metric + " of run " + run.id));
    return td;
  }

  function compareState() {
    const pipelines = new Set(selected.values());
    const ok = selected.size >= 2 && pipelines.size === 1;
    $("compare").disabled = !ok;
    $("compare-msg").textContent = selected.size < 2
      ? "Tick two or more runs of one pipeline to overlay their metrics."
      : ok ? selected.size + " runs selected" : "The runs ticked belong to different pipelines: compare runs of one pipeline.";
  }

  function offerKeys(runs) {
    const keys = new Set(state.metric ? [state.metric] : []);
    for (const run of runs) for (const key of Object.keys(run.metrics || {})) keys.add(key);
    const sorted = [...keys].sort();
    const signature = JSON.stringify(sorted);
    if (signature === lastKeys) return;
    lastKeys = signature;
    $("metric").replaceChildren(RD.el("option", { value: "", text: "none" }),
      ...sorted.map((k) => RD.el("option", { value: k, text: k })));
    $("metric").value = state.metric;
  }

  // Histories of the rows whose latest value changed since they were fetched, in one request.
  async function loadSparks(runs) {
    if (!state.metric) return;
    const due = runs.filter((r) => {
      const value = (r.metrics || {})[state.metric];
      if (value === undefined) return false;
      const known = sparks.get(r.id);
      return !known || known.sig !== r.status + ":" + value;
    });
    if (!due.length) return;
    const q = new URLSearchParams({ key: state.metric, points: String(SPARK_POINTS) });
    for (const r of due) q.append("run", r.id);
    const metric = state.metric;
    const data = await RD.getJSON("/ui/api/sparklines?" + q.toString());
    if (metric !== state.metric) return;
    for (const r of due) {
      const got = data.runs[r.id];
      if (!got) continue;
      sparks.set(r.id, { sig: r.status + ":" + r.metrics[state.metric], values: got.values });
      const tr = [...tbody.rows].find((row) => row.dataset.runId === r.id);
      if (tr) tr.querySelector("td.metric").replaceWith(metricCell(r));
    }
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const data = await RD.getJSON("/ui/api/runs?" + query().toString());
      // The rows are rebuilt every second: a keyboard user on a run's link keeps the focus there.
      const focusedRow = tbody.contains(document.activeElement) ? document.activeElement.closest("tr") : null;
      const focusedId = focusedRow ? focusedRow.dataset.runId : null;
      const focusedPick = focusedRow !== null && document.activeElement.classList.contains("pick");
      offerKeys(data.runs);
      tbody.replaceChildren(...data.runs.map(row));
      if (focusedId !== null) {
        const again = [...tbody.rows].find((tr) => tr.dataset.runId === focusedId);
        const target = again && again.querySelector(focusedPick ? "input.pick" : "a");
        if (target) target.focus({ preventScroll: true });
      }
      $("metric-head").textContent = state.metric ? "Metric: " + state.metric : "Metric";
      loadSparks(data.runs).catch(() => { /* the next refresh tries again */ });
      $("empty").hidden = data.runs.length > 0;
      const first = data.runs.length ? state.skip + 1 : 0;
      $("page-info").textContent = first ? "runs " + first + "–" + (state.skip + data.runs.length) : "";
      $("prev").disabled = state.skip === 0;
      $("next").disabled = !data.has_more;
      const names = JSON.stringify(data.pipelines);
      if (names !== lastPipelines) {
        lastPipelines = names;
        $("pipeline-names").replaceChildren(...data.pipelines.map((n) => RD.el("option", { value: n })));
      }
      $("live").textContent = "live · updated " + new Date().toLocaleTimeString();
    } catch (error) {
      $("live").textContent = "could not refresh: " + error.message;
    }
    if (!document.hidden) timer = setTimeout(refresh, REFRESH_MS);
  }

  function go() {
    history.replaceState(null, "", "/" + (query().toString() ? "?" + query().toString() : ""));
    refresh();
  }

  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = $("status").value;
    state.pipeline = $("pipeline").value.trim();
    state.skip = 0;
    go();
  });
  $("status").addEventListener("change", () => { state.status = $("status").value; state.skip = 0; go(); });
  $("metric").addEventListener("change", () => { state.metric = $("metric").value; sparks.clear(); go(); });
  $("compare").addEventListener("click", () => {
    const q = new URLSearchParams();
    for (const id of selected.keys()) q.append("run", id);
    location.href = "/compare?" + q.toString();
  });
  $("prev").addEventListener("click", () => { state.skip = Math.max(0, state.skip - state.limit); go(); });
  $("next").addEventListener("click", () => { state.skip += state.limit; go(); });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
