// The clipmg live view: one tile per stream, fed by two WebSockets of the server (stream/web.py):
// /ws carries the window, event and status messages exactly as ZeroMQ subscribers get them;
// /ws/frames the newest annotated JPEG of each stream. Nothing here writes to the server.
"use strict";

const TIMELINE = 120; // entries kept per stream
const EVENTS = 50;
const tiles = new Map();

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(x, digits) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–";
}

function tile(id) {
  let t = tiles.get(id);
  if (t) return t;
  const node = document.getElementById("tile").content.firstElementChild.cloneNode(true);
  node.dataset.stream = id;
  node.querySelector(".name").textContent = id;
  const empty = document.getElementById("empty");
  if (empty) empty.remove();
  const main = document.getElementById("streams");
  const after = [...main.children].find((c) => c.dataset.stream > id);
  main.insertBefore(node, after || null);
  t = { node, seen: new Set(), frameUrl: null, gesture: null };
  tiles.set(id, t);
  return t;
}

function onWindow(t, m) {
  const key = `${m.window}:${m.t_publish}`;
  if (t.seen.has(key)) return;
  t.seen.add(key);
  const n = t.node;
  const top = m.topk || [];
  n.querySelector(".decided .label").textContent = m.label || "–";
  n.querySelector(".decided .p").textContent = m.label ? fmt(m.p, 2) : m.person ? "" : "no person";
  const ol = n.querySelector(".top");
  ol.replaceChildren(...top.slice(0, 3).map((e) => el("li", "", `${e.label} ${fmt(e.p, 2)}`)));
  if (!top.length) return;
  const li = el("li", m.label ? "entry chosen" : "entry");
  li.dataset.window = m.window;
  const bar = el("span", "bar");
  bar.style.width = `${Math.round(100 * Math.max(0, Math.min(1, top[0].p)))}%`;
  li.append(el("span", "win", `#${m.window}`), bar, el("span", "lbl", top[0].label), el("span", "prob", fmt(top[0].p, 2)));
  const list = n.querySelector(".timeline");
  list.prepend(li);
  while (list.children.length > TIMELINE) list.lastElementChild.remove();
}

function onEvent(t, m) {
  const key = `${m.event}:${m.window}:${m.label}`;
  if (t.seen.has(key)) return;
  t.seen.add(key);
  const when = new Date(m.t * 1000).toLocaleTimeString();
  const text = m.event === "start"
    ? `${when} start ${m.label} (${fmt(m.confidence, 2)})`
    : `${when} end ${m.label} after ${fmt(m.duration_s, 1)} s`;
  const li = el("li", m.event, text);
  const list = t.node.querySelector(".events");
  list.prepend(li);
  while (list.children.length > EVENTS) list.lastElementChild.remove();
  t.gesture = m.event === "start" ? m.label : null;
  const banner = t.node.querySelector(".event");
  banner.hidden = !t.gesture;
  banner.textContent = t.gesture ? `gesture: ${t.gesture}` : "";
}

function onStatus(t, m) {
  const state = t.node.querySelector(".state");
  state.textContent = m.state;
  state.className = `state badge ${m.state}`;
  const lat = (m.latency_ms || {}).capture_to_publish;
  const rows = [
    ["source", `${(m.source || {}).state || "–"} ${(m.source || {}).spec || ""}`],
    ["fps in / pose / out", `${fmt(m.fps_in, 1)} / ${fmt(m.fps_pose, 1)} / ${fmt(m.fps_out, 2)}`],
    ["latency", lat === undefined ? "–" : `${fmt(lat, 0)} ms`],
    ["windows / skipped", `${m.windows} / ${m.skipped}`],
    ["restarts", `${m.restarts}`],
    ["model", `${(m.model || {}).preset || "–"} (${(m.model || {}).backend || "–"})`],
  ];
  if (m.message) rows.push(["message", m.message]);
  const dl = t.node.querySelector(".status");
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", "", k), el("dd", "", v)]));
}

function onMessage(text) {
  const { topic, message } = JSON.parse(text);
  const [, kind, id] = topic.split(".");
  const t = tile(id);
  if (kind === "window") onWindow(t, message);
  else if (kind === "event") onEvent(t, message);
  else if (kind === "status") onStatus(t, message);
}

function onFrame(buf) {
  const bytes = new Uint8Array(buf);
  const n = bytes[0];
  const id = String.fromCharCode(...bytes.subarray(1, 1 + n));
  const t = tile(id);
  const img = t.node.querySelector(".frame");
  if (img.dataset.loading === "1") return; // the previous frame is still decoding: skip this one
  const old = t.frameUrl;
  t.frameUrl = URL.createObjectURL(new Blob([bytes.subarray(1 + n)], { type: "image/jpeg" }));
  img.dataset.loading = "1";
  img.onload = img.onerror = () => {
    img.dataset.loading = "0";
    if (old) URL.revokeObjectURL(old);
  };
  img.src = t.frameUrl;
  img.dataset.frames = String(Number(img.dataset.frames || 0) + 1);
}

function socket(path, onData, binary) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
  const ws = new WebSocket(url);
  if (binary) ws.binaryType = "arraybuffer";
  ws.onmessage = (e) => onData(e.data);
  ws.onopen = () => setConnection(true);
  ws.onclose = () => {
    setConnection(false);
    setTimeout(() => socket(path, onData, binary), 1000); // the supervisor may come back
  };
  return ws;
}

function setConnection(on) {
  const c = document.getElementById("connection");
  c.textContent = on ? "live" : "disconnected";
  c.className = `badge ${on ? "on" : "off"}`;
}

async function recordings() {
  try {
    const r = await fetch("/api/streams", { cache: "no-store" });
    const { streams } = await r.json();
    for (const s of streams) {
      const a = tile(s.stream).node.querySelector(".recording");
      a.hidden = !s.recording;
      a.href = `/api/streams/${encodeURIComponent(s.stream)}/recording`;
    }
  } catch (e) {
    /* the next try will tell */
  }
}

socket("/ws", onMessage, false);
socket("/ws/frames", onFrame, true);
recordings();
setInterval(recordings, 5000);
