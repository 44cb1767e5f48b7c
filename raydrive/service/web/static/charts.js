"use strict";
// Metric charts (uPlot, vendored): a line per series over its steps, hover values, a log-scale
// toggle, a table of the data and a text summary for every chart, keyboard stepping through the
// points. Colours are the Okabe-Ito palette (readable with every common colour-vision
// deficiency), and each series also has its own dash pattern, so colour is never the only cue.
const RDCharts = (() => {
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
  const DASHES = [[], [6, 3], [2, 3], [8, 3, 2, 3], [12, 4], [3, 6], [1, 2], [10, 2, 2, 2, 2, 2]];
  const all = [];  // every chart of the page (the tests read their data here)

  function fmt(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    const a = Math.abs(value);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return value.toExponential(3);
    return String(Math.round(value * 1e4) / 1e4);
  }

  // Binary search: index of the first x >= step.
  function lowerBound(xs, step) {
    let lo = 0, hi = xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < step) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  let counter = 0;

  /**
   * One chart: `labels` name its series; `opts.title` heads it; `opts.note` (optional) says
   * what the data is (e.g. that it was thinned on the server).
   */
  class Chart {
    constructor(parent, labels, opts) {
      counter += 1;
      this.id = "chart-" + counter;
      this.title = opts.title;
      this.labels = labels.slice();
      this.xs = [];
      this.cols = labels.map(() => []);
      this.stats = labels.map(() => ({ n: 0, last: null, lastStep: -Infinity, min: Infinity, max: -Infinity }));
      this.log = false;
      this.cursor = -1;
      this.pending = false;
      this.u = null;
      const captionId = this.id + "-caption";
      this.figure = RD.el("figure", { class: "chart", id: this.id, "data-title": opts.title,
        role: "group", "aria-labelledby": captionId });
      this.caption = RD.el("figcaption", { id: captionId }, RD.el("span", { class: "chart-title", text: opts.title }));
      const logId = this.id + "-log";
      this.logBox = RD.el("input", { type: "checkbox", id: logId, class: "log-toggle" });
      this.caption.append(" ", RD.el("label", { class: "log-label", for: logId }, this.logBox, " log scale"));
      this.summary = RD.el("p", { class: "chart-summary", id: this.id + "-summary" });
      this.note = opts.note ? RD.el("p", { class: "chart-note muted", text: opts.note }) : null;
      // The plot is a keyboard stop: arrows walk the points, and the live line says each value.
      this.plot = RD.el("div", { class: "chart-plot", tabindex: "0", role: "img",
        "aria-roledescription": "line chart", "aria-describedby": this.id + "-summary",
        "aria-label": opts.title + " chart; arrow keys step through the points" });
      this.readout = RD.el("p", { class: "chart-readout", "aria-live": "polite" });
      this.tableBox = RD.el("details", { class: "chart-table" }, RD.el("summary", { text: "Table of the data" }));
      this.figure.append(this.caption, this.summary, this.plot, this.readout, this.tableBox);
      if (this.note) this.figure.append(this.note);
      parent.append(this.figure);
      this.logBox.addEventListener("change", () => { this.log = this.logBox.checked; this.build(); });
      this.tableBox.addEventListener("toggle", () => { if (this.tableBox.open) this.renderTable(); });
      this.plot.addEventListener("keydown", (event) => this.key(event));
      this.resizeObserver = new ResizeObserver(() => this.resize());
      this.resizeObserver.observe(this.plot);
      all.push(this);
      this.build();
    }

    width() { return Math.max(280, Math.floor(this.plot.clientWidth || 600)); }

    data() {
      if (!this.log) return [this.xs, ...this.cols];
      // A log scale has no place for zero or below: those points are left out (the table keeps them).
      return [this.xs, ...this.cols.map((col) => col.map((v) => (v !== null && v > 0 ? v : null)))];
    }

    build() {
      if (this.u) this.u.destroy();
      const series = [{ label: "step", value: (u, v) => (v === null || v === undefined ? "—" : String(v)) }];
      this.labels.forEach((label, i) => series.push({
        label, stroke: PALETTE[i % PALETTE.length], dash: DASHES[i % DASHES.length], width: 1.6,
        spanGaps: true, points: { show: false }, value: (u, v) => fmt(v),
      }));
      this.u = new uPlot({
        width: this.width(), height: 220, series,
        scales: { x: { time: false }, y: this.log ? { distr: 3 } : {} },
        axes: [{ label: "step" }, { size: 60, values: (u, ticks) => ticks.map(fmt) }],
        cursor: { drag: { x: true, y: false } },
        legend: { live: true },
      }, this.data(), this.plot);
      this.u.root.setAttribute("aria-hidden", "true");  // the summary, readout and table say it in words
      this.describe();
    }

    resize() {
      if (this.u && Math.abs(this.u.width - this.width()) > 4) this.u.setSize({ width: this.width(), height: 220 });
    }

    /** Replace all points: `series[i]` is `{steps, values}` of label i. */
    setAll(series) {
      const steps = new Set();
      for (const s of series) for (const x of s.steps) steps.add(x);
      this.xs = [...steps].sort((a, b) => a - b);
      const at = new Map(this.xs.map((x, i) => [x, i]));
      this.cols = series.map((s) => {
        const col = new Array(this.xs.length).fill(null);
        s.steps.forEach((x, i) => { col[at.get(x)] = s.values[i]; });
        return col;
      });
      this.restat();
      this.redraw();
    }

    /** Put one point (a later value at a step replaces the earlier one). */
    put(index, step, value) {
      const xs = this.xs;
      let i;
      if (!xs.length || step > xs[xs.length - 1]) {
        i = xs.length;
        xs.push(step);
        for (const col of this.cols) col.push(null);
      } else {
        i = lowerBound(xs, step);
        if (xs[i] !== step) {
          xs.splice(i, 0, step);
          for (const col of this.cols) col.splice(i, 0, null);
        }
      }
      const fresh = this.cols[index][i] === null;
      this.cols[index][i] = value;
      // A replaced value may have been the lowest or highest: count again (rare).
      if (fresh) this.stat(this.stats[index], step, value, true); else this.restat();
      this.redraw();
    }

    // Many points may arrive at once (a batch of reports): draw once per frame.
    redraw() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.u.setData(this.data());
        this.describe();
        if (this.tableBox.open) this.renderTable();
      });
    }

    /** Points per series (not null), the figure the tests check. */
    counts() { return this.cols.map((col) => col.reduce((n, v) => n + (v === null ? 0 : 1), 0)); }

    // Counted once from the data, then kept up to date point by point (a live chart redraws often).
    restat() {
      this.stats = this.cols.map((col) => {
        const st = { n: 0, last: null, lastStep: -Infinity, min: Infinity, max: -Infinity };
        col.forEach((v, i) => { if (v !== null) this.stat(st, this.xs[i], v, true); });
        return st;
      });
    }

    stat(st, step, v, fresh) {
      if (fresh) st.n += 1;
      if (step >= st.lastStep) { st.last = v; st.lastStep = step; }
      if (v < st.min) st.min = v;
      if (v > st.max) st.max = v;
    }

    describe() {
      const parts = this.labels.map((label, i) => {
        const { n, last, min, max } = this.stats[i];
        return n ? `${label}: ${n} points, last ${fmt(last)}, min ${fmt(min)}, max ${fmt(max)}`
          : `${label}: no points yet`;
      });
      const span = this.xs.length ? `steps ${this.xs[0]} to ${this.xs[this.xs.length - 1]}` : "no steps yet";
      this.summary.textContent = `${this.title}, ${span}. ` + parts.join("; ") + "." +
        (this.log ? " Log scale: values of zero or below are not drawn." : "");
    }

    renderTable() {
      const head = RD.el("tr", {}, RD.el("th", { scope: "col", text: "step" }),
        ...this.labels.map((label) => RD.el("th", { scope: "col", text: label })));
      const rows = this.xs.map((x, i) => RD.el("tr", {}, RD.el("th", { scope: "row", text: String(x) }),
        ...this.cols.map((col) => RD.el("td", { text: fmt(col[i]) }))));
      const table = RD.el("table", { class: "data" }, RD.el("caption", { text: this.title }),
        RD.el("thead", {}, head), RD.el("tbody", {}, ...rows));
      const old = this.tableBox.querySelector("table");
      if (old) old.replaceWith(table); else this.tableBox.append(table);
    }

    key(event) {
      const n = this.xs.length;
      if (!n) return;
      const moves = { ArrowRight: 1, ArrowLeft: -1, PageUp: 10, PageDown: -10 };
      if (event.key in moves) this.cursor = Math.max(0, Math.min(n - 1, (this.cursor < 0 ? n - 1 : this.cursor + moves[event.key])));
      else if (event.key === "Home") this.cursor = 0;
      else if (event.key === "End") this.cursor = n - 1;
      else return;
      event.preventDefault();
      const x = this.xs[this.cursor];
      this.u.setCursor({ left: this.u.valToPos(x, "x"), top: 10 });
      const values = this.labels.map((label, i) => `${label} ${fmt(this.cols[i][this.cursor])}`);
      this.readout.textContent = `step ${x}: ` + values.join(", ");
    }

    remove() {
      this.resizeObserver.disconnect();
      if (this.u) this.u.destroy();
      this.figure.remove();
      const at = all.indexOf(this);
      if (at >= 0) all.splice(at, 1);
    }
  }

  /** A small SVG line of `values` (no axes): the runs page's sparkline. */
  function sparkline(values, label) {
    const NS = "http://www.w3.org/2000/svg";
    const w = 100, h = 24;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("width", String(w));
    svg.setAttribute("height", String(h));
    svg.setAttribute("class", "spark");
    svg.setAttribute("role", "img");
    const finite = values.filter((v) => Number.isFinite(v));
    if (!finite.length) { svg.setAttribute("aria-label", label + ": no points"); return svg; }
    const min = Math.min(...finite), max = Math.max(...finite);
    const span = max - min || 1;
    const pts = values.map((v, i) => {
      const x = values.length === 1 ? w / 2 : (i / (values.length - 1)) * (w - 2) + 1;
      const y = h - 2 - ((v - min) / span) * (h - 4);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", PALETTE[0]);
    line.setAttribute("stroke-width", "1.5");
    svg.append(line);
    svg.setAttribute("aria-label", `${label}: ${finite.length} points from ${fmt(finite[0])} to ` +
      `${fmt(finite[finite.length - 1])} (min ${fmt(min)}, max ${fmt(max)})`);
    svg.dataset.points = String(finite.length);
    return svg;
  }

  return { Chart, all, fmt, sparkline, PALETTE };
})();
