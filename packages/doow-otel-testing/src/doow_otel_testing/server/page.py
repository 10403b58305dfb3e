"""The page at `/`: what the local server received, to troubleshoot an integration with.

Counters (accepted, rejected, duplicates), a chart of totals per metric and license over
time (SVG drawn by the page's own script: no network, no third-party code), totals with
usage and adjustments apart, the events and the rejections with their reasons, paged,
filtered by metric, license, kind and time range.

The page itself holds no data. It reads the key from the URL fragment (`/#key=dk_...`,
never sent to the server, so it is in no request line or log) or asks for it, and sends
it only as the read API's `Authorization` header. A key that is not accepted stops the
polling and opens the key form; a new key goes back into the fragment. Everything shown
goes through `textContent`: nothing a client sent is ever interpreted as HTML.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Doow (local) - received usage</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5rem 2rem; color: #1d2430; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1rem; margin: 1.6rem 0 .4rem; }
  .muted { color: #6b7280; }
  [hidden] { display: none !important; }
  table { border-collapse: collapse; min-width: 40rem; }
  th, td { text-align: left; padding: .3rem .8rem; border-bottom: 1px solid #e5e7eb; }
  th { background: #f3f4f6; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  tr.adjustment td { background: #fff7ed; }
  #status.error { color: #b91c1c; font-weight: 600; }
  form { margin: .8rem 0; display: flex; gap: .8rem; flex-wrap: wrap; align-items: end; }
  label { display: flex; flex-direction: column; gap: .2rem; font-size: .85rem; }
  #counters { display: flex; gap: 1rem; margin: 1rem 0; }
  .counter { border: 1px solid #e5e7eb; border-radius: 6px; padding: .5rem 1rem; min-width: 7rem; }
  .counter b { display: block; font-size: 1.4rem; font-variant-numeric: tabular-nums; }
  .counter.bad b { color: #b91c1c; }
  #charts { display: flex; flex-wrap: wrap; gap: 1rem; }
  .chart { border: 1px solid #e5e7eb; border-radius: 6px; padding: .5rem; }
  .chart h3 { font-size: .9rem; margin: 0 0 .3rem; }
  .legend { display: flex; flex-wrap: wrap; gap: .3rem .9rem; font-size: .8rem; max-width: 560px; }
  .swatch { display: inline-block; width: 1.2rem; height: 0; vertical-align: middle;
            border-top: 3px solid; margin-right: .3rem; }
  .swatch.dashed { border-top-style: dashed; }
  .pager { display: flex; gap: .6rem; align-items: center; margin: .4rem 0; }
  #key-form { background: #fef2f2; border: 1px solid #fecaca; border-radius: 6px; padding: .6rem; }
</style>
</head>
<body>
<h1>Received usage</h1>
<p class="muted">A local Doow-compatible server. Refreshes every 2 seconds.
  <span id="status">connecting...</span>
  <button id="change-key" type="button">Change key</button></p>
<form id="key-form" hidden>
  <label>API key <input id="key" type="password" autocomplete="off" placeholder="dk_..."></label>
  <button type="submit">Use this key</button>
  <span class="muted">Kept in this page's address after <code>#</code>, never sent except
    as the read API's Authorization header.</span>
</form>

<div id="counters">
  <div class="counter" data-name="accepted"><span>Accepted</span><b>-</b></div>
  <div class="counter" data-name="rejected"><span>Rejected</span><b>-</b></div>
  <div class="counter" data-name="duplicates"><span>Duplicates (not counted)</span><b>-</b></div>
  <div class="counter" data-name="batches"><span>Batches</span><b>-</b></div>
</div>

<form id="filters">
  <label>Metric <select id="f-metric"><option value="">all</option></select></label>
  <label>License <select id="f-license"><option value="">all</option></select></label>
  <label>Kind <select id="f-kind"><option value="">all</option>
    <option>USAGE</option><option>ADJUSTMENT</option></select></label>
  <label>Received <select id="f-range">
    <option value="">any time</option><option value="900">last 15 minutes</option>
    <option value="3600">last hour</option><option value="86400">last 24 hours</option>
    <option value="604800">last 7 days</option><option value="custom">between...</option>
  </select></label>
  <label id="custom-since" hidden>From <input id="f-since" type="datetime-local" step="1"></label>
  <label id="custom-until" hidden>To <input id="f-until" type="datetime-local" step="1"></label>
</form>

<h2>Totals over time <span id="bucket" class="muted"></span></h2>
<div id="charts"><p class="muted">No usage in this range.</p></div>

<h2>Totals per metric and license</h2>
<table id="usage"><thead><tr><th>Metric</th><th>License</th><th>Kind</th><th>Total</th>
  <th>Unit</th><th>Events</th><th>Last received</th></tr></thead><tbody></tbody></table>
<p id="usage-more" class="muted"></p>

<h2>Events</h2>
<div class="pager" id="events-pager"><button type="button" class="newer">Newer</button>
  <button type="button" class="older">Older</button><span class="info muted"></span></div>
<table id="events"><thead><tr><th>Received</th><th>Kind</th><th>Metric</th><th>License</th>
  <th>Quantity</th><th>Unit</th><th>Attribution</th><th>Event id</th></tr></thead>
  <tbody></tbody></table>

<h2>Rejected events</h2>
<p id="reasons" class="muted"></p>
<div class="pager" id="rejections-pager"><button type="button" class="newer">Newer</button>
  <button type="button" class="older">Older</button><span class="info muted"></span></div>
<table id="rejections"><thead><tr><th>Received</th><th>Event id</th><th>Reason</th></tr></thead>
  <tbody></tbody></table>

<script>
"use strict";
const PAGE_SIZE = 25;
const MAX_LINES = 8;  // per chart: the largest; a filter shows the others
const MAX_ROWS = 200;  // of the totals table
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777",
                "#4b5563"];
const SVG = "http://www.w3.org/2000/svg";
const $ = id => document.getElementById(id);
const status = $("status");

// --- the key: in the URL fragment only ---
function keyFromFragment() { return new URLSearchParams(location.hash.slice(1)).get("key"); }
let key = keyFromFragment();
let paused = false;  // a key that was not accepted: no polling until a new one is given

function askForKey(message) {
  paused = true;
  $("key-form").hidden = false;
  $("key").value = "";
  $("key").focus();
  status.textContent = message;
  status.className = message ? "error" : "";
}

$("key-form").addEventListener("submit", event => {
  event.preventDefault();
  const given = $("key").value.trim();
  if (!given) return;
  key = given;
  history.replaceState(null, "", "#" + new URLSearchParams({key: given}).toString());
  $("key-form").hidden = true;
  paused = false;
  status.textContent = "checking the key...";
  status.className = "";
  refresh();
});
$("change-key").addEventListener("click", () => askForKey(""));
window.addEventListener("hashchange", () => {
  key = keyFromFragment();
  paused = false;
  $("key-form").hidden = true;
  refresh();
});

class KeyRefused extends Error {}

async function get(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const url = query.toString() ? path + "?" + query : path;
  const answer = await fetch(url, {headers: {Authorization: "Bearer " + key}});
  if (answer.status === 401) throw new KeyRefused("the key was not accepted; enter the right one");
  if (!answer.ok) {
    let message = path + " answered " + answer.status;
    try { message += ": " + (await answer.json()).message; } catch (ignored) { /* not JSON */ }
    throw new Error(message);
  }
  return answer.json();
}

// --- filters ---
function timeRange() {
  const range = $("f-range").value;
  if (range === "custom") {
    const since = $("f-since").value, until = $("f-until").value;
    return {since: since ? new Date(since).toISOString() : null,
            until: until ? new Date(until).toISOString() : null};
  }
  const now = Date.now();
  if (range) {
    return {since: new Date(now - Number(range) * 1000).toISOString(),
            until: new Date(now + 1000).toISOString()};
  }
  return {since: null, until: null};
}

function filters() {
  return {metric: $("f-metric").value, license_id: $("f-license").value, kind: $("f-kind").value,
          ...timeRange()};
}

function setOptions(select, values) {
  const chosen = select.value;
  const options = [["", "all"], ...values.map(v => [v, v])];
  if (chosen && !values.includes(chosen)) options.push([chosen, chosen]);
  const current = Array.from(select.options).map(o => o.value).join("\n");
  if (current === options.map(o => o[0]).join("\n")) return;
  select.replaceChildren(...options.map(([value, label]) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    return option;
  }));
  select.value = chosen;
}

// --- tables ---
function row(cells, numeric, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  cells.forEach((value, i) => {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    if (numeric.includes(i)) td.className = "num";
    tr.appendChild(td);
  });
  return tr;
}

function fill(id, rows) {
  $(id).querySelector("tbody").replaceChildren(...rows);
}

// Newest first, a page at a time: `before` cursors from the API, a stack to go back.
class Pager {
  constructor(id) {
    this.element = $(id);
    this.reset();
    this.element.querySelector(".older").addEventListener("click", () => {
      if (this.next === null) return;
      this.cursors.push(this.next);
      refresh();
    });
    this.element.querySelector(".newer").addEventListener("click", () => {
      if (this.cursors.length > 1) { this.cursors.pop(); refresh(); }
    });
  }
  reset() { this.cursors = [null]; this.next = null; }
  get before() { return this.cursors[this.cursors.length - 1]; }
  show(count, next) {
    this.next = next;
    const page = this.cursors.length;
    this.element.querySelector(".older").disabled = next === null;
    this.element.querySelector(".newer").disabled = page === 1;
    this.element.querySelector(".info").textContent =
      "page " + page + ", " + count + " shown" + (page === 1 ? " (live)" : "");
  }
}
const eventsPager = new Pager("events-pager");
const rejectionsPager = new Pager("rejections-pager");

// --- the chart: one SVG per metric, a line per license (dashed: adjustments) ---
function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) {
    element.setAttribute(attribute, String(value));
  }
  if (text !== undefined) element.textContent = text;
  return element;
}

function clock(seconds, span) {
  const date = new Date(seconds * 1000);
  return span > 86400 ? date.toLocaleString() : date.toLocaleTimeString();
}

function drawCharts(series, units) {
  const box = $("charts");
  $("bucket").textContent = series.points.length ? "(per " + series.bucket + " s)" : "";
  if (!series.points.length) {
    const empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = "No usage in this range.";
    box.replaceChildren(empty);
    return;
  }
  const step = series.bucket;
  const first = Math.floor(series.since / step) * step;
  const last = Math.max(Math.floor(series.until / step) * step, first + step);
  // one colour per license in every chart; its adjustments dashed in the same colour
  const licenses = [...new Set(series.points.map(p => p.license_id))].sort();
  const colorOf = license => COLORS[licenses.indexOf(license) % COLORS.length];
  const byMetric = new Map();
  for (const point of series.points) {
    if (!byMetric.has(point.metric)) byMetric.set(point.metric, new Map());
    const lines = byMetric.get(point.metric);
    const name = point.license_id + (point.kind === "ADJUSTMENT" ? " (adjustment)" : "");
    if (!lines.has(name)) {
      lines.set(name, {kind: point.kind, license: point.license_id, values: new Map()});
    }
    lines.get(name).values.set(point.t, Number(point.total));
  }
  const charts = [];
  for (const [metric, lines] of byMetric) {
    const width = 560, height = 200, left = 60, right = 10, top = 10, bottom = 24;
    let low = 0, high = 0;
    for (const line of lines.values()) {
      for (const value of line.values.values()) {
        low = Math.min(low, value);
        high = Math.max(high, value);
      }
    }
    if (high === low) high = low + 1;
    const x = t => left + (t - first) / (last - first) * (width - left - right);
    const y = v => top + (high - v) / (high - low) * (height - top - bottom);
    const chart = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "img"});
    const axis = "#9ca3af";
    chart.appendChild(svg("line", {x1: left, x2: width - right, y1: y(0), y2: y(0), stroke: axis}));
    const foot = height - bottom;
    chart.appendChild(svg("line", {x1: left, x2: left, y1: top, y2: foot, stroke: axis}));
    for (const value of low < 0 ? [high, 0, low] : [high, 0]) {
      chart.appendChild(svg("text", {x: left - 6, y: y(value) + 4, "text-anchor": "end",
                                     "font-size": 11, fill: "#4b5563"}, value.toLocaleString()));
    }
    chart.appendChild(svg("text", {x: left, y: height - 6, "font-size": 11, fill: "#4b5563"},
                          clock(first, last - first)));
    chart.appendChild(svg("text", {x: width - right, y: height - 6, "text-anchor": "end",
                                   "font-size": 11, fill: "#4b5563"}, clock(last, last - first)));
    const legend = document.createElement("div");
    legend.className = "legend";
    const volume = line => [...line.values.values()].reduce((sum, v) => sum + Math.abs(v), 0);
    const shown = [...lines].sort((a, b) => volume(b[1]) - volume(a[1])).slice(0, MAX_LINES);
    const drawn = new Set(shown.map(([name]) => name));
    for (const [name, line] of [...lines].filter(([name]) => drawn.has(name))) {
      const color = colorOf(line.license);
      const points = [];
      for (let t = first; t <= last; t += step) points.push([x(t), y(line.values.get(t) || 0)]);
      const attributes = {points: points.map(p => p.join(",")).join(" "), fill: "none",
                          stroke: color, "stroke-width": 2, "data-line": name};
      if (line.kind === "ADJUSTMENT") attributes["stroke-dasharray"] = "6 4";
      chart.appendChild(svg("polyline", attributes));
      for (const [t, value] of line.values) {
        const dot = svg("circle", {cx: x(t), cy: y(value), r: 3, fill: color});
        const tip = name + ": " + value.toLocaleString() + " at " + clock(t, 0);
        dot.appendChild(svg("title", {}, tip));
        chart.appendChild(dot);
      }
      const entry = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch" + (line.kind === "ADJUSTMENT" ? " dashed" : "");
      swatch.style.borderTopColor = color;
      entry.append(swatch, name);
      legend.appendChild(entry);
    }
    const figure = document.createElement("div");
    figure.className = "chart";
    figure.dataset.metric = metric;
    const title = document.createElement("h3");
    title.textContent = metric + (units.get(metric) ? " (" + units.get(metric) + ")" : "");
    if (lines.size > drawn.size) {
      const more = document.createElement("span");
      more.className = "muted";
      more.textContent = "+" + (lines.size - drawn.size) + " smaller lines: filter by license";
      legend.appendChild(more);
    }
    figure.append(title, chart, legend);
    charts.push(figure);
  }
  box.replaceChildren(...charts);
}

// --- refresh ---
let running = false, again = false;

async function refresh() {
  if (!key) { askForKey(""); return; }
  if (paused) return;
  if (running) { again = true; return; }  // filters changed mid-refresh: refresh once more
  running = true;
  try {
    const chosen = filters();
    const [stats, all, usage, series, events, rejections] = await Promise.all([
      get("/api/stats"),
      get("/api/usage"),
      get("/api/usage", {...chosen, per_kind: "true"}),
      get("/api/series", chosen),
      get("/api/events", {...chosen, limit: PAGE_SIZE, before: eventsPager.before}),
      get("/api/rejections", {since: chosen.since, until: chosen.until, limit: PAGE_SIZE,
                              before: rejectionsPager.before}),
    ]);
    for (const counter of document.querySelectorAll(".counter")) {
      counter.querySelector("b").textContent = String(stats[counter.dataset.name]);
    }
    const rejected = document.querySelector(".counter[data-name=rejected]");
    rejected.classList.toggle("bad", stats.rejected > 0);
    setOptions($("f-metric"), [...new Set(all.usage.map(u => u.metric))].sort());
    setOptions($("f-license"), [...new Set(all.usage.map(u => u.license_id))].sort());
    const units = new Map(all.usage.filter(u => u.unit).map(u => [u.metric, u.unit]));
    drawCharts(series, units);
    const extra = usage.usage.length - MAX_ROWS;
    $("usage-more").textContent = extra > 0 ? extra + " more rows: filter to see them" : "";
    fill("usage", usage.usage.slice(0, MAX_ROWS).map(u =>
      row([u.metric, u.license_id, u.kind, u.total, u.unit, u.events, u.last_received_at], [3, 5],
          u.kind === "ADJUSTMENT" ? "adjustment" : "")));
    fill("events", events.events.map(e =>
      row([e.received_at, e.kind, e.metric, e.license_id, e.quantity, e.unit,
           Object.entries(e.attribution).map(([k, v]) => k + "=" + v).join(", "), e.event_id],
          [4], e.kind === "ADJUSTMENT" ? "adjustment" : "")));
    eventsPager.show(events.events.length, events.next_before);
    fill("rejections", rejections.rejections.map(r =>
      row([r.received_at, r.event_id, r.reason], [])));
    rejectionsPager.show(rejections.rejections.length, rejections.next_before);
    const reasons = Object.entries(stats.rejected_by_reason).map(([k, n]) => k + ": " + n);
    $("reasons").textContent =
      reasons.length ? "By field: " + reasons.join(", ") : "None rejected.";
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.className = "";
  } catch (error) {
    if (error instanceof KeyRefused) askForKey(error.message);
    else { status.textContent = error.message; status.className = "error"; }
  } finally {
    running = false;
    if (again) { again = false; refresh(); }
  }
}

$("filters").addEventListener("change", event => {
  if (event.target.id === "f-range") {
    const custom = $("f-range").value === "custom";
    $("custom-since").hidden = !custom;
    $("custom-until").hidden = !custom;
  }
  eventsPager.reset();
  rejectionsPager.reset();
  refresh();
});
$("filters").addEventListener("submit", event => event.preventDefault());
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
