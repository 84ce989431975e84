// cypid's web console: plain JavaScript, no build step. Reads the broker's JSON under /api with
// fetch, draws live charts with uPlot (vendored), and sends the actions of qpid-config (add, delete,
// purge a queue; bind, unbind) as JSON POSTs that the broker runs through its QMF methods.
"use strict";

const params = new URLSearchParams(location.search);
const INTERVAL = Math.max(250, Number(params.get("interval")) || 2000);   // ms between polls
const HISTORY = 150;                                                       // chart points kept
const PAGES = ["overview", "queues", "exchanges", "connections", "ha"];

const state = {
  page: "overview",
  last: null,              // previous overview totals {t, enq, deq}
  series: [[], [], [], []], // t, in/s, out/s, depth
  queuePrev: new Map(),    // queue name -> {t, enq, deq}
  exchangePrev: new Map(), // exchange name -> {t, rcv}
  busy: false,             // a poll is under way
  again: false,            // poll once more when it ends (the page changed meanwhile)
  charts: null,
};

// -- helpers -------------------------------------------------------------------------------------
async function getJSON(path) {
  const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  const body = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function postJSON(path, payload) {
  const r = await fetch(path, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(payload)});
  const body = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function num(n) { return n == null ? "" : Number(n).toLocaleString("en-US"); }
function rate(n) { return n == null ? "" : n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US"); }
function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
}

function cell(value, numeric) { return el("td", numeric ? {class: "n"} : {}, value); }

function say(text, ok) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = text ? (ok ? "ok" : "error") : "";
}

// rate per second of a counter since the previous reading kept in `prev` under `key`
function perSecond(prev, key, t, value) {
  const p = prev.get(key);
  prev.set(key, {t, v: value});
  if (!p || t <= p.t || value < p.v) return null;
  return (value - p.v) / (t - p.t);
}

// -- charts --------------------------------------------------------------------------------------
// the chart boxes' inner width (their padding is 8px a side); the main area's when they are hidden
function chartWidth() {
  const box = document.getElementById("chart-rates").clientWidth || document.querySelector("main").clientWidth - 40;
  return Math.max(300, box - 16);
}

function makeCharts() {
  const rates = new uPlot({
    width: chartWidth(), height: 220, scales: {x: {time: true}},
    series: [{}, {label: "in/s (enqueued)", stroke: "#2c7be5", width: 2},
             {label: "out/s (dequeued)", stroke: "#e5532c", width: 2}],
    axes: [{}, {size: 70}],
  }, [[], [], []], document.getElementById("chart-rates"));
  const depth = new uPlot({
    width: chartWidth(), height: 180, scales: {x: {time: true}},
    series: [{}, {label: "messages on queues", stroke: "#2e8b57", width: 2, fill: "rgba(46,139,87,0.12)"}],
    axes: [{}, {size: 70}],
  }, [[], []], document.getElementById("chart-depth"));
  window.addEventListener("resize", () => {
    rates.setSize({width: chartWidth(), height: 220});
    depth.setSize({width: chartWidth(), height: 180});
  });
  return {rates, depth};
}

// -- pages ---------------------------------------------------------------------------------------
function showOverview(o) {
  const t = o.time, tot = o.totals;
  if (state.last && t > state.last.t) {
    const dt = t - state.last.t;
    const s = state.series;
    s[0].push(t);
    s[1].push(Math.max(0, (tot.msgTotalEnqueues - state.last.enq) / dt));
    s[2].push(Math.max(0, (tot.msgTotalDequeues - state.last.deq) / dt));
    s[3].push(tot.msgDepth);
    if (s[0].length > HISTORY) s.forEach(a => a.shift());
    if (state.charts) {
      state.charts.rates.setData([s[0], s[1], s[2]]);
      state.charts.depth.setData([s[0], s[3]]);
    }
  }
  state.last = {t, enq: tot.msgTotalEnqueues, deq: tot.msgTotalDequeues};
  const s = state.series, n = s[0].length;
  const cards = [
    ["Messages in/s", n ? rate(s[1][n - 1]) : "…"], ["Messages out/s", n ? rate(s[2][n - 1]) : "…"],
    ["Queued messages", num(tot.msgDepth)], ["Queued bytes", bytes(tot.byteDepth)],
    ["Connections", num(o.counts.connections)], ["Sessions", num(o.counts.sessions)],
    ["Links", num(o.counts.links)], ["Queues", num(o.counts.queues)], ["Exchanges", num(o.counts.exchanges)],
    ["Journal files", num(o.journal.files)], ["Journal size", bytes(o.journal.bytes)],
    ["Journal syncs", num(o.journal.syncs)], ["Memory (RSS)", bytes(o.memory.rss_bytes)],
    ["Uptime", duration(o.uptime_seconds)], ["HA role", o.ha.role || "?"], ["Version", o.version],
  ];
  document.getElementById("overview-cards").replaceChildren(...cards.map(([label, value]) =>
    el("div", {class: "card"}, el("div", {class: "label"}, label), el("div", {class: "value"}, value))));
  const st = document.getElementById("status");
  st.textContent = o.ready ? "ready" : "not ready: " + o.reason;
  st.className = "status " + (o.ready ? "ready" : "not-ready");
}

async function action(path, payload, done) {
  try {
    await postJSON(path, payload);
    say(done, true);
  } catch (e) {
    say(e.message, false);
  }
  poll();
}

async function loadQueues() {
  const filter = document.getElementById("queue-filter").value;
  const q = await getJSON("/api/queues?limit=500&filter=" + encodeURIComponent(filter));
  document.getElementById("queue-count").textContent =
    q.total > q.queues.length ? `${q.queues.length} of ${q.total} shown` : `${q.total} queues`;
  fillTable("queues-table", q.queues.map(x => {
    const inRate = perSecond(state.queuePrev, x.name + "\0in", q.time, x.msgTotalEnqueues);
    const outRate = perSecond(state.queuePrev, x.name + "\0out", q.time, x.msgTotalDequeues);
    return el("tr", {"data-queue": x.name},
      cell(x.name), cell(x.durable ? "yes" : ""), cell(num(x.msgDepth), true), cell(bytes(x.byteDepth), true),
      cell(rate(inRate), true), cell(rate(outRate), true), cell(num(x.msgTotalEnqueues), true),
      cell(num(x.consumerCount), true), cell(num(x.bindingCount), true),
      el("td", {},
        el("button", {"data-action": "purge", "data-queue": x.name,
          onclick: () => action("/api/queue/purge", {name: x.name}, `Queue ${x.name} purged`)}, "Purge"), " ",
        el("button", {class: "danger", "data-action": "delete", "data-queue": x.name,
          onclick: () => confirm(`Delete queue ${x.name}?`) &&
            action("/api/queue/delete", {name: x.name}, `Queue ${x.name} deleted`)}, "Delete")));
  }));
}

async function loadExchanges() {
  const x = await getJSON("/api/exchanges");
  fillTable("exchanges-table", x.exchanges.map(e => el("tr", {"data-exchange": e.name},
    cell(e.name || "(default)"), cell(e.type), cell(e.durable ? "yes" : ""), cell(num(e.bindingCount), true),
    cell(num(e.msgReceives), true), cell(rate(perSecond(state.exchangePrev, e.name, x.time, e.msgReceives)), true),
    cell(num(e.msgRoutes), true), cell(num(e.msgDrops), true))));
  document.getElementById("bindings-count").textContent =
    x.bindings_total > x.bindings.length ? `(${x.bindings.length} of ${x.bindings_total})` : `(${x.bindings_total})`;
  fillTable("bindings-table", x.bindings.map(b => el("tr", {},
    cell(b.exchange), cell(b.queue), cell(b.key),
    el("td", {}, el("button", {"data-action": "unbind", onclick: () =>
      action("/api/unbind", {exchange: b.exchange, queue: b.queue, key: b.key}, "Binding removed")}, "Unbind")))));
}

async function loadConnections() {
  const c = await getJSON("/api/connections");
  fillTable("connections-table", c.connections.map(x => el("tr", {},
    cell(x.address), cell(x.authIdentity), cell(x.remoteProperties && x.remoteProperties["qpid.client_process"] || ""),
    cell(x.saslMechanism), cell(bytes(x.bytesFromClient), true), cell(bytes(x.bytesToClient), true),
    cell(num(x.msgsFromClient), true), cell(num(x.msgsToClient), true))));
  fillTable("sessions-table", c.sessions.map(s => el("tr", {},
    cell(s.name), cell(s.connection), cell(s.channelId, true), cell(num(s.unackedMessages), true))));
  fillTable("links-table", c.links.map(l => el("tr", {},
    cell(l.name), cell(l.direction), cell(l.session), cell(l.source), cell(l.target), cell(num(l.transfers), true))));
}

async function loadHa() {
  const h = await getJSON("/api/ha");
  const rows = Object.entries(h).map(([k, v]) =>
    el("tr", {}, el("th", {}, k), cell(typeof v === "object" ? JSON.stringify(v) : String(v))));
  fillTable("ha-table", rows);
}

const LOADERS = {queues: loadQueues, exchanges: loadExchanges, connections: loadConnections, ha: loadHa};

// -- the loop ------------------------------------------------------------------------------------
async function poll() {
  // One poll at a time; a page change during a poll asks for another one, and a poll marks the
  // page loaded only if it loaded the page still shown (else a slow poll of the previous page
  // would mark the new one loaded before its tables were ever filled).
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  state.again = false;
  const page = state.page;
  try {
    showOverview(await getJSON("/api/overview"));
    const loader = LOADERS[page];
    if (loader) await loader();
    if (page === state.page) document.body.dataset.loaded = page;
  } catch (e) {
    const st = document.getElementById("status");
    st.textContent = "no answer: " + e.message;
    st.className = "status not-ready";
  } finally {
    state.busy = false;
    if (state.again) poll();
  }
}

function route() {
  const page = (location.hash.match(/^#\/(\w+)/) || [])[1];
  state.page = PAGES.includes(page) ? page : "overview";
  for (const p of PAGES) {
    document.getElementById("page-" + p).classList.toggle("active", p === state.page);
    document.querySelector(`nav a[data-page=${p}]`).classList.toggle("active", p === state.page);
  }
  delete document.body.dataset.loaded;
  say("");
  poll();
}

document.getElementById("create-queue-form").addEventListener("submit", ev => {
  ev.preventDefault();
  const name = document.getElementById("create-queue-name").value.trim();
  const durable = document.getElementById("create-queue-durable").checked;
  action("/api/queue/create", {name, durable}, `Queue ${name} added`);
});
document.getElementById("bind-form").addEventListener("submit", ev => {
  ev.preventDefault();
  const v = id => document.getElementById(id).value.trim();
  action("/api/bind", {exchange: v("bind-exchange"), queue: v("bind-queue"), key: v("bind-key")}, "Bound");
});
document.getElementById("queue-filter-form").addEventListener("submit", ev => { ev.preventDefault(); poll(); });
window.addEventListener("hashchange", route);
state.charts = makeCharts();
route();
setInterval(poll, INTERVAL);
