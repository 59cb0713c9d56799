// telewire live page: receives a snapshot of cumulative figures over the
// WebSocket /ws several times a second, turns successive snapshots into
// per-interval rates, and draws each stream's history on small canvases.
// No library: the charts are a few dozen lines of canvas code below.
"use strict";

const HISTORY = 240; // points kept per series (60 s at 250 ms)
const WINDOW_MS = 60000; // time span shown on the x axis
const LOSS_WINDOW_MS = 2000; // span loss ratios are measured over

// Chart definitions: series names, colours (CSS variables) and units.
const CHARTS = [
  { id: "rate", title: "delivered/s by how", stacked: true, unit: "/s",
    series: [["first", "--first", "first copy"], ["fec", "--fec", "rebuilt by FEC"], ["rtx", "--rtx", "retransmitted"]] },
  { id: "loss", title: "loss %, last 2 s", unit: "%",
    series: [["before", "--loss", "before repair"], ["after", "--after", "after repair"]] },
  { id: "delay", title: "one-way delay, ms", unit: "ms",
    series: [["p50", "--p50", "p50"], ["p90", "--p90", "p90"], ["p99", "--p99", "p99"], ["jitter", "--jit", "jitter"],
      ["p99recent", "--rtt", "p99, last 2 s"]] },
  { id: "rtt", title: "round trip, ms", unit: "ms",
    series: [["rtt", "--rtt", "RTT (sender)"], ["repair", "--fec", "NACK→repair (receiver)"]] },
  { id: "fec", title: "FEC block", unit: "",
    series: [["k", "--first", "K data"], ["m", "--fec", "M parity"]] },
  { id: "pacing", title: "pacing rate, Mbit/s", unit: "Mbit/s",
    series: [["pacing", "--pace", "pacing rate"]] },
];

const streams = new Map(); // key -> {card, charts, t[], s{name: []}, prev}
const live = { updates: 0, streams }; // for debugging and tests
window.telewireLive = live;

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};

function fmt(v, digits) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return v.toFixed(digits === undefined ? (Math.abs(v) < 10 ? 2 : 0) : digits);
}

function newStream(key, v) {
  const facts = el("div", { class: "facts" });
  const grid = el("div", { class: "charts" });
  const card = el("section", { class: "card", "data-key": key },
    el("h2", {}, key === "other" ? "other streams (summed)" : "stream " + v.stream + " · " + v.peer), facts, grid);
  const st = { card, facts, charts: {}, t: [], s: {}, prev: null, hist: [] };
  for (const c of CHARTS) {
    const canvas = el("canvas", { "data-chart": c.id, "data-points": "0" });
    const cap = el("figcaption", {}, el("b", {}, c.title));
    for (const [name, colour, label] of c.series) {
      const i = el("i", {}, label);
      i.style.setProperty("--c", "var(" + colour + ")"); // CSSOM, which the CSP allows
      cap.append(i);
      st.s[name] = [];
    }
    grid.append(el("figure", {}, cap, canvas));
    st.charts[c.id] = { def: c, canvas };
  }
  const main = document.getElementById("streams");
  main.querySelector(".empty")?.remove();
  main.append(card);
  streams.set(key, st);
  return st;
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

// update folds one snapshot into the histories and redraws.
function update(snap) {
  live.updates++;
  document.getElementById("role").textContent = snap.role || "";
  const seen = new Set();
  for (const v of snap.streams) {
    seen.add(v.key);
    const st = streams.get(v.key) || newStream(v.key, v);
    const p = st.prev;
    st.prev = { v, t: snap.time_ms };
    if (!p || snap.time_ms <= p.t) continue;
    const dt = (snap.time_ms - p.t) / 1000;
    const d = (a, b) => Math.max(0, a - b);
    const first = d(v.received - v.recovered_rtx, p.v.received - p.v.recovered_rtx);
    const rtx = d(v.recovered_rtx, p.v.recovered_rtx);
    const fec = d(v.recovered_fec, p.v.recovered_fec);
    // Loss is measured over a trailing window of LOSS_WINDOW_MS: a gap
    // found in one update is usually repaired in a later one, so "after
    // repair" is only meaningful over a span longer than the repair time.
    st.hist.push({ t: snap.time_ms, v });
    while (st.hist.length > 2 && snap.time_ms - st.hist[1].t >= LOSS_WINDOW_MS) st.hist.shift();
    const o = st.hist[0].v;
    const lost = d(v.lost, o.lost);
    const unrec = d(v.unrecovered, o.unrecovered);
    const expected = d(v.received - v.recovered_rtx, o.received - o.recovered_rtx) + lost;
    push(st.t, snap.time_ms);
    const put = (name, x) => push(st.s[name], x);
    put("first", v.has_receiver ? first / dt : null);
    put("fec", v.has_receiver ? fec / dt : null);
    put("rtx", v.has_receiver ? rtx / dt : null);
    put("before", v.has_receiver && expected > 0 ? 100 * lost / expected : null);
    put("after", v.has_receiver && expected > 0 ? 100 * Math.min(unrec, lost) / expected : null);
    const ms = (ns) => (v.has_receiver ? ns / 1e6 : null);
    put("p50", ms(v.delay_p50_ns));
    put("p90", ms(v.delay_p90_ns));
    put("p99", ms(v.delay_p99_ns));
    put("jitter", ms(v.jitter_ns));
    put("p99recent", recentQuantile(0.99, snap.delay_bounds_ns, v.delay_buckets, o.delay_buckets));
    put("rtt", v.has_sender ? v.rtt_ns / 1e6 : null);
    put("repair", v.has_receiver && v.repair_rtt_ns > 0 ? v.repair_rtt_ns / 1e6 : null);
    put("k", v.has_sender ? v.fec_k : null);
    put("m", v.has_sender ? v.fec_m : null);
    put("pacing", v.has_sender ? v.pacing_bytes_per_sec * 8 / 1e6 : null);
    st.facts.innerHTML = "";
    const fact = (label, value) => st.facts.append(label + " ", el("b", {}, value), "  ");
    if (v.has_receiver) {
      fact("delivered/s", fmt((first + fec + rtx) / dt));
      fact("received", fmt(v.received, 0));
      fact("lost", fmt(v.lost, 0));
      fact("unrecovered", fmt(v.unrecovered, 0));
      fact("p99", fmt(v.delay_p99_ns / 1e6) + " ms");
      fact("jitter", fmt(v.jitter_ns / 1e6) + " ms");
    }
    if (v.has_sender) {
      fact("sent", fmt(v.sent, 0));
      fact("RTT", fmt(v.rtt_ns / 1e6) + " ms");
      fact("FEC", v.fec_m > 0 ? v.fec_k + "+" + v.fec_m + (v.fec_interleave > 1 ? " ×" + v.fec_interleave : "") : "off");
      fact("pacing", v.pacing_bytes_per_sec > 0 ? fmt(v.pacing_bytes_per_sec * 8 / 1e6) + " Mbit/s" : "off");
    }
    for (const c of Object.values(st.charts)) draw(c, st);
  }
  for (const [key, st] of streams) {
    if (!seen.has(key)) {
      st.card.remove();
      streams.delete(key);
    }
  }
  const relay = document.getElementById("relay");
  if (snap.relay) {
    const r = snap.relay;
    relay.hidden = false;
    relay.textContent = "netem relay · clients " + r.clients +
      " · fwd in " + r.fwd.Received + " dropped " + r.fwd.Dropped + " delayed " + r.fwd.Delayed +
      " · rev in " + r.rev.Received + " dropped " + r.rev.Dropped + " delayed " + r.rev.Delayed;
  }
  if (snap.omitted > 0) {
    document.getElementById("status").textContent = "live · " + snap.omitted + " streams summed into \"other\"";
  }
}

// draw renders one chart: time on x (the last WINDOW_MS), values on y from
// zero to a rounded maximum, one line per series (areas when stacked).
function draw(c, st) {
  const cv = c.canvas;
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth, h = cv.clientHeight;
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
    cv.width = Math.round(w * dpr);
    cv.height = Math.round(h * dpr);
  }
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const names = c.def.series.map((s) => s[0]);
  const n = st.t.length;
  const tEnd = n ? st.t[n - 1] : 0;
  const pad = { l: 44, r: 6, t: 6, b: 16 };
  const x = (t) => pad.l + (w - pad.l - pad.r) * (1 - (tEnd - t) / WINDOW_MS);
  // Stacked charts plot running sums.
  const vals = names.map(() => new Array(n).fill(null));
  for (let i = 0; i < n; i++) {
    let acc = 0;
    names.forEach((name, j) => {
      const v = st.s[name][i];
      if (v === null) return;
      acc = c.def.stacked ? acc + v : v;
      vals[j][i] = acc;
    });
  }
  let top = 0;
  for (const a of vals) for (const v of a) if (v !== null && v > top) top = v;
  top = niceCeil(top || 1);
  const y = (v) => h - pad.b - (h - pad.t - pad.b) * (v / top);
  g.font = "10px system-ui, sans-serif";
  g.fillStyle = css("--dim");
  g.strokeStyle = css("--grid");
  g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    g.beginPath();
    g.moveTo(pad.l, y(v));
    g.lineTo(w - pad.r, y(v));
    g.stroke();
    g.fillText(fmt(v), 2, y(v) + 3);
  }
  g.fillText("-60 s", pad.l, h - 3);
  g.fillText("now", w - pad.r - 18, h - 3);
  if (c.def.stacked) {
    // Fill each band between the running sum below it and its own.
    names.forEach((name, j) => {
      g.fillStyle = css(c.def.series[j][1]);
      g.globalAlpha = 0.45;
      for (let i = 1; i < n; i++) {
        const a = vals[j][i - 1], b = vals[j][i];
        if (a === null || b === null || tEnd - st.t[i - 1] > WINDOW_MS) continue;
        const a0 = j ? vals[j - 1][i - 1] || 0 : 0, b0 = j ? vals[j - 1][i] || 0 : 0;
        g.beginPath();
        g.moveTo(x(st.t[i - 1]), y(a0));
        g.lineTo(x(st.t[i - 1]), y(a));
        g.lineTo(x(st.t[i]), y(b));
        g.lineTo(x(st.t[i]), y(b0));
        g.closePath();
        g.fill();
      }
      g.globalAlpha = 1;
    });
  }
  names.forEach((name, j) => {
    const colour = css(c.def.series[j][1]);
    g.strokeStyle = colour;
    g.lineWidth = 1.5;
    g.beginPath();
    let open = false;
    for (let i = 0; i < n; i++) {
      const v = vals[j][i];
      if (v === null || tEnd - st.t[i] > WINDOW_MS) { open = false; continue; }
      if (open) g.lineTo(x(st.t[i]), y(v));
      else g.moveTo(x(st.t[i]), y(v));
      open = true;
    }
    g.stroke();
  });
  // What was drawn, for tests and anyone inspecting the page.
  const last = {};
  names.forEach((name) => { last[name] = st.s[name][n - 1]; });
  cv.dataset.points = String(n);
  cv.dataset.lastTime = String(tEnd);
  cv.dataset.last = JSON.stringify(last);
}

// recentQuantile estimates the q-quantile, in ms, of the delays recorded
// between two cumulative bucket snapshots, interpolating linearly inside
// the bucket that holds it (as Prometheus's histogram_quantile does).
function recentQuantile(q, bounds, now, then) {
  if (!bounds || !now || !then || now.length !== bounds.length) return null;
  const d = now.map((n, i) => n - then[i]);
  const total = d[d.length - 1];
  if (!(total > 0)) return null;
  const rank = q * total;
  for (let i = 0; i < d.length; i++) {
    if (d[i] >= rank) {
      const lo = i ? bounds[i - 1] : 0, below = i ? d[i - 1] : 0;
      const inBucket = d[i] - below;
      const frac = inBucket > 0 ? (rank - below) / inBucket : 1;
      return (lo + (bounds[i] - lo) * frac) / 1e6;
    }
  }
  return bounds[bounds.length - 1] / 1e6; // beyond the last bound
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function connect() {
  const status = document.getElementById("status");
  const base = location.pathname.replace(/[^/]*$/, "");
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + base + "ws");
  ws.onopen = () => { status.textContent = "live"; status.className = "status live"; };
  ws.onmessage = (ev) => update(JSON.parse(ev.data));
  ws.onclose = () => {
    status.textContent = "disconnected, retrying…";
    status.className = "status down";
    setTimeout(connect, 1000);
  };
}

connect();
