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
  };
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
    return q;
  }

  function row(run) {
    const bar = RD.el("progress", { max: "1", value: String(run.progress), "aria-label": "overall progress" });
    const tr = RD.el("tr", { "data-run-id": run.id, "data-status": run.status });
    tr.append(
      RD.el("td", { class: "pipeline", text: run.pipeline_name || run.pipeline_id }),
      RD.el("td", {}, RD.el("a", { class: "mono", href: "/runs/" + encodeURIComponent(run.id), text: run.id })),
      RD.el("td", {}, RD.statusBadge(run.status)),
      RD.el("td", { class: "current", text: run.current_action || "—" }),
      RD.el("td", {}, bar, RD.el("span", { class: "pct",
        text: RD.percent(run.progress) + " (" + run.actions_done + "/" + run.actions_total + ")" })),
      RD.el("td", { text: RD.fmtTime(run.started_at) }),
      RD.el("td", { class: "duration", text: RD.duration(run.started_at, run.completed_at) }),
    );
    return tr;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const data = await RD.getJSON("/ui/api/runs?" + query().toString());
      // The rows are rebuilt every second: a keyboard user on a run's link keeps the focus there.
      const focusedRow = tbody.contains(document.activeElement) ? document.activeElement.closest("tr") : null;
      const focusedId = focusedRow ? focusedRow.dataset.runId : null;
      tbody.replaceChildren(...data.runs.map(row));
      if (focusedId !== null) {
        const again = [...tbody.rows].find((tr) => tr.dataset.runId === focusedId);
        const link = again && again.querySelector("a");
        if (link) link.focus({ preventScroll: true });
      }
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
  $("prev").addEventListener("click", () => { state.skip = Math.max(0, state.skip - state.limit); go(); });
  $("next").addEventListener("click", () => { state.skip += state.limit; go(); });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
