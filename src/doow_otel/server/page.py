"""The page at `/`: recent received events per metric and license, refreshing live.

The page itself holds no data. It reads the key from the URL fragment (`/#key=dk_...`,
never sent to the server, so it is in no request line or log) or asks for it, and polls
the authenticated JSON API. Everything shown goes through `textContent`: nothing a
client sent is ever interpreted as HTML.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Doow (local) - received usage</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2rem; color: #1d2430; }
  h1 { font-size: 1.3rem; margin-bottom: .2rem; }
  h2 { font-size: 1rem; margin-top: 1.6rem; }
  .muted { color: #6b7280; }
  table { border-collapse: collapse; margin-top: .5rem; min-width: 40rem; }
  th, td { text-align: left; padding: .3rem .8rem; border-bottom: 1px solid #e5e7eb; }
  th { background: #f3f4f6; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  #status.error { color: #b91c1c; }
  form { margin: 1rem 0; }
</style>
</head>
<body>
<h1>Received usage</h1>
<p class="muted">A local Doow-compatible server. Refreshes every second.
  <span id="status">connecting...</span></p>
<form id="login" hidden>
  <label>API key <input id="key" type="password" autocomplete="off" placeholder="dk_..."></label>
  <button type="submit">Show</button>
</form>
<h2>Totals per metric and license</h2>
<table id="usage"><thead><tr><th>Metric</th><th>License</th><th>Total</th><th>Unit</th>
  <th>Events</th><th>Last received</th></tr></thead><tbody></tbody></table>
<h2>Recent events</h2>
<table id="events"><thead><tr><th>Received</th><th>Metric</th><th>License</th>
  <th>Quantity</th><th>Attribution</th><th>Event id</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
let key = new URLSearchParams(location.hash.slice(1)).get("key")
  || sessionStorage.getItem("doowKey");
const status = document.getElementById("status");

function row(cells, numeric) {
  const tr = document.createElement("tr");
  cells.forEach((value, i) => {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    if (numeric.includes(i)) td.className = "num";
    tr.appendChild(td);
  });
  return tr;
}

function fill(id, rows, numeric) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows.map(cells => row(cells, numeric)));
}

async function get(path) {
  const answer = await fetch(path, {headers: {Authorization: "Bearer " + key}});
  if (answer.status === 401) throw new Error("the key was not accepted");
  if (!answer.ok) throw new Error(path + " answered " + answer.status);
  return answer.json();
}

async function refresh() {
  if (!key) { document.getElementById("login").hidden = false; status.textContent = ""; return; }
  try {
    const [usage, events] = await Promise.all([get("/api/usage"), get("/api/events?limit=50")]);
    fill("usage", usage.usage.map(u =>
      [u.metric, u.license_id, u.total, u.unit, u.events, u.last_received_at]), [2, 4]);
    fill("events", events.events.map(e =>
      [e.received_at, e.metric, e.license_id, e.quantity,
       Object.entries(e.attribution).map(([k, v]) => k + "=" + v).join(", "), e.event_id]), [3]);
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.className = "";
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  }
}

document.getElementById("login").addEventListener("submit", event => {
  event.preventDefault();
  key = document.getElementById("key").value.trim();
  sessionStorage.setItem("doowKey", key);
  document.getElementById("login").hidden = true;
  refresh();
});
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
