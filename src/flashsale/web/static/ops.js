// The operator page: polls GET /api/v1/ops/live (admin) once a second and charts rates
// computed here from consecutive snapshots of cumulative counters. No libraries.
"use strict";

const LIVE_URL = "/api/v1/ops/live";
const TOKEN_KEY = "spillway.adminToken";
const POLL_MS = 1000;
const HISTORY = 120; // samples kept: two minutes at one a second
const PALETTE_SIZE = 6;
const REASONS = ["sold_out", "limit_exceeded", "sale_not_active", "rate_limited"];

const snapshots = []; // the last HISTORY answers, oldest first
let timer = null;

const $ = (id) => document.getElementById(id);

// ---- token -------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("dashboard").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setStatus("not connected", "");
  $("token").focus();
}

function showDashboard() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("forget").hidden = false;
  snapshots.length = 0;
  poll();
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = "status " + kind;
}

// ---- polling -----------------------------------------------------------------------

async function poll() {
  try {
    const response = await fetch(LIVE_URL, {
      headers: { Authorization: "Bearer " + token() },
      cache: "no-store",
    });
    if (response.status === 401 || response.status === 403) {
      showLogin("That token was refused.");
      return;
    }
    if (!response.ok) {
      throw new Error("HTTP " + response.status);
    }
    snapshots.push(await response.json());
    if (snapshots.length > HISTORY) {
      snapshots.shift();
    }
    setStatus("live · " + new Date().toLocaleTimeString(), "ok");
    render();
  } catch (error) {
    setStatus("unavailable (" + error.message + "), retrying", "bad");
  }
  timer = setTimeout(poll, POLL_MS);
}

// ---- series from snapshots ---------------------------------------------------------

// One value per consecutive pair of snapshots; counters that went backwards (a restart)
// count as zero rather than as a negative rate.
function rates(pick) {
  const values = [];
  for (let i = 1; i < snapshots.length; i++) {
    const before = snapshots[i - 1];
    const after = snapshots[i];
    const seconds = (after.at_ms - before.at_ms) / 1000;
    const delta = pick(before, after);
    values.push(seconds > 0 && delta !== null ? Math.max(0, delta) / seconds : null);
  }
  return values;
}

function levels(pick) {
  return snapshots.slice(1).map(pick);
}

function salesById(snapshot) {
  return new Map(snapshot.sales.map((sale) => [sale.id, sale]));
}

// Refusals summed over the sales present in both snapshots (sales come and go).
function rejectDelta(before, after, reason) {
  const earlier = salesById(before);
  let total = 0;
  for (const sale of after.sales) {
    const old = earlier.get(sale.id);
    if (old) {
      total += Math.max(0, sale.rejected[reason] - old.rejected[reason]);
    }
  }
  return total;
}

function cacheKey(entry) {
  return entry.tier + " · " + entry.namespace;
}

function cacheRatios() {
  const keys = new Set();
  snapshots.forEach((s) => s.cache.forEach((entry) => keys.add(cacheKey(entry))));
  return [...keys].sort().map((key) => {
    const values = [];
    for (let i = 1; i < snapshots.length; i++) {
      const find = (s) => s.cache.find((entry) => cacheKey(entry) === key);
      const before = find(snapshots[i - 1]);
      const after = find(snapshots[i]);
      const hits = after && before ? after.hits - before.hits : 0;
      const lookups = after && before ? hits + after.misses - before.misses : 0;
      values.push(lookups > 0 ? Math.max(0, hits) / lookups : null);
    }
    return { label: key, values };
  });
}

// ---- rendering ---------------------------------------------------------------------

function render() {
  const latest = snapshots[snapshots.length - 1];
  const fmt = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString());
  const last = (values) => values[values.length - 1];

  const admissions = rates((a, b) => b.admitted - a.admitted);
  chart("admissions", [{ label: "admitted / s", values: admissions }]);
  $("now-admissions").textContent = fmt(last(admissions)) + " / s";

  const rejects = REASONS.map((reason) => ({
    label: reason.replace(/_/g, " "),
    values: rates((a, b) => rejectDelta(a, b, reason)),
  }));
  chart("rejects", rejects);
  $("now-rejects").textContent =
    fmt(rejects.reduce((sum, series) => sum + (last(series.values) || 0), 0)) + " / s";

  const depth = levels((s) => s.outbox.depth);
  chart("queue", [
    { label: "waiting", values: depth },
    { label: "taken, not acknowledged", values: levels((s) => s.outbox.pending) },
  ]);
  $("now-queue").textContent = fmt(latest.outbox.depth) + " entries";

  const drain = rates((a, b) => b.orders_persisted - a.orders_persisted);
  chart("drain", [{ label: "persisted / s", values: drain }]);
  $("now-drain").textContent = fmt(last(drain)) + " / s";

  const live = latest.sales.filter((sale) => sale.status !== "ended");
  const largest = Math.max(1, ...live.map((sale) => sale.stock));
  chart("stock", live.map((sale) => ({
    label: "sale " + sale.id + " (" + sale.status.replace("_", " ") + ")",
    values: levels((s) => {
      const found = salesById(s).get(sale.id);
      return found ? found.remaining : null;
    }),
  })), { max: largest });
  const left = live.reduce((sum, sale) => sum + sale.remaining, 0);
  $("now-stock").textContent = live.length === 1
    ? left.toLocaleString() + " / " + live[0].stock.toLocaleString()
    : live.length ? left.toLocaleString() + " units in " + live.length + " sales" : "no sale on";

  const ratios = cacheRatios();
  chart("cache", ratios, { max: 1, percent: true });
  const current = ratios.map((series) => last(series.values)).filter((v) => v !== null && v !== undefined);
  $("now-cache").textContent = current.length
    ? current.map((v) => Math.round(v * 100) + " %").join(" · ")
    : "no lookups";

  const blocked = latest.hub.reduce((sum, worker) => sum + worker.blocks, 0);
  $("now-hub").textContent = latest.hub.length
    ? blocked.toLocaleString() + " blocks in " + latest.hub.length + " workers"
    : "no gevent worker";
  rows("table-hub", latest.hub.map((w) => [w.pid, w.server, w.blocks, seconds(w.longest_s)]));
  const silent = latest.celery_workers.filter((w) => w.silent).length;
  $("now-celery").textContent = latest.celery_workers.length
    ? (latest.celery_workers.length - silent) + " consuming" + (silent ? ", " + silent + " silent" : "")
    : "no worker heard of";
  rows("table-celery", latest.celery_workers.map((w) => [w.name, seconds(w.rtt_s),
                                                         seconds(w.age_s) + (w.silent ? " (silent)" : "")]));
}

function seconds(value) {
  return value < 1 ? Math.round(value * 1000) + " ms" : value.toFixed(1) + " s";
}

function rows(id, cells) {
  const body = $(id);
  body.replaceChildren(...cells.map((row) => {
    const tr = document.createElement("tr");
    row.forEach((cell) => {
      const td = document.createElement("td");
      td.textContent = String(cell);  // worker names come from hosts: text, never markup
      tr.appendChild(td);
    });
    return tr;
  }));
}

function palette() {
  const style = getComputedStyle(document.documentElement);
  const colors = [];
  for (let i = 0; i < PALETTE_SIZE; i++) {
    colors.push(style.getPropertyValue("--series-" + i).trim());
  }
  return {
    colors,
    grid: style.getPropertyValue("--grid").trim(),
    text: style.getPropertyValue("--axis-text").trim(),
  };
}

function legend(name, series) {
  const list = $("legend-" + name);
  list.replaceChildren(...series.map((s, i) => {
    const item = document.createElement("li");
    item.className = "s" + (i % PALETTE_SIZE);
    item.textContent = s.label;
    return item;
  }));
}

// A line chart of the last HISTORY samples: x is time (newest on the right), y from 0.
function chart(name, series, options = {}) {
  const canvas = $("chart-" + name);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const colors = palette();
  const left = 48;
  const right = 8;
  const top = 8;
  const bottom = 18;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;

  let max = options.max || 0;
  for (const s of series) {
    for (const v of s.values) {
      if (v !== null && v > max) {
        max = v;
      }
    }
  }
  const scale = niceScale(max);
  max = scale.max;

  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.textBaseline = "middle";
  for (let i = 0; i <= scale.divisions; i++) {
    const value = (max * i) / scale.divisions;
    const y = top + plotHeight - (plotHeight * i) / scale.divisions;
    ctx.strokeStyle = colors.grid;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(width - right, y);
    ctx.stroke();
    ctx.fillStyle = colors.text;
    ctx.textAlign = "right";
    ctx.fillText(options.percent ? Math.round(value * 100) + "%" : shortNumber(value), left - 6, y);
  }
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  ctx.fillText("−" + Math.round(HISTORY * POLL_MS / 60000) + " min", left, height - 4);
  ctx.textAlign = "right";
  ctx.fillText("now", width - right, height - 4);

  const step = plotWidth / (HISTORY - 2);
  series.forEach((s, index) => {
    ctx.strokeStyle = colors.colors[index % PALETTE_SIZE];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    const offset = HISTORY - 1 - s.values.length;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        drawing = false;
        return;
      }
      const x = left + (offset + i) * step;
      const y = top + plotHeight - (plotHeight * Math.min(v, max)) / (max || 1);
      if (drawing) {
        ctx.lineTo(x, y);
      } else {
        ctx.moveTo(x, y);
        drawing = true;
      }
    });
    ctx.stroke();
  });
  legend(name, series);
}

// The axis maximum (1, 2, 2.5 or 5 times a power of ten) and a count of grid steps
// that divides it into round numbers.
function niceScale(value) {
  if (value <= 0) {
    return { max: 1, divisions: 5 };
  }
  const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
  for (const factor of [1, 2, 2.5, 5]) {
    if (value <= factor * magnitude) {
      return { max: factor * magnitude, divisions: factor === 2 ? 4 : 5 };
    }
  }
  return { max: 10 * magnitude, divisions: 5 };
}

function shortNumber(value) {
  if (value >= 1e6) {
    return (value / 1e6).toFixed(value % 1e6 ? 1 : 0) + "M";
  }
  if (value >= 1e3) {
    return (value / 1e3).toFixed(value % 1e3 ? 1 : 0) + "k";
  }
  return String(Math.round(value * 10) / 10);
}

// ---- start -------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    showDashboard();
  });
  $("forget").addEventListener("click", () => showLogin(""));
  if (token()) {
    showDashboard();
  } else {
    showLogin("");
  }
});
