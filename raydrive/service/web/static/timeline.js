"use strict";
// The run's timeline: a lane per action (its status, start, end and error; a retried action shows
// each attempt), and a lane for the run's actor when it was restarted. Every bar is also said in
// words next to it, so the list reads without the picture (the bars are aria-hidden).
const RDTimeline = (() => {
  // An actor attempt's state is a job state (SUCCEEDED, STOPPED...): drawn as the run statuses.
  const BAR_CLASS = { succeeded: "completed", stopped: "cancelled", unknown: "pending" };
  function ms(value) {
    if (value === null || value === undefined) return null;
    const t = typeof value === "number" ? value * 1000 : Date.parse(value);
    return Number.isFinite(t) ? t : null;
  }

  function when(t) { return t === null ? "—" : new Date(t).toLocaleTimeString(); }

  function span(start, end) {
    if (start === null) return "not started";
    const to = end === null ? "now" : when(end);
    const took = end === null ? "" : " (" + RD.duration(new Date(start).toISOString(), new Date(end).toISOString()) + ")";
    return when(start) + " → " + to + took;
  }

  function bar(track, range, start, end, status, label) {
    if (start === null) return;
    const stop = end === null ? range.end : end;
    const total = Math.max(1, range.end - range.start);
    const left = ((start - range.start) / total) * 100;
    const width = Math.max(0.4, ((stop - start) / total) * 100);
    const piece = RD.el("span", { class: "tl-bar tl-" + status, title: label });
    // CSSOM, not a style attribute: allowed by the page's CSP (style-src 'self').
    piece.style.left = left.toFixed(3) + "%";
    piece.style.width = Math.min(width, 100 - left).toFixed(3) + "%";
    track.append(piece);
  }

  function lane(name, status, attrs) {
    const li = RD.el("li", { class: "tl-lane", "data-status": status, ...attrs });
    const track = RD.el("span", { class: "tl-track", "aria-hidden": "true" });
    li.append(RD.el("span", { class: "tl-name", text: name }), track);
    return { li, track };
  }

  function attemptList(attempts, range, track, kind) {
    const list = RD.el("ol", { class: "tl-attempts" });
    for (const a of attempts) {
      const start = ms(a.started_at), end = ms(a.ended_at);
      const state = String(a.state || "").toLowerCase();
      const lines = String(a.error || "").split("\n");
      const text = `${kind} ${a.number}: ${state || "—"} · ${span(start, end)}` + (a.error ? " · " + lines[0] : "");
      bar(track, range, start, end, BAR_CLASS[state] || state, text);
      const item = RD.el("li", { "data-attempt": String(a.number), "data-state": state, text });
      // A traceback stays folded: the first line says what failed.
      if (lines.length > 1) item.append(RD.el("details", {}, RD.el("summary", { text: "full error" }), RD.el("pre", { text: a.error })));
      list.append(item);
    }
    return list;
  }

  /** Draw `run` (the stored run) and `actionAttempts` ({action: [attempt]}) into `box`. */
  function render(box, run, actionAttempts) {
    const actions = run.progress || [];
    const times = [];
    for (const a of actions) times.push(ms(a.started_at), ms(a.completed_at));
    for (const a of run.attempts || []) times.push(ms(a.started_at), ms(a.ended_at));
    for (const list of Object.values(actionAttempts || {})) for (const a of list) times.push(ms(a.started_at), ms(a.ended_at));
    times.push(ms(run.started_at), ms(run.completed_at));
    const known = times.filter((t) => t !== null);
    const live = !run.completed_at;
    const range = { start: known.length ? Math.min(...known) : Date.now(),
      end: Math.max(live ? Date.now() : 0, ...(known.length ? known : [Date.now()])) };
    const items = [];
    if ((run.attempts || []).length > 1) {
      const { li, track } = lane("run actor", run.status, { "data-lane": "actor" });
      li.append(RD.el("span", { class: "tl-text", text: `${run.attempts.length} attempts (restarted ${run.attempts.length - 1} times)` }));
      li.append(attemptList(run.attempts, range, track, "attempt"));
      items.push(li);
    }
    for (const a of actions) {
      const start = ms(a.started_at), end = ms(a.completed_at);
      const { li, track } = lane(a.name, a.status, { "data-action": a.name });
      const attempts = (actionAttempts || {})[a.name] || [];
      let text = `${a.status} · ${span(start, a.status === "running" ? null : end)}`;
      if (attempts.length > 1) text += ` · ${attempts.length} attempts`;
      li.append(RD.el("span", { class: "tl-text", text }));
      if (attempts.length > 1) li.append(attemptList(attempts, range, track, "attempt"));
      else bar(track, range, start, a.status === "running" ? null : end, a.status, a.name + ": " + text);
      if (a.error) li.append(RD.el("pre", { class: "err", text: a.error }));
      items.push(li);
    }
    box.replaceChildren(...items);
    document.getElementById("timeline-empty").hidden = items.length > 0;
  }

  return { render };
})();
