"use strict";
// Shared helpers of the raydrive page. Every value is put in the page with textContent.
const RD = (() => {
  const STATUSES = new Set(["pending", "running", "completed", "failed", "cancelled", "skipped"]);
  const CSRF = { "X-Raydrive-CSRF": "1" };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function toLogin() {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (response.status === 401) { toLogin(); throw new Error("not signed in"); }
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  function post(url) {
    return fetch(url, { method: "POST", headers: { Accept: "application/json", ...CSRF }, credentials: "same-origin" });
  }

  function statusBadge(status) {
    const word = STATUSES.has(status) ? status : "pending";
    return el("span", { class: "status status-" + word, text: String(status) });
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return isNaN(d) ? "—" : d.toLocaleString();
  }

  function duration(start, end) {
    if (!start) return "—";
    const ms = (end ? new Date(end) : new Date()) - new Date(start);
    if (!(ms >= 0)) return "—";
    let s = Math.floor(ms / 1000);
    if (s < 60) return (ms / 1000).toFixed(1) + " s";
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    return (h ? h + " h " : "") + m + " min " + s + " s";
  }

  function percent(fraction) {
    return Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100) + "%";
  }

  const logout = document.getElementById("logout");
  if (logout) logout.addEventListener("click", async () => { await post("/logout"); location.href = "/login"; });

  return { el, getJSON, post, statusBadge, fmtTime, duration, percent, toLogin };
})();
