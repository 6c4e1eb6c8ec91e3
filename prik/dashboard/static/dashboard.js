// prik operations page: renders /api/state as it arrives on /events (server-sent events).
// Text goes in with textContent only: tenant names and reasons are other people's text.
"use strict";

const OUTCOMES = ["delivered", "expired", "rejected", "dead-lettered"];
const SVG = "http://www.w3.org/2000/svg";

let lastUpdate = 0;
let tickSeconds = 2;
let kafkaError = null;

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// A number and its unit, always together.
function withUnit(text, unit) {
  const frag = document.createDocumentFragment();
  frag.append(text);
  frag.append(el("span", { class: "unit" }, unit));
  return frag;
}

const integer = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat("en-GB", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

function rateText(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? oneDecimal.format(value) : integer.format(value);
}

function countText(value) {
  return value === null || value === undefined ? "–" : integer.format(value);
}

// Seconds, minutes or hours: whichever reads at a glance; the unit says which.
function duration(seconds) {
  if (seconds === null || seconds === undefined) return ["–", "s"];
  if (seconds < 120) return [oneDecimal.format(seconds), "s"];
  if (seconds < 7200) return [oneDecimal.format(seconds / 60), "min"];
  return [oneDecimal.format(seconds / 3600), "h"];
}

function clock(iso) {
  const when = new Date(iso);
  const sameDay = when.toDateString() === new Date().toDateString();
  const time = when.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${when.toLocaleDateString("en-GB", { day: "numeric", month: "short" })} ${time}`;
}

function windowLabel(seconds) {
  return seconds % 60 === 0 ? `last ${seconds / 60} min` : `last ${seconds} s`;
}

function spark(svg, values) {
  svg.replaceChildren();
  const points = values.map((v) => (typeof v === "number" ? v : 0));
  if (points.length < 2) return;
  const width = 160;
  const height = 32;
  const top = Math.max(1, ...points);
  const step = width / (points.length - 1);
  const coords = points.map((v, i) => `${(i * step).toFixed(1)},${(height - 1 - (v / top) * (height - 3)).toFixed(1)}`);
  const area = document.createElementNS(SVG, "polygon");
  area.setAttribute("points", `0,${height} ${coords.join(" ")} ${width},${height}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.append(area, line);
}

function sparkCell(values) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 160 32");
  svg.setAttribute("preserveAspectRatio", "none");
  spark(svg, values || []);
  return el("td", { class: "trend", "data-field": "trend" }, svg);
}

function numberCell(field, value, unit, level = null, estimate = false) {
  // An estimate (offsets, not counted records) says so with "≈".
  const text = estimate && value ? `≈${countText(value)}` : countText(value);
  const td = el("td", { "data-field": field, "data-value": value ?? "" }, withUnit(text, unit));
  if (level) td.setAttribute("data-level", level);
  else if (value === 0) td.classList.add("zero");
  return td;
}

function rateCell(value) {
  return el("td", { "data-field": "rate", "data-value": value ?? "" }, withUnit(rateText(value), "msg/s"));
}

function nameCell(id, name) {
  const td = el("td", { class: "name", "data-field": "name" }, el("b", {}, name || id));
  if (name && name !== id) td.append(el("small", {}, id));
  return td;
}

// A backlog is worth a colour once it holds more than ~10 s of its own traffic:
// a few records in flight at a steady rate are the normal state.
function backlogLevel(records, perSecond) {
  if (!records) return null;
  return records > Math.max(50, 10 * (perSecond || 0)) ? "warn" : null;
}

// How long the oldest delivery has waited: normal in flight, then amber, then red.
function waitLevel(seconds) {
  if (seconds === null || seconds === undefined) return null;
  return seconds > 60 ? "bad" : seconds >= 10 ? "warn" : null;
}

function setTile(key, value, unit, sub, level = null) {
  const tile = $(`[data-tile="${key}"]`);
  $("[data-field=value]", tile).replaceChildren(withUnit(value, unit));
  const subNode = $("[data-field=sub]", tile);
  if (subNode) subNode.textContent = sub || "";
  if (level) tile.setAttribute("data-level", level);
  else tile.removeAttribute("data-level");
  return tile;
}

function renderTiles(state) {
  const ingress = setTile("ingress", rateText(state.ingress_per_s), "msg/s");
  spark($("[data-field=spark]", ingress), state.history_ingress_per_s);
  const deliver = setTile("deliver", rateText(state.deliver_per_s), "msg/s");
  spark($("[data-field=spark]", deliver), state.history_deliver_per_s);

  const router = state.router;
  if (router) {
    const instances = router.instances;
    const running = instances === null ? "router group unknown" : `${instances} router instance${instances === 1 ? "" : "s"}`;
    const level = instances === 0 ? "bad" : backlogLevel(router.backlog_records, state.ingress_per_s);
    setTile("router", countText(router.backlog_records), "records", running, level);
  }

  const dlq = state.dlq;
  if (dlq) {
    const recent = `${countText(dlq.recent_records)} new in ${windowLabel(state.window_s).replace("last ", "the last ")}`;
    const depth = dlq.exact ? countText(dlq.depth_records) : `≈${countText(dlq.depth_records)}`;
    setTile("dlq", depth, "records", recent, dlq.recent_records > 0 ? "warn" : null);
  }

  const peak = state.peak;
  if (peak) {
    const who = peak.tenant ? ` · most from ${peak.tenant}` : "";
    setTile("peak", countText(peak.per_minute), "msg/min", `at ${clock(peak.at)}${who}`);
  } else {
    setTile("peak", "–", "msg/min", state.peak_error ? `unknown: ${state.peak_error}` : "no traffic yet");
  }
}

function renderOutcomes(state) {
  const counts = state.outcomes || {};
  const total = OUTCOMES.reduce((sum, o) => sum + (counts[o] || 0), 0);
  const bar = $("#outcome-bar");
  bar.replaceChildren(
    ...OUTCOMES.filter((o) => counts[o]).map((o) => {
      const part = el("span", { class: `o-${o}` });
      part.style.width = `${(100 * counts[o]) / total}%`;
      return part;
    }),
  );
  const legend = $("#outcome-legend");
  legend.replaceChildren(
    ...OUTCOMES.map((o) =>
      el(
        "li",
        { "data-outcome": o, "data-value": counts[o] || 0 },
        el("span", { class: `swatch o-${o}` }),
        o,
        el("b", {}, countText(counts[o] || 0)),
        el("span", { class: "unit" }, "msg"),
      ),
    ),
  );
  $("#outcomes-window").textContent = windowLabel(state.window_s);
}

function renderSenders(state) {
  const rows = state.senders.map((s) =>
    el(
      "tr",
      { "data-sender": s.id },
      nameCell(s.id, s.name),
      rateCell(s.per_s),
      sparkCell(s.history_per_s),
      numberCell("backlog", s.backlog_records, "records", backlogLevel(s.backlog_records, s.per_s)),
      numberCell("delivered", s.outcomes.delivered, "msg"),
      numberCell("expired", s.outcomes.expired, "msg"),
      numberCell("rejected", s.outcomes.rejected, "msg", s.outcomes.rejected > 0 ? "warn" : null),
      numberCell("dead-lettered", s.outcomes["dead-lettered"], "msg", s.outcomes["dead-lettered"] > 0 ? "bad" : null),
    ),
  );
  $("#senders tbody").replaceChildren(...rows);
}

function renderReceivers(state) {
  const rows = state.receivers.map((r) => {
    const [age, ageUnit] = duration(r.oldest_waiting_s);
    const ageLevel = waitLevel(r.oldest_waiting_s);
    const consumers = numberCell("consumers", r.consumers, r.consumers === 1 ? "instance" : "instances", r.consumers === 0 ? "bad" : null);
    const waiting = el("td", { "data-field": "oldest", "data-value": r.oldest_waiting_s ?? "" }, withUnit(age, ageUnit));
    if (ageLevel) waiting.setAttribute("data-level", ageLevel);
    else if (r.oldest_waiting_s === null) waiting.classList.add("zero");
    return el(
      "tr",
      { "data-lps": r.id },
      nameCell(r.id, r.name),
      rateCell(r.per_s),
      sparkCell(r.history_per_s),
      consumers,
      numberCell("lag", r.lag_records, "records", waitLevel(r.oldest_waiting_s), !r.lag_exact),
      waiting,
      numberCell("delivered", r.outcomes.delivered, "msg"),
      numberCell("expired", r.outcomes.expired, "msg"),
      numberCell("dead-lettered", r.outcomes["dead-lettered"], "msg", r.outcomes["dead-lettered"] > 0 ? "bad" : null),
    );
  });
  $("#receivers tbody").replaceChildren(...rows);
}

function renderClinics(state) {
  const failing = state.failing_clinics.map((f) =>
    el(
      "tr",
      { "data-clinic": f.clinic },
      el("td", { class: "name", "data-field": "clinic" }, el("b", {}, f.clinic)),
      el("td", { class: "name" }, f.lps || "–"),
      numberCell("dead-letters", f.dead_letters, "msg", "bad"),
      el("td", {}, clock(f.last_at)),
      el("td", { class: "name reason" }, f.last_reason),
    ),
  );
  $("#failing tbody").replaceChildren(...failing);
  $("#failing").hidden = failing.length === 0;
  $("#failing-empty").hidden = failing.length > 0;

  const waiting = state.waiting_clinics.map((w) => {
    const [age, unit] = duration(w.waiting_s);
    return el(
      "tr",
      { "data-clinic": w.clinic || "" },
      el("td", { class: "name", "data-field": "clinic" }, w.clinic ? el("b", {}, w.clinic) : "(not a SOR key)"),
      el("td", { class: "name" }, w.lps),
      el("td", {}, String(w.partition)),
      el("td", { "data-level": waitLevel(w.waiting_s) }, withUnit(age, unit)),
    );
  });
  $("#waiting tbody").replaceChildren(...waiting);
  $("#waiting-after").textContent = `for ${Math.round(state.waiting_after_s)} s or more`;
  $("#waiting").hidden = waiting.length === 0;
  $("#waiting-empty").hidden = waiting.length > 0;
}

function render(state) {
  tickSeconds = state.tick_s || 2;
  kafkaError = state.kafka_error;
  lastUpdate = Date.now();
  $("#where").textContent = `topics ${state.prefix}.* on Kafka ${state.bootstrap}`;
  for (const label of document.querySelectorAll(".window-label")) {
    label.textContent = label.closest("th") ? `${state.window_s / 60} min` : windowLabel(state.window_s);
  }
  const banner = $("#banner");
  banner.hidden = !kafkaError;
  banner.textContent = kafkaError ? `Kafka: ${kafkaError} (showing the last numbers read)` : "";
  renderTiles(state);
  renderOutcomes(state);
  renderSenders(state);
  renderReceivers(state);
  renderClinics(state);
  $("#foot").textContent =
    `Read from Kafka itself every ${tickSeconds} s (it works while the router is down). ` +
    `Rates over the last ${state.rate_window_s} s; outcomes and trends over the ${windowLabel(state.window_s)}. ` +
    `Clinics by SOR code only.`;
  showStatus();
}

function showStatus() {
  const status = $("#status");
  const text = $("#status-text");
  if (!lastUpdate) return;
  const age = (Date.now() - lastUpdate) / 1000;
  const updated = new Date(lastUpdate).toLocaleTimeString("en-GB");
  if (age > 3 * tickSeconds) {
    status.dataset.state = "stale";
    text.textContent = `no update for ${Math.round(age)} s (last ${updated})`;
  } else if (kafkaError) {
    status.dataset.state = "error";
    text.textContent = `Kafka trouble · ${updated}`;
  } else {
    status.dataset.state = "live";
    text.textContent = `live · ${updated}`;
  }
}

function poll() {
  // Without server-sent events (an old proxy may buffer them): ask every tick.
  fetch("/api/state", { cache: "no-store" })
    .then((response) => (response.ok ? response.json() : null))
    .then((state) => state && render(state))
    .catch(() => {})
    .finally(() => setTimeout(poll, tickSeconds * 1000));
}

function start() {
  if (typeof EventSource === "undefined") {
    poll();
  } else {
    const events = new EventSource("/events");
    events.onmessage = (event) => render(JSON.parse(event.data));
  }
  setInterval(showStatus, 1000);
}

document.addEventListener("DOMContentLoaded", start);
