"use strict";
// One run: action bars from the SSE stream, checkpoints, logs tail, cancel, resume command.
(() => {
  const $ = (id) => document.getElementById(id);
  const runId = $("run").dataset.runId;
  const base = "/ui/api/runs/" + encodeURIComponent(runId);
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const LEVELS = ["debug", "info", "success", "warning", "danger", "error", "critical"];
  const MAX_LOG_LINES = 5000;
  const LOG_BATCH = 1000;
  let view = null;         // the latest progress view
  let stream = null;
  let lastLog = { id: 0, ts: null };
  let logTimer = null;
  let logPolling = false;  // a poll is in flight
  let logAgain = false;    // a poll was asked for while one was in flight
  let checkpointsSeen = -1;
  let shape = "";          // action statuses and actor attempt: a change reloads the detail
  let detail = null;       // the latest /ui/api/runs/{id} answer (the timeline's attempts)
  let timelineDue = false;
  const logActions = new Set();
  const charts = new RDMetrics.RunCharts($("charts"), runId);
  let chartsReady = false;
  const early = [];        // stream events that came before the metric history was loaded

  for (const level of LEVELS) $("log-level").append(RD.el("option", { value: level, text: level }));

  function showStatus(status) {
    $("run-status").replaceChildren(RD.statusBadge(status));
    $("run").dataset.status = status;
    const live = status === "running" || status === "pending";
    $("cancel").hidden = !live;
    const resumable = status === "failed" || status === "cancelled";
    $("resume").hidden = !resumable;
    $("resume-cmd").textContent = "raydrive pipeline resume " + runId;
  }

  function overall(progress, status) {
    if (!progress.length) return status === "completed" ? 1 : 0;
    let total = 0;
    for (const a of progress) {
      if (a.status === "completed" || a.status === "skipped") total += 1;
      else if (a.status === "running") total += Number(a.progress) || 0;
    }
    return total / progress.length;
  }

  function actionItem(action) {
    const li = RD.el("li", { "data-action": action.name, "data-status": action.status });
    const bar = RD.el("progress", { max: "1", value: String(action.progress || 0),
      "aria-label": "progress of " + action.name });
    if (action.status === "completed" || action.status === "skipped") bar.value = 1;
    li.append(
      RD.el("span", { class: "name", text: action.name }),
      RD.el("span", {}, RD.statusBadge(action.status)),
      RD.el("span", {}, bar, RD.el("span", { class: "pct", text: RD.percent(bar.value) })),
      RD.el("span", { class: "step", text: [action.progress_step, action.message].filter(Boolean).join(" · ") || "—" }),
      RD.el("span", { class: "elapsed", "data-started": action.started_at || "", "data-completed": action.completed_at || "",
        text: RD.duration(action.started_at, action.completed_at) }),
    );
    if (action.error) li.append(RD.el("pre", { class: "err", text: action.error }));
    return li;
  }

  function drawTimeline() {
    if (timelineDue || !detail) return;
    timelineDue = true;
    requestAnimationFrame(() => {
      timelineDue = false;
      const run = { ...detail.run, progress: view.progress || [], status: view.status,
        started_at: view.started_at, completed_at: view.completed_at };
      RDTimeline.render($("timeline"), run, detail.action_attempts);
    });
  }

  function render(progressView) {
    view = progressView;
    showStatus(view.status);
    const fraction = overall(view.progress || [], view.status);
    $("run-progress").value = fraction;
    $("run-percent").textContent = RD.percent(fraction) + (view.current_action ? " · " + view.current_action : "");
    $("run-started").textContent = RD.fmtTime(view.started_at);
    $("run-duration").textContent = RD.duration(view.started_at, view.completed_at);
    $("actions").replaceChildren(...(view.progress || []).map(actionItem));
    $("error-box").hidden = !view.error;
    $("run-error").textContent = view.error || "";
    const done = (view.progress || []).filter((a) => a.status === "completed").length;
    const now = JSON.stringify([view.attempt, (view.progress || []).map((a) => a.status)]);
    if (done !== checkpointsSeen || now !== shape || TERMINAL.has(view.status)) {
      checkpointsSeen = done;
      shape = now;
      loadDetail(false);
    }
    drawTimeline();
  }

  async function loadMetrics() {
    try {
      await charts.load();
      $("metrics-error").hidden = true;
    } catch (error) {
      $("metrics-error").hidden = false;
      $("metrics-error").textContent = "could not load the metrics: " + error.message;
    }
    chartsReady = true;
    for (const [v, seq] of early.splice(0)) charts.onView(v, seq);
  }

  function renderCheckpoints(checkpoints) {
    if (!checkpoints.length) return;
    // Rebuilt when a checkpoint arrives: the ones the reader opened stay open.
    const open = new Set([...$("checkpoints").querySelectorAll("details[open]")].map((d) => d.dataset.checkpointId));
    $("checkpoints").replaceChildren(...checkpoints.map((c) => RD.el("details",
      { class: "checkpoint", "data-checkpoint-id": c.id, ...(open.has(String(c.id)) ? { open: "" } : {}) },
      RD.el("summary", {}, RD.el("span", { class: "name", text: c.action_name }), " ",
        RD.statusBadge(c.status), " ", RD.el("span", { class: "muted", text: RD.fmtTime(c.created_at) })),
      RD.el("h3", { text: "params snapshot" }), RD.el("pre", { text: JSON.stringify(c.params_snapshot, null, 2) }),
      RD.el("h3", { text: "result" }), RD.el("pre", { text: JSON.stringify(c.result, null, 2) }),
      c.artifacts_path ? RD.el("p", { text: "artifacts: " + c.artifacts_path }) : null)));
  }

  async function loadDetail(first) {
    try {
      const data = await RD.getJSON(base);
      const run = data.run;
      detail = data;
      if (run.resumed_from) {
        $("resumed-from").hidden = false;
        $("resumed-from-link").textContent = run.resumed_from;
        $("resumed-from-link").href = "/runs/" + encodeURIComponent(run.resumed_from);
      }
      $("pipeline-name").textContent = data.pipeline_name || run.pipeline_id;
      document.title = (data.pipeline_name || "run") + " " + runId + " · raydrive";
      $("run-params").textContent = JSON.stringify(run.params, null, 2);
      renderCheckpoints(data.checkpoints);
      $("result-box").hidden = run.result === null || run.result === undefined;
      $("run-result").textContent = JSON.stringify(run.result, null, 2);
      if (first) {
        render({ status: run.status, progress: run.progress, current_action: run.current_action,
          started_at: run.started_at, completed_at: run.completed_at, error: run.error });
        if (!TERMINAL.has(run.status)) connect();
        loadMetrics();
        pollLogs();
      } else if (view) drawTimeline();
      if (!first && TERMINAL.has(run.status)) {
        showStatus(run.status);
        $("error-box").hidden = !run.error;
        $("run-error").textContent = run.error || "";
      }
    } catch (error) {
      $("load-error").hidden = false;
      $("load-error").textContent = "could not load the run: " + error.message;
    }
  }

  function connect() {
    // EventSource reconnects by itself and sends Last-Event-ID, so the service replays what we missed.
    stream = new EventSource(base + "/stream");
    const onEvent = (event) => {
      const view = JSON.parse(event.data);
      render(view);
      const seq = parseInt(event.lastEventId, 10) || 0;
      if (event.type === "reset") { chartsReady = false; early.length = 0; loadMetrics(); }
      else if (chartsReady) charts.onView(view, seq);
      else early.push([view, seq]);
      // "reset": the replay was pruned; its data is the current state, which may be the end.
      const ended = TERMINAL.has(event.type) || (event.type === "reset" && TERMINAL.has(view.status));
      if (ended) { stream.close(); pollLogs(); }
    };
    for (const name of ["progress", "completed", "failed", "cancelled", "reset"]) stream.addEventListener(name, onEvent);
  }

  function logLine(entry) {
    return RD.el("div", { class: "line", "data-level": entry.level, "data-action": entry.action_name || "" },
      RD.el("span", { class: "muted", text: new Date(entry.timestamp).toLocaleTimeString() + " " }),
      RD.el("span", { class: "lvl lvl-" + (LEVELS.includes(entry.level) ? entry.level : "info"), text: entry.level }),
      entry.action_name ? RD.el("span", { class: "act", text: "[" + entry.action_name + "] " }) : null,
      RD.el("span", { class: "msg", text: entry.message }));
  }

  function applyLogFilter() {
    const level = $("log-level").value, action = $("log-action").value;
    for (const line of $("logs").children) {
      line.hidden = (level && line.dataset.level !== level) || (action && line.dataset.action !== action);
    }
  }

  // One poll at a time: a poll asked for while one is in flight (the stream's end arrives while the
  // first poll of the page is still loading) runs after it, from its cursor. Two in flight from
  // the same cursor would both append the same lines.
  async function pollLogs() {
    clearTimeout(logTimer);
    if (logPolling) { logAgain = true; return; }
    logPolling = true;
    logAgain = false;
    const box = $("logs");
    box.setAttribute("aria-busy", "true");
    let more = false, failed = false;
    try {
      const q = new URLSearchParams({ after: String(lastLog.id), limit: String(LOG_BATCH) });
      if (lastLog.ts) q.set("since", lastLog.ts);
      const entries = await RD.getJSON(base + "/logs?" + q.toString());
      const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      let added = 0;
      for (const entry of entries) {
        const id = parseInt(entry.id, 10) || 0;
        if (id && id <= lastLog.id) continue;  // already shown: the cursor only moves forward
        box.append(logLine(entry));
        added += 1;
        lastLog = { id: Math.max(lastLog.id, id), ts: entry.timestamp };
        if (entry.action_name && !logActions.has(entry.action_name)) {
          logActions.add(entry.action_name);
          $("log-action").append(RD.el("option", { value: entry.action_name, text: entry.action_name }));
        }
      }
      while (box.children.length > MAX_LOG_LINES) box.firstChild.remove();
      if (added) applyLogFilter();
      if ($("log-follow").checked && (atBottom || added)) box.scrollTop = box.scrollHeight;
      // A full batch means more are waiting (a long log): catch up at once, then follow.
      more = entries.length >= LOG_BATCH;
    } catch (error) { failed = true; /* read again: the lines are still to come */ }
    logPolling = false;
    box.removeAttribute("aria-busy");
    const ended = view && TERMINAL.has(view.status);
    if (more || logAgain) logTimer = setTimeout(pollLogs, 0);
    else if (!ended || failed) logTimer = setTimeout(pollLogs, 1000);
    // The run has ended and its log is read to the end: say so (a reader knows nothing more comes).
    $("log-end").hidden = !(ended && !more && !logAgain && !failed);
  }

  $("log-level").addEventListener("change", applyLogFilter);
  $("log-action").addEventListener("change", applyLogFilter);
  $("cancel").addEventListener("click", async () => {
    $("cancel").disabled = true;
    $("cancel-msg").textContent = "cancelling…";
    try {
      const response = await RD.post("/api/v1/runs/" + encodeURIComponent(runId) + "/cancel");
      if (response.status === 401) return RD.toLogin();
      if (!response.ok) {
        let detail = response.statusText;
        try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
        throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      }
      $("cancel-msg").textContent = "cancel requested";
      if (!stream || stream.readyState === EventSource.CLOSED) loadDetail(false);
    } catch (error) {
      $("cancel-msg").textContent = "could not cancel: " + error.message;
    } finally {
      $("cancel").disabled = false;
    }
  });
  // Elapsed times of running actions tick without events.
  setInterval(() => {
    if (!view || TERMINAL.has(view.status)) return;
    $("run-duration").textContent = RD.duration(view.started_at, view.completed_at);
    for (const span of document.querySelectorAll("#actions .elapsed")) {
      if (span.dataset.started && !span.dataset.completed) span.textContent = RD.duration(span.dataset.started, null);
    }
  }, 1000);
  loadDetail(true);
})();
