"use strict";
// A run's metric history on the page: loaded once from GET /api/v1/runs/{id}/metrics (thinned on
// the server above MAX_POINTS per key), then kept current from the run's progress stream (each
// event carries every action's latest metrics). One chart per metric key of each action (keys
// differ in scale: a loss and a learning rate share no axis); a key that more than one action
// reports is one chart with a line per action.
const RDMetrics = (() => {
  const MAX_POINTS = 2000;

  function metricsUrl(runId, params) {
    const q = new URLSearchParams(params || {});
    return "/api/v1/runs/" + encodeURIComponent(runId) + "/metrics" + (q.toString() ? "?" + q.toString() : "");
  }

  /** The integer step of a reported `step`, or `fallback` (the service's rule, metric_points.step_of). */
  function stepOf(raw, fallback) {
    if (typeof raw === "number" && Number.isInteger(raw)) return raw;
    if (typeof raw === "string" && /^\s*-?\d{1,18}\s*$/.test(raw)) return parseInt(raw, 10);
    return fallback;
  }

  function isValue(v) { return typeof v === "number" && Number.isFinite(v); }

  class RunCharts {
    constructor(container, runId) {
      this.container = container;
      this.runId = runId;
      this.series = new Map();  // "action\u0000key" -> {action, key, steps, values, points, thinned, last}
      this.charts = new Map();  // chart title -> {chart, ids}
      this.signature = "";
      this.filling = new Set();  // actions whose missed points are being fetched
    }

    sid(action, key) { return action + "\u0000" + key; }

    entry(action, key) {
      const id = this.sid(action, key);
      let s = this.series.get(id);
      if (!s) {
        s = { action, key, steps: [], values: [], points: 0, thinned: false, raw: undefined, rawStep: undefined };
        this.series.set(id, s);
      }
      return s;
    }

    async load() {
      const data = await RD.getJSON(metricsUrl(this.runId, { max_points: String(MAX_POINTS) }));
      this.series.clear();
      for (const s of data.series) {
        const e = this.entry(s.action, s.key);
        Object.assign(e, { steps: s.steps, values: s.values, points: s.points, thinned: s.downsampled });
        // What the stream will repeat first: the newest value (its step form is not known here).
        e.raw = s.values.length ? s.values[s.values.length - 1] : undefined;
        e.rawStep = undefined;
      }
      this.layout(true);
    }

    // Which chart each series belongs to, redrawn whole when that changes (a key newly repeated).
    groups() {
      const actionsOf = new Map();
      for (const s of this.series.values()) {
        if (!actionsOf.has(s.key)) actionsOf.set(s.key, []);
        actionsOf.get(s.key).push(s.action);
      }
      const groups = new Map();
      for (const [id, s] of this.series) {
        const shared = actionsOf.get(s.key).length > 1;
        const group = shared ? s.key : s.action + " / " + s.key;
        if (!groups.has(group)) {
          groups.set(group, { group, shared, ids: [], title: shared ? s.key : s.key + " (" + s.action + ")" });
        }
        groups.get(group).ids.push(id);
      }
      return [...groups.values()];
    }

    layout(force) {
      const groups = this.groups();
      const signature = JSON.stringify(groups.map((g) => [g.group, g.ids]));
      if (!force && signature === this.signature) return false;
      this.signature = signature;
      for (const { chart } of this.charts.values()) chart.remove();
      this.charts.clear();
      document.getElementById("metrics-empty").hidden = groups.length > 0;
      for (const g of groups) {
        const members = g.ids.map((id) => this.series.get(id));
        const labels = members.map((s) => (g.shared ? s.action : s.key));
        const thinned = members.filter((s) => s.thinned);
        const note = thinned.length ? "Thinned for drawing: " + thinned.map((s) =>
          `${s.action} shows ${s.steps.length} of ${s.points} points (the lowest and highest of each stretch of steps)`).join("; ") + "." : null;
        const chart = new RDCharts.Chart(this.container, labels, { title: g.title, note });
        chart.figure.dataset.group = g.group;
        chart.setAll(members);
        this.charts.set(g.group, { chart, ids: g.ids });
      }
      return true;
    }

    put(s, step, value) {
      const i = s.steps.length;
      if (!i || step > s.steps[i - 1]) { s.steps.push(step); s.values.push(value); s.points += 1; }
      else {
        const at = s.steps.indexOf(step);
        if (at >= 0) s.values[at] = value;
        else {
          const j = s.steps.findIndex((x) => x > step);
          s.steps.splice(j, 0, step); s.values.splice(j, 0, value); s.points += 1;
        }
      }
      for (const { chart, ids } of this.charts.values()) {
        const index = ids.indexOf(this.sid(s.action, s.key));
        if (index >= 0) chart.put(index, step, value);
      }
    }

    /** A progress event: `view` is the run's progress view, `seq` its event number. */
    onView(view, seq) {
      const added = [];
      for (const action of view.progress || []) {
        const metrics = action.metrics || {};
        const hasStep = "step" in metrics;
        const step = stepOf(metrics.step, seq);
        for (const [key, raw] of Object.entries(metrics)) {
          if (key === "step" || !isValue(raw)) continue;
          const s = this.entry(action.name, key);
          // Unchanged since the last event (a report of progress only): no new point.
          if (s.raw === raw && s.rawStep === metrics.step) continue;
          const last = s.steps.length ? s.steps[s.steps.length - 1] : null;
          s.raw = raw; s.rawStep = metrics.step;
          if (s.steps.length && s.steps[s.steps.length - 1] === step && s.values[s.values.length - 1] === raw) continue;
          // Several reports delivered as one change show only the newest: fetch the steps between.
          if (hasStep && last !== null && step > last + 1) this.fill(action.name, last);
          added.push([s, step, raw]);
        }
      }
      if (!added.length) return;
      this.layout(false);  // a new series (or a key that now repeats): the charts are rebuilt first
      for (const [s, step, value] of added) this.put(s, step, value);
    }

    async fill(action, since) {
      if (this.filling.has(action)) return;
      this.filling.add(action);
      try {
        const data = await RD.getJSON(metricsUrl(this.runId, { action, since_step: String(since) }));
        for (const got of data.series) {
          const s = this.entry(got.action, got.key);
          got.steps.forEach((step, i) => {
            if (!s.steps.includes(step)) this.put(s, step, got.values[i]);
          });
        }
      } catch (error) { /* the next event tries again */ } finally {
        this.filling.delete(action);
      }
    }
  }

  return { RunCharts, metricsUrl, stepOf, MAX_POINTS };
})();
