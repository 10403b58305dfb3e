"""The page at `/`: what the local server received, and what it refused, to
troubleshoot an integration with ("my usage did not arrive", answered in a minute).

From the top: what went wrong, grouped, each with its fix (requests refused at the door:
wrong key, wrong path, too large, rate limited, malformed; events rejected in a 207 with
their metric, license and quantity); counters; events per minute against Doow's event
budget, with the 429s; usage per metric over time (bars per bucket of a minute or more,
axes, times in UTC); totals; the events, the rejected events and the refused requests,
paged and filtered. It reads on a phone: nothing is wider than the screen (tables scroll
inside their box).

The page itself holds no data. It reads the key from the URL fragment (`/#key=dk_...`,
never sent to the server, so it is in no request line or log) or asks for it, and sends
it only as the read API's `Authorization` header. A key that is not accepted stops the
polling and opens the key form; a new key goes back into the fragment. Everything shown
goes through `textContent`: nothing a client sent is ever interpreted as HTML. Of a key
a client sent, the server keeps and shows only its first characters.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Doow (local) - received usage</title>
<style>
  * { box-sizing: border-box; }
  body { font: 14px system-ui, sans-serif; margin: 1rem 1.5rem; color: #1d2430; max-width: 1200px; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1rem; margin: 1.6rem 0 .4rem; }
  .muted { color: #6b7280; }
  [hidden] { display: none !important; }
  .scroll { overflow-x: auto; max-width: 100%; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e5e7eb;
           vertical-align: top; }
  th { background: #f3f4f6; font-weight: 600; white-space: nowrap; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.id { font-family: ui-monospace, monospace; font-size: .8rem; word-break: break-all; }
  td.fix { min-width: 16rem; }
  td.key { white-space: nowrap; font-family: ui-monospace, monospace; font-size: .8rem; }
  tr.adjustment td { background: #fff7ed; }
  #status.error { color: #b91c1c; font-weight: 600; }
  form { margin: .8rem 0; display: flex; gap: .6rem; flex-wrap: wrap; align-items: end; }
  label { display: flex; flex-direction: column; gap: .2rem; font-size: .85rem; }
  #counters { display: flex; flex-wrap: wrap; gap: .6rem; margin: 1rem 0; }
  .counter { border: 1px solid #e5e7eb; border-radius: 6px; padding: .4rem .8rem;
             flex: 1 1 7rem; min-width: 0; }
  .counter span { display: block; font-size: .8rem; color: #4b5563; }
  .counter b { display: block; font-size: 1.3rem; font-variant-numeric: tabular-nums; }
  .counter.bad b { color: #b91c1c; }
  #charts { display: flex; flex-wrap: wrap; gap: 1rem; }
  .chart { border: 1px solid #e5e7eb; border-radius: 6px; padding: .5rem; flex: 1 1 320px;
           min-width: 0; max-width: 600px; }
  .chart svg { width: 100%; height: auto; display: block; }
  .chart h3 { font-size: .9rem; margin: 0 0 .3rem; }
  .legend { display: flex; flex-wrap: wrap; gap: .3rem .9rem; font-size: .8rem; }
  .swatch { display: inline-block; width: .8rem; height: .8rem; vertical-align: middle;
            margin-right: .3rem; border-radius: 2px; }
  .pager { display: flex; gap: .6rem; align-items: center; margin: .4rem 0; flex-wrap: wrap; }
  #key-form { background: #fef2f2; border: 1px solid #fecaca; border-radius: 6px; padding: .6rem; }
  #problems { list-style: none; padding: 0; margin: .4rem 0; display: grid; gap: .5rem; }
  .problem { border: 1px solid #fecaca; background: #fef2f2; border-radius: 6px;
             padding: .5rem .7rem; }
  .problem .what { font-weight: 600; }
  .problem .why { margin: .2rem 0; overflow-wrap: anywhere; }
  .problem .fix { margin-top: .2rem; overflow-wrap: anywhere; }
  .problem .fix::before { content: "Fix: "; font-weight: 600; color: #065f46; }
  #all-good { color: #065f46; }
  #budget-note { margin: .3rem 0; }
  #budget-note.late { color: #b91c1c; font-weight: 600; }
</style>
</head>
<body>
<h1>Received usage</h1>
<p class="muted">A local Doow-compatible server. Refreshes every 2 seconds. All times UTC.
  <span id="status">connecting...</span>
  <button id="change-key" type="button">Change key</button></p>
<form id="key-form" hidden>
  <label>API key <input id="key" type="password" autocomplete="off" placeholder="dk_..."></label>
  <button type="submit">Use this key</button>
  <span class="muted">Kept in this page's address after <code>#</code>, never sent except
    as the read API's Authorization header.</span>
</form>

<section id="trouble">
<h2>What went wrong</h2>
<p id="all-good" hidden>Nothing: no request refused, no event rejected in this range.</p>
<ul id="problems"></ul>
</section>

<div id="counters">
  <div class="counter" data-name="accepted"><span>Events stored</span><b>-</b></div>
  <div class="counter" data-name="rejected"><span>Events rejected</span><b>-</b></div>
  <div class="counter" data-name="refused_requests"><span>Requests refused</span><b>-</b></div>
  <div class="counter" data-name="duplicates"><span>Duplicates (not counted)</span><b>-</b></div>
  <div class="counter" data-name="batches"><span>Batches</span><b>-</b></div>
  <div class="counter" data-name="this_minute"><span>Events this minute</span><b>-</b></div>
</div>

<form id="filters">
  <label>Metric <select id="f-metric"><option value="">all</option></select></label>
  <label>License <select id="f-license"><option value="">all</option></select></label>
  <label>Kind <select id="f-kind"><option value="">all</option>
    <option>USAGE</option><option>ADJUSTMENT</option></select></label>
  <label>Show <select id="f-show"><option value="">everything</option>
    <option value="accepted">stored events</option><option value="rejected">rejected events</option>
    <option value="refused">refused requests</option></select></label>
  <label>Received <select id="f-range">
    <option value="">any time</option><option value="900">last 15 minutes</option>
    <option value="3600">last hour</option><option value="86400">last 24 hours</option>
    <option value="604800">last 7 days</option><option value="custom">between...</option>
  </select></label>
  <label id="custom-since" hidden>From (UTC)
    <input id="f-since" type="datetime-local" step="1"></label>
  <label id="custom-until" hidden>To (UTC)
    <input id="f-until" type="datetime-local" step="1"></label>
</form>

<h2>Events per minute, against the event budget</h2>
<p id="budget-note" class="muted"></p>
<div class="chart" id="budget-chart"></div>

<h2>Usage over time <span id="bucket" class="muted"></span></h2>
<div id="charts"><p class="muted">No usage in this range.</p></div>

<h2>Totals per metric and license</h2>
<div class="scroll"><table id="usage"><thead><tr><th>Metric</th><th>License</th><th>Kind</th>
  <th>Total</th><th>Unit</th><th>Events</th><th>Last received (UTC)</th></tr></thead>
  <tbody></tbody></table></div>
<p id="usage-more" class="muted"></p>

<section data-show="accepted">
<h2>Events</h2>
<div class="pager" id="events-pager"><button type="button" class="newer">Newer</button>
  <button type="button" class="older">Older</button><span class="info muted"></span></div>
<div class="scroll"><table id="events"><thead><tr><th>Received (UTC)</th><th>Kind</th>
  <th>Metric</th><th>License</th><th>Quantity</th><th>Unit</th><th>Attribution</th>
  <th>Event id</th></tr></thead><tbody></tbody></table></div>
</section>

<section data-show="rejected">
<h2>Rejected events</h2>
<p id="reasons" class="muted"></p>
<div class="pager" id="rejections-pager"><button type="button" class="newer">Newer</button>
  <button type="button" class="older">Older</button><span class="info muted"></span></div>
<div class="scroll"><table id="rejections"><thead><tr><th>Received (UTC)</th><th>Metric</th>
  <th>License</th><th>Quantity</th><th>Reason</th><th>Fix</th><th>Event id</th></tr></thead>
  <tbody></tbody></table></div>
</section>

<section data-show="refused">
<h2>Refused requests</h2>
<form id="refusal-filter"><label>Status <select id="f-status"><option value="">all</option>
  <option>400</option><option>401</option><option>404</option><option>413</option>
  <option>415</option><option>429</option></select></label></form>
<div class="pager" id="refusals-pager"><button type="button" class="newer">Newer</button>
  <button type="button" class="older">Older</button><span class="info muted"></span></div>
<div class="scroll"><table id="refusals"><thead><tr><th>Received (UTC)</th><th>Status</th>
  <th>Request</th><th>Key</th><th>Events</th><th>Reason</th><th>Fix</th></tr></thead>
  <tbody></tbody></table></div>
</section>

<script>
"use strict";
const PAGE_SIZE = 25;
const MAX_SERIES = 8;  // per chart: the largest; a filter shows the others
const MAX_ROWS = 200;  // of the totals table
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777",
                "#4b5563"];
const SVG = "http://www.w3.org/2000/svg";
const $ = id => document.getElementById(id);
const status = $("status");

// --- times: always UTC, one format ---
function utc(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (isNaN(date)) return String(value);
  return date.toISOString().slice(0, 19).replace("T", " ");
}
function tick(seconds, span) {
  const text = new Date(seconds * 1000).toISOString();
  return span > 86400 ? text.slice(5, 16).replace("T", " ") : text.slice(11, 16);
}

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
    const asUtc = text => new Date(text + (text.length === 16 ? ":00Z" : "Z")).toISOString();
    return {since: since ? asUtc(since) : null, until: until ? asUtc(until) : null};
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
function row(cells, classes, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  cells.forEach((value, i) => {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    if (classes[i]) td.className = classes[i];
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
const refusalsPager = new Pager("refusals-pager");

// --- what went wrong: grouped, each with its fix ---
function drawProblems(problems) {
  $("all-good").hidden = problems.length > 0;
  $("problems").replaceChildren(...problems.map(p => {
    const item = document.createElement("li");
    item.className = "problem";
    item.dataset.kind = p.kind;
    item.dataset.status = String(p.status);
    const what = document.createElement("div");
    what.className = "what";
    const why = document.createElement("div");
    why.className = "why";
    const times = p.count === 1 ? "1 time" : p.count + " times";
    if (p.kind === "refused") {
      what.textContent = "HTTP " + p.status + ": " + p.count
        + (p.count === 1 ? " request" : " requests") + " refused (POST " + p.path
        + (p.key_prefix ? ", key " + p.key_prefix : ", no key") + "), last at " + utc(p.last);
      why.textContent = p.reason;
    } else {
      const e = p.example || {};
      what.textContent = p.count + (p.count === 1 ? " event" : " events") + " rejected ("
        + p.field + "), last at " + utc(p.last);
      why.textContent = p.reason + " - for example " + (e.metric || "?") + " "
        + (e.quantity === null || e.quantity === undefined ? "" : e.quantity + " ")
        + "for " + (e.license_id || "(no license)") + ", event " + (e.event_id || "(no id)");
    }
    const fix = document.createElement("div");
    fix.className = "fix";
    fix.textContent = p.fix;
    item.title = times;
    item.append(what, why, fix);
    return item;
  }));
}

// --- charts: SVG drawn here, no third-party code ---
function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) {
    element.setAttribute(attribute, String(value));
  }
  if (text !== undefined) element.textContent = text;
  return element;
}

const W = 520, H = 220, LEFT = 58, RIGHT = 14, TOP = 12, BOTTOM = 34, FONT = 13;
const WINDOW = 15 * 60;  // a chart shows at least the last 15 minutes

// A round number at or above `value` (1, 2, 2.5, 5 times a power of ten).
function roundUp(value) {
  if (value <= 0) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

// A frame: y axis with 0 and the extremes, x axis with 4 to 6 UTC ticks.
function frame(first, last, low, high, unit) {
  const chart = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
  const x = t => LEFT + (t - first) / (last - first) * (W - LEFT - RIGHT);
  const y = v => TOP + (high - v) / (high - low) * (H - TOP - BOTTOM);
  const axis = "#9ca3af", ink = "#4b5563";
  chart.appendChild(svg("line", {x1: LEFT, x2: W - RIGHT, y1: y(0), y2: y(0), stroke: axis}));
  chart.appendChild(svg("line", {x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM, stroke: axis}));
  const values = low < 0 ? [high, 0, low] : [high, high / 2, 0];
  for (const value of values) {
    chart.appendChild(svg("text", {x: LEFT - 6, y: y(value) + 4, "text-anchor": "end",
                                   "font-size": FONT, fill: ink}, compact(value)));
  }
  const span = last - first;
  const steps = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800,
                 604800];
  const every = steps.find(s => span / s <= 5) || Math.ceil(span / 5);
  for (let t = Math.ceil(first / every) * every; t <= last; t += every) {
    const near = x(t) > W - RIGHT - 24 ? "end" : x(t) < LEFT + 24 ? "start" : "middle";
    chart.appendChild(svg("line", {x1: x(t), x2: x(t), y1: H - BOTTOM, y2: H - BOTTOM + 4,
                                   stroke: axis}));
    chart.appendChild(svg("text", {x: x(t), y: H - BOTTOM + 17, "text-anchor": near,
                                   "font-size": FONT, fill: ink, class: "tick"}, tick(t, span)));
  }
  chart.appendChild(svg("text", {x: W - RIGHT, y: H - 2, "text-anchor": "end",
                                 "font-size": FONT - 2, fill: ink},
                        "time (UTC)" + (unit ? "; " + unit : "")));
  return {chart, x, y};
}

function compact(value) {
  const size = Math.abs(value);
  if (size >= 1e9) return (value / 1e9).toFixed(1) + "G";
  if (size >= 1e6) return (value / 1e6).toFixed(1) + "M";
  if (size >= 1e4) return (value / 1e3).toFixed(1) + "k";
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(2);
}

// The time axis: the range chosen, else the data's, and at least the last 15 minutes.
function span(points, step, range) {
  const times = points.map(p => p.t);
  const now = Date.now() / 1000;
  const from = range.since ? Date.parse(range.since) / 1000
                           : Math.min(...times, now - Math.max(WINDOW, step));
  const to = range.until ? Date.parse(range.until) / 1000 : Math.max(...times, now);
  const first = Math.floor(from / step) * step;
  const last = Math.max(Math.ceil(to / step) * step, first + step);
  return [first, last];
}

// Usage: one chart per metric, a bar per bucket, licenses stacked in their colours;
// adjustments (negative) below the axis.
function drawCharts(series, units, range) {
  const box = $("charts");
  const step = series.bucket;
  $("bucket").textContent = series.points.length ? "(per " + duration(step) + ", UTC)" : "";
  if (!series.points.length) {
    const empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = "No usage in this range.";
    box.replaceChildren(empty);
    return;
  }
  const [first, last] = span(series.points, step, range);
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
    const volume = line => [...line.values.values()].reduce((sum, v) => sum + Math.abs(v), 0);
    const shown = [...lines].sort((a, b) => volume(b[1]) - volume(a[1])).slice(0, MAX_SERIES);
    const drawn = new Set(shown.map(([name]) => name));
    const ordered = [...lines].filter(([name]) => drawn.has(name));
    // stack per bucket: positives up, negatives down
    const up = new Map(), down = new Map();
    for (const [, line] of ordered) {
      for (const [t, v] of line.values) {
        const side = v >= 0 ? up : down;
        side.set(t, (side.get(t) || 0) + v);
      }
    }
    const high = roundUp(Math.max(0, ...up.values()));
    const low = -roundUp(-Math.min(0, ...down.values())) * (down.size ? 1 : 0);
    const {chart, x, y} = frame(first, last, low, high, units.get(metric));
    const width = Math.max(1, x(first + step) - x(first) - 1);
    const baseUp = new Map(), baseDown = new Map();
    const legend = document.createElement("div");
    legend.className = "legend";
    for (const [name, line] of ordered) {
      const color = colorOf(line.license);
      const group = svg("g", {class: "series", "data-line": name, fill: color});
      if (line.kind === "ADJUSTMENT") group.setAttribute("fill-opacity", "0.55");
      for (const [t, v] of [...line.values].sort((a, b) => a[0] - b[0])) {
        const base = v >= 0 ? baseUp : baseDown;
        const start = base.get(t) || 0, end = start + v;
        base.set(t, end);
        const top = y(Math.max(start, end)), bottom = y(Math.min(start, end));
        const bar = svg("rect", {x: x(t), y: top, width, height: Math.max(1, bottom - top)});
        bar.appendChild(svg("title", {}, name + ": " + v.toLocaleString("en") + " in the "
                                          + duration(step) + " from " + utc(t) + " UTC"));
        group.appendChild(bar);
      }
      chart.appendChild(group);
      const entry = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color;
      if (line.kind === "ADJUSTMENT") swatch.style.opacity = "0.55";
      entry.append(swatch, name);
      legend.appendChild(entry);
    }
    if (lines.size > drawn.size) {
      const more = document.createElement("span");
      more.className = "muted";
      more.textContent = "+" + (lines.size - drawn.size) + " smaller series: filter by license";
      legend.appendChild(more);
    }
    const figure = document.createElement("div");
    figure.className = "chart";
    figure.dataset.metric = metric;
    const title = document.createElement("h3");
    title.textContent = metric + (units.get(metric) ? " (" + units.get(metric) + ")" : "");
    figure.append(title, chart, legend);
    charts.push(figure);
  }
  box.replaceChildren(...charts);
}

function duration(seconds) {
  if (seconds % 86400 === 0) return seconds === 86400 ? "day" : seconds / 86400 + " days";
  if (seconds % 3600 === 0) return seconds === 3600 ? "hour" : seconds / 3600 + " hours";
  if (seconds % 60 === 0) return seconds === 60 ? "minute" : seconds / 60 + " minutes";
  return seconds + " s";
}

// The budget: events offered and stored per minute, the limit, and the minutes with 429s.
function drawBudget(answer, range) {
  const box = $("budget-chart");
  const limit = answer.limit;
  const minutes = answer.minutes.map(m => ({...m, t: Date.parse(m.minute) / 1000}));
  const now = Math.floor(Date.now() / 60000) * 60;
  const current = minutes.find(m => m.t === now);
  const thisMinute = current ? current.offered - current.refused : 0;
  document.querySelector(".counter[data-name=this_minute] b").textContent =
    limit ? thisMinute + " of " + limit : String(thisMinute);
  const limited = minutes.reduce((n, m) => n + m.rate_limited_requests, 0);
  const refused = minutes.reduce((n, m) => n + m.refused, 0);
  const note = $("budget-note");
  note.className = limited ? "late" : "muted";
  note.textContent = (limit ? "Doow takes at most " + limit.toLocaleString("en")
                              + " events a minute per key (this server: --events-per-minute). "
                            : "No event budget on this server (--events-per-minute 0). ")
    + (limited ? limited + (limited === 1 ? " request was" : " requests were")
                 + " refused with 429 in this range (" + refused + " events): their usage "
                 + "arrives late, after the wait Doow asks for. Fix: aggregate usage (one "
                 + "event per stream a minute), or spread it out."
               : "No request was refused for the budget in this range.");
  if (!minutes.length) {
    const empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = "Nothing sent in this range.";
    box.replaceChildren(empty);
    return;
  }
  const [first, last] = span(minutes, 60, range);
  const high = roundUp(Math.max(limit || 0, ...minutes.map(m => m.offered)) * 1.1);
  const {chart, x, y} = frame(first, last, 0, high, "events per minute");
  const width = Math.max(1, x(first + 60) - x(first) - 1);
  const offered = svg("g", {class: "offered", fill: "#bfdbfe"});
  const stored = svg("g", {class: "stored", fill: "#2563eb"});
  const marks = svg("g", {class: "rate-limited", fill: "#b91c1c"});
  for (const m of minutes) {
    const bar = svg("rect", {x: x(m.t), y: y(m.offered), width, height: y(0) - y(m.offered)});
    bar.appendChild(svg("title", {}, utc(m.t) + " UTC: " + m.offered + " offered, " + m.stored
      + " stored, " + m.duplicates + " duplicates, " + m.refused + " refused, "
      + m.rate_limited_requests + " requests answered 429"));
    offered.appendChild(bar);
    stored.appendChild(svg("rect", {x: x(m.t), y: y(m.stored), width,
                                    height: y(0) - y(m.stored)}));
    if (m.rate_limited_requests) {
      const cx = x(m.t) + width / 2;
      marks.appendChild(svg("path", {d: `M${cx - 5},${TOP + 2} h10 l-5,8 z`}));
    }
  }
  chart.append(offered, stored, marks);
  if (limit) {
    chart.appendChild(svg("line", {x1: LEFT, x2: W - RIGHT, y1: y(limit), y2: y(limit),
                                   stroke: "#b91c1c", "stroke-width": 2, "stroke-dasharray": "6 4",
                                   class: "limit"}));
    chart.appendChild(svg("text", {x: W - RIGHT, y: y(limit) - 4, "text-anchor": "end",
                                   "font-size": FONT, fill: "#b91c1c"},
                          "limit " + limit.toLocaleString("en")));
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const [label, color] of [["offered", "#bfdbfe"], ["stored", "#2563eb"],
                                ["429 in that minute", "#b91c1c"]]) {
    const entry = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color;
    entry.append(swatch, label);
    legend.appendChild(entry);
  }
  box.replaceChildren(chart, legend);
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
    const range = {since: chosen.since, until: chosen.until};
    const [stats, all, usage, series, events, rejections, refusals, problems, minutes] =
      await Promise.all([
        get("/api/stats"),
        get("/api/usage"),
        get("/api/usage", {...chosen, per_kind: "true"}),
        get("/api/series", chosen),
        get("/api/events", {...chosen, limit: PAGE_SIZE, before: eventsPager.before}),
        get("/api/rejections", {...range, limit: PAGE_SIZE, before: rejectionsPager.before}),
        get("/api/refusals", {...range, status: $("f-status").value, limit: PAGE_SIZE,
                              before: refusalsPager.before}),
        get("/api/problems", range),
        get("/api/minutes", range),
      ]);
    drawProblems(problems.problems);
    for (const counter of document.querySelectorAll(".counter")) {
      if (counter.dataset.name in stats) {
        counter.querySelector("b").textContent = stats[counter.dataset.name].toLocaleString("en");
      }
    }
    for (const name of ["rejected", "refused_requests"]) {
      const counter = document.querySelector(`.counter[data-name=${name}]`);
      counter.classList.toggle("bad", stats[name] > 0);
    }
    setOptions($("f-metric"), [...new Set(all.usage.map(u => u.metric))].sort());
    setOptions($("f-license"), [...new Set(all.usage.map(u => u.license_id))].sort());
    const units = new Map(all.usage.filter(u => u.unit).map(u => [u.metric, u.unit]));
    drawBudget(minutes, range);
    drawCharts(series, units, range);
    const extra = usage.usage.length - MAX_ROWS;
    $("usage-more").textContent = extra > 0 ? extra + " more rows: filter to see them" : "";
    fill("usage", usage.usage.slice(0, MAX_ROWS).map(u =>
      row([u.metric, u.license_id, u.kind, u.total, u.unit, u.events, utc(u.last_received_at)],
          [null, null, null, "num", null, "num"], u.kind === "ADJUSTMENT" ? "adjustment" : "")));
    fill("events", events.events.map(e =>
      row([utc(e.received_at), e.kind, e.metric, e.license_id, e.quantity, e.unit,
           Object.entries(e.attribution).map(([k, v]) => k + "=" + v).join(", "), e.event_id],
          [null, null, null, null, "num", null, null, "id"],
          e.kind === "ADJUSTMENT" ? "adjustment" : "")));
    eventsPager.show(events.events.length, events.next_before);
    fill("rejections", rejections.rejections.map(r =>
      row([utc(r.received_at), r.metric, r.license_id, r.quantity, r.reason, r.fix, r.event_id],
          [null, null, null, "num", null, "fix", "id"])));
    rejectionsPager.show(rejections.rejections.length, rejections.next_before);
    fill("refusals", refusals.refusals.map(r =>
      row([utc(r.received_at), r.status, r.method + " " + r.path, r.key_prefix || "(none)",
           r.events, r.reason, r.fix], [null, "num", null, "key", "num", null, "fix"])));
    refusalsPager.show(refusals.refusals.length, refusals.next_before);
    const reasons = Object.entries(stats.rejected_by_reason).map(([k, n]) => k + ": " + n);
    $("reasons").textContent =
      reasons.length ? "By field: " + reasons.join(", ") : "None rejected.";
    status.textContent = "updated " + utc(new Date().toISOString()) + " UTC";
    status.className = "";
  } catch (error) {
    if (error instanceof KeyRefused) askForKey(error.message);
    else { status.textContent = error.message; status.className = "error"; }
  } finally {
    running = false;
    if (again) { again = false; refresh(); }
  }
}

function showSections() {
  const show = $("f-show").value;
  for (const section of document.querySelectorAll("section[data-show]")) {
    section.hidden = Boolean(show) && section.dataset.show !== show;
  }
}

$("filters").addEventListener("change", event => {
  if (event.target.id === "f-range") {
    const custom = $("f-range").value === "custom";
    $("custom-since").hidden = !custom;
    $("custom-until").hidden = !custom;
  }
  showSections();
  eventsPager.reset();
  rejectionsPager.reset();
  refusalsPager.reset();
  refresh();
});
$("refusal-filter").addEventListener("change", () => { refusalsPager.reset(); refresh(); });
for (const form of ["filters", "refusal-filter"]) {
  $(form).addEventListener("submit", event => event.preventDefault());
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
