// Tributary's live page: polls the REST API every second with the key the user gave, and
// draws each pipeline's status and the latest window of its results; no framework, no
// build step. See mod.rs for the contract.
"use strict";

const POLL_MS = 1000;
const MAX_BARS = 20;
const KEY_STORE = "tributary.key";
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const cards = new Map(); // pipeline name -> { root, fields, chart, select, epoch, rows }

// ---------------------------------------------------------------- the key

function takeKeyFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get("key");
  if (key) {
    sessionStorage.setItem(KEY_STORE, key);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function askForKey(message) {
  $("key-prompt").textContent = message;
  $("key-form").hidden = false;
  setState("API key needed");
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key-input").value.trim();
  if (key) {
    sessionStorage.setItem(KEY_STORE, key);
    $("key-input").value = "";
    $("key-form").hidden = true;
    poll();
  }
});

$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORE);
  askForKey("API key (a key with the read scope):");
});

// ---------------------------------------------------------------- requests

class HttpError extends Error {
  constructor(status, text) {
    super(text);
    this.status = status;
  }
}

// GET `path` as JSON (or text), with the bearer key; an error answer becomes an HttpError
// carrying its problem document's title and detail.
async function get(path, { auth = true, text = false } = {}) {
  const headers = {};
  if (auth) headers.Authorization = "Bearer " + sessionStorage.getItem(KEY_STORE);
  const response = await fetch(path, { headers, cache: "no-store" });
  if (!response.ok) {
    let message = response.statusText;
    try {
      const problem = await response.json();
      message = [problem.title, problem.detail].filter(Boolean).join(": ") || message;
    } catch (_) { /* not a problem document */ }
    throw new HttpError(response.status, `${path}: ${response.status} ${message}`);
  }
  return text ? response.text() : response.json();
}

// ---------------------------------------------------------------- polling

let timer = null;

async function poll() {
  clearTimeout(timer);
  if (!sessionStorage.getItem(KEY_STORE)) {
    askForKey("API key (a key with the read scope):");
    return;
  }
  try {
    const [pipelines, letters, metrics] = await Promise.all([
      get("/v1/pipelines"),
      get("/v1/dead-letters?limit=20"),
      get("/metrics", { auth: false, text: true }).catch(() => null),
    ]);
    const lags = metrics === null ? null : lagsFrom(metrics);
    await Promise.all(pipelines.pipelines.map((p) => refreshResults(p)));
    renderPipelines(pipelines.pipelines, lags);
    renderDeadLetters(letters.dead_letters);
    showError(null);
    setState("updated " + new Date().toLocaleTimeString());
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error.status === 401) {
      askForKey("The key was refused (401): paste a valid API key.");
      return;
    }
    if (error.status === 403) {
      askForKey("The key lacks the read scope (403): paste another key.");
      return;
    }
    showError(error.message || String(error));
    setState("error");
  }
  timer = setTimeout(poll, POLL_MS);
}

function setState(text) {
  $("state").textContent = text;
}

function showError(message) {
  $("error").hidden = message === null;
  $("error").textContent = message || "";
}

// The records not read yet per pipeline: the sum of `tributary_task_lag_records` over the
// tasks of this node named after the pipeline (`name` or `name#partition`).
function lagsFrom(text) {
  const lags = new Map();
  const line = /^tributary_task_lag_records\{([^}]*)\}\s+(\S+)/;
  for (const l of text.split("\n")) {
    const m = line.exec(l);
    if (!m) continue;
    const task = /task="([^"]*)"/.exec(m[1]);
    if (!task) continue;
    const pipeline = task[1].split("#")[0];
    lags.set(pipeline, (lags.get(pipeline) || 0) + Number(m[2]));
  }
  return lags;
}

// Reads the pipeline's recent results when a checkpoint committed since the last read.
async function refreshResults(p) {
  const card = cardFor(p);
  const epoch = p.status ? p.status.epoch : null;
  if (card.epoch === epoch && card.rows !== null) return;
  const span = spanOf(p.window);
  const watermark = p.status && p.status.watermark ? Date.parse(p.status.watermark) : NaN;
  let path = `/v1/pipelines/${encodeURIComponent(p.name)}/results?limit=1000`;
  if (!Number.isNaN(watermark)) path += `&from=${watermark - 2 * span}`;
  const answer = await get(path);
  card.rows = p.window.type === "session" ? latestPerKey(answer.results) : latestWindow(answer.results);
  card.session = p.window.type === "session";
  card.epoch = epoch;
}

function spanOf(window) {
  if (window.size_ms) return window.size_ms;
  if (window.gap_ms) return 10 * window.gap_ms;
  return 3600000;
}

function latestWindow(rows) {
  if (rows.length === 0) return [];
  const starts = rows.map((r) => Date.parse(r.window_start));
  const last = Math.max(...starts);
  return rows.filter((_, i) => starts[i] === last);
}

// Session windows differ per key: each key's latest session.
function latestPerKey(rows) {
  const latest = new Map();
  for (const r of rows) {
    const seen = latest.get(r.key);
    if (!seen || Date.parse(r.window_start) >= Date.parse(seen.window_start)) latest.set(r.key, r);
  }
  return [...latest.values()];
}

// ---------------------------------------------------------------- pipelines

function cardFor(p) {
  let card = cards.get(p.name);
  if (card) return card;
  const root = el("article", { class: "pipeline", "data-pipeline": p.name });
  root.append(el("h3", {}, p.name));
  const stats = el("dl", { class: "stats" });
  const fields = {};
  for (const [name, label] of [
    ["lag", "lag"],
    ["watermark", "watermark"],
    ["checkpoint", "last checkpoint"],
    ["counters", "late / duplicates"],
  ]) {
    stats.append(el("dt", {}, label));
    fields[name] = el("dd", { class: name });
    stats.append(fields[name]);
  }
  root.append(stats);
  const title = el("div", { class: "chart-title" });
  const select = el("select", { "aria-label": "aggregate" });
  for (const name of Object.keys(p.aggregates)) select.append(el("option", { value: name }, name));
  select.addEventListener("change", () => drawChart(card));
  fields.window = el("span", { class: "window" });
  title.append(select, " per key, ", fields.window);
  const chart = document.createElementNS(SVG, "svg");
  chart.setAttribute("class", "chart");
  chart.setAttribute("role", "img");
  root.append(title, chart);
  $("pipelines").append(root);
  card = { root, fields, chart, select, epoch: undefined, rows: null, session: false };
  cards.set(p.name, card);
  return card;
}

function renderPipelines(pipelines, lags) {
  const now = Date.now();
  for (const p of pipelines) {
    const card = cardFor(p);
    const s = p.status;
    const lag = lags && lags.has(p.name) ? lags.get(p.name) : null;
    card.fields.lag.textContent = lag === null ? "—" : `${lag} record${lag === 1 ? "" : "s"} not read yet`;
    if (s && s.watermark) {
      const behind = now - Date.parse(s.watermark);
      card.fields.watermark.textContent = `${s.watermark} (${duration(behind)} behind now)`;
    } else {
      card.fields.watermark.textContent = "— (no event yet)";
    }
    card.fields.checkpoint.textContent = s
      ? `${s.committed_at} (${duration(now - Date.parse(s.committed_at))} ago, epoch ${s.epoch})`
      : "— (none yet)";
    card.fields.counters.textContent = s ? `${s.late_events} / ${s.duplicates}` : "—";
    drawChart(card);
  }
}

function drawChart(card) {
  const aggregate = card.select.value;
  const rows = (card.rows || [])
    .filter((r) => typeof r[aggregate] === "number")
    .sort((a, b) => b[aggregate] - a[aggregate]);
  if (card.session) {
    card.fields.window.textContent = "in each key's latest session";
  } else {
    card.fields.window.textContent = rows.length
      ? `window ${rows[0].window_start} – ${rows[0].window_end}${rows[0].closed ? " (closed)" : " (open)"}`
      : "";
  }
  const shown = rows.slice(0, MAX_BARS);
  const chart = card.chart;
  chart.replaceChildren();
  chart.dataset.keys = String(rows.length);
  const rowHeight = 18, labelWidth = 130, barWidth = 170, width = 360;
  const height = Math.max(1, shown.length) * rowHeight + (rows.length > MAX_BARS ? rowHeight : 0);
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.setAttribute("height", String(height));
  if (shown.length === 0) {
    chart.append(svg("text", { x: 0, y: 13, class: "value" }, "no results yet"));
    return;
  }
  const max = Math.max(...shown.map((r) => Math.abs(r[aggregate])), 1e-9);
  shown.forEach((r, i) => {
    const y = i * rowHeight;
    const value = r[aggregate];
    const w = Math.max(1, (Math.abs(value) / max) * barWidth);
    const label = keyLabel(r);
    chart.append(svg("text", { x: labelWidth - 6, y: y + 13, "text-anchor": "end" }, clip(label, 20)));
    const bar = svg("rect", { class: "bar", x: labelWidth, y: y + 3, width: w, height: rowHeight - 6, "data-key": label });
    bar.append(svg("title", {}, `${label}: ${value}`));
    chart.append(bar);
    chart.append(svg("text", { x: labelWidth + w + 4, y: y + 13, class: "value" }, number(value)));
  });
  if (rows.length > MAX_BARS) {
    chart.append(svg("text", { x: labelWidth, y: height - 5, class: "value" }, `+${rows.length - MAX_BARS} more keys`));
  }
}

function keyLabel(row) {
  return row.key === "" || row.key === undefined ? "(all)" : String(row.key);
}

// ---------------------------------------------------------------- dead letters

function renderDeadLetters(letters) {
  const body = $("dead-letters").tBodies[0];
  body.replaceChildren(
    ...letters.map((l) => {
      const tr = el("tr", { class: "dead-letter", "data-id": l.id });
      tr.append(
        el("td", {}, l.at),
        el("td", { class: "stream" }, l.stream),
        el("td", {}, l.origin && l.origin.kind ? l.origin.kind : ""),
        el("td", { class: "reason" }, clip(l.reason, 300)),
      );
      return tr;
    }),
  );
  $("dead-letters-empty").hidden = letters.length > 0;
}

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

function clip(text, n) {
  text = String(text);
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function number(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

function duration(ms) {
  if (Number.isNaN(ms)) return "?";
  const s = Math.abs(ms) / 1000;
  const sign = ms < 0 ? "-" : "";
  if (s < 60) return `${sign}${s.toFixed(1)} s`;
  if (s < 3600) return `${sign}${(s / 60).toFixed(1)} min`;
  return `${sign}${(s / 3600).toFixed(1)} h`;
}

takeKeyFromFragment();
poll();
