// faculty dashboard: one page, hash routes, plain JS over the REST API (/openapi.json). No build step.
// Pages: #/zoo, #/teachers/ID, #/tasks, #/tasks/ID, #/rankings, #/rankings/ID, #/jobs, #/jobs/ID,
// #/students, #/students/ID, #/compare/ID,ID,...
"use strict";

// ---------- small helpers ----------
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const main = $("#main");
// Replaces the page's content (arrays flattened, null and false skipped).
const show = (...nodes) => main.replaceChildren(...nodes.flat(Infinity).filter((n) => n != null && n !== false));

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
const num = (v, d = 4) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
function bytes(n) {
  if (n == null) return "–";
  const u = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function count(n) {
  if (n == null) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");
const shape = (a) => (a && a.length ? "[" + a.map((d) => (d < 0 ? "?" : d)).join(", ") + "]" : "–");
function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4000);
}
const errorBox = (id, msg) => h("div", { id, class: "error", role: "alert" }, msg);
const loading = (what) => h("p", { class: "loading muted" }, "Loading " + what + "…");
const empty = (msg, ...more) => h("div", { class: "empty" }, msg, ...more);

// ---------- the API, with the token when the server wants one ----------
const TOKEN_KEY = "faculty.token";
class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : "HTTP " + status);
    this.status = status;
    this.kind = body && body.kind;
  }
}
function authHeaders(extra = {}) {
  const t = localStorage.getItem(TOKEN_KEY);
  return t ? { ...extra, Authorization: "Bearer " + t } : extra;
}
let tokenAsk = null;
function askToken(why) {
  if (tokenAsk) return tokenAsk;
  const d = $("#token-dialog");
  $("#token-why").textContent = why;
  $("#token-input").value = "";
  tokenAsk = new Promise((resolve) => {
    d.addEventListener("close", function done() {
      d.removeEventListener("close", done);
      tokenAsk = null;
      if (d.returnValue === "save" && $("#token-input").value.trim()) {
        localStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
        resolve(true);
      } else resolve(false);
    });
  });
  d.showModal();
  return tokenAsk;
}
async function api(path, opts = {}, asked = 0) {
  const headers = authHeaders(opts.json ? { "content-type": "application/json" } : {});
  const res = await fetch(path, {
    method: opts.method || (opts.json || opts.body ? "POST" : "GET"),
    headers,
    body: opts.json ? JSON.stringify(opts.json) : opts.body,
  });
  if (res.status === 204) return null;
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: text.slice(0, 300) }; }
  // no token, a wrong one (401) or one whose role is too low (403): ask, at most three times
  if ((res.status === 401 || res.status === 403) && asked < 3) {
    if (res.status === 401) localStorage.removeItem(TOKEN_KEY);
    if (await askToken(body && body.error)) return api(path, opts, asked + 1);
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}
// An upload with a progress bar (fetch cannot report upload progress).
function upload(path, form, bar) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("POST", path);
    for (const [k, v] of Object.entries(authHeaders())) x.setRequestHeader(k, v);
    x.upload.onprogress = (e) => {
      if (e.lengthComputable && bar) { bar.max = e.total; bar.value = e.loaded; }
    };
    x.onload = async () => {
      let body = null;
      try { body = JSON.parse(x.responseText); } catch { body = { error: x.responseText.slice(0, 300) }; }
      if ((x.status === 401 || x.status === 403) && (await askToken(body && body.error))) {
        return upload(path, form, bar).then(resolve, reject);
      }
      if (x.status >= 200 && x.status < 300) resolve({ status: x.status, body });
      else reject(new ApiError(x.status, body));
    };
    x.onerror = () => reject(new ApiError(0, { error: "the server could not be reached" }));
    x.send(form);
  });
}
// Server-sent events over fetch (EventSource cannot send the token, nor POST): onEvent(data, name).
async function follow(path, onEvent, signal, json, asked = 0) {
  const opts = { headers: authHeaders(json ? { "content-type": "application/json" } : {}), signal };
  if (json) { opts.method = "POST"; opts.body = JSON.stringify(json); }
  const res = await fetch(path, opts);
  if (!res.ok) {
    let body = null;
    try { body = await res.json(); } catch {}
    if ((res.status === 401 || res.status === 403) && asked < 3) {
      if (res.status === 401) localStorage.removeItem(TOKEN_KEY);
      if (await askToken(body && body.error)) return follow(path, onEvent, signal, json, asked + 1);
    }
    throw new ApiError(res.status, body);
  }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const lines = block.split("\n");
      const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      const name = (lines.find((l) => l.startsWith("event:")) || "event: message").slice(6).trim();
      if (data) onEvent(JSON.parse(data), name);
    }
  }
}
async function sha256Hex(buf) {
  if (!crypto.subtle) return null;
  const d = await crypto.subtle.digest("SHA-256", buf);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
// Downloads a model file through fetch (so the token goes along) and checks its sha256.
async function download(path, filename, sha, statusEl) {
  statusEl.className = "loading muted";
  statusEl.textContent = "Downloading…";
  try {
    const res = await fetch(path, { headers: authHeaders() });
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
    const buf = await res.arrayBuffer();
    const got = await sha256Hex(buf);
    const a = h("a", { href: URL.createObjectURL(new Blob([buf], { type: "application/octet-stream" })), download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    if (got === null) {
      statusEl.className = "muted";
      statusEl.textContent = `Downloaded ${bytes(buf.byteLength)} (sha256 not checked: this page is not a secure context)`;
    } else if (got === sha) {
      statusEl.className = "ok";
      statusEl.textContent = `Downloaded ${bytes(buf.byteLength)}, sha256 verified (${got.slice(0, 12)}…)`;
    } else {
      statusEl.className = "error";
      statusEl.textContent = `sha256 mismatch: expected ${sha}, got ${got}`;
    }
    statusEl.dataset.sha256 = got || "";
  } catch (e) {
    statusEl.className = "error";
    statusEl.textContent = e.message;
  }
}
function confirmDialog(text, okLabel = "Delete") {
  const d = $("#confirm-dialog");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    d.addEventListener("close", function done() {
      d.removeEventListener("close", done);
      resolve(d.returnValue === "ok");
    });
    d.returnValue = "";
    d.showModal();
  });
}

// ---------- tables you can sort ----------
// cols: [{key, label, num, render(row), value(row)}]; rows clicked call onRow(row)
// A search trial's method, with the sample weighting of the teacher's lesson when there is one.
const hopMethod = (t) => (t.weighting ? `${t.method}+${t.weighting}` : t.method);

function table(id, cols, rows, { onRow, rowAttrs, sortKey, sortDir = 1 } = {}) {
  const state = { key: sortKey, dir: sortDir };
  const wrap = h("div", { class: "table-wrap" });
  const draw = () => {
    const col = cols.find((c) => c.key === state.key);
    const val = (r, c) => (c.value ? c.value(r) : r[c.key]);
    const sorted = col
      ? [...rows].sort((a, b) => {
          const x = val(a, col), y = val(b, col);
          if (x == null && y == null) return 0;
          if (x == null) return 1;
          if (y == null) return -1;
          return (x < y ? -1 : x > y ? 1 : 0) * state.dir;
        })
      : rows;
    const head = h("tr", {}, cols.map((c) =>
      h("th", { class: c.num ? "num" : "", scope: "col", title: c.title || null, "aria-sort": c.key === state.key ? (state.dir > 0 ? "ascending" : "descending") : null },
        c.sort === false ? c.label : h("button", { class: "sort", type: "button", onclick: () => {
          state.dir = state.key === c.key ? -state.dir : c.num ? -1 : 1;
          state.key = c.key;
          draw();
        } }, c.label))));
    const body = sorted.map((r) => {
      const attrs = rowAttrs ? rowAttrs(r) : {};
      if (onRow) {
        attrs.class = ((attrs.class || "") + " clickable").trim();
        attrs.tabindex = "0";
        attrs.onclick = () => onRow(r);
        attrs.onkeydown = (e) => { if (e.key === "Enter") onRow(r); };
      }
      return h("tr", attrs, cols.map((c) => h("td", { class: c.num ? "num" : "" }, c.render ? c.render(r) : r[c.key] ?? "–")));
    });
    wrap.replaceChildren(h("table", { id }, h("thead", {}, head), h("tbody", {}, body)));
  };
  draw();
  return wrap;
}

// ---------- charts (SVG; uPlot for curves) ----------
function barChart(id, items, { label = "", lowerBetter = null, highlight, digits = 3, width = 640 } = {}) {
  // items: [{name, value, tied}]
  const W = width, row = 22, left = Math.min(190, Math.round(width * 0.32)), H = items.length * row + 30;
  const vals = items.map((i) => i.value).filter((v) => v != null && isFinite(v));
  const lo = Math.min(0, ...vals), hi = Math.max(...vals, lo + 1e-9);
  const x = (v) => left + ((v - lo) / (hi - lo)) * (W - left - 70);
  const g = s("svg", { id, viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": label });
  items.forEach((it, k) => {
    const y = 10 + k * row;
    const fill = it.name === highlight ? "var(--accent)" : it.tied ? "var(--warn)" : "var(--muted)";
    g.append(s("text", { x: left - 6, y: y + 14, "text-anchor": "end", "font-size": 12, fill: "currentColor" }, it.name.length > 28 ? it.name.slice(0, 27) + "…" : it.name));
    if (it.value != null) {
      g.append(s("rect", { x: x(lo), y: y + 3, width: Math.max(1, x(it.value) - x(lo)), height: row - 7, fill, rx: 2 }, s("title", {}, `${it.name}: ${num(it.value)}`)));
      g.append(s("text", { x: x(it.value) + 4, y: y + 14, "font-size": 11, fill: "currentColor" }, num(it.value, digits)));
    }
  });
  g.append(s("text", { x: left, y: H - 4, "font-size": 11, fill: "currentColor" }, label + (lowerBetter === null ? "" : lowerBetter ? " (lower is better)" : " (higher is better)")));
  return h("div", { class: "bars" }, g);
}
// Intervals as horizontal lines with a dot at the estimate (items: [{name, value, low, high}]), on a 0..1
// axis, with an optional dashed reference line (e.g. the scratch student) and a shaded band around it (its
// interval, [low, high]).
function intervalChart(id, items, { label = "", reference = null, referenceLabel = "", referenceBand = null, highlight } = {}) {
  const W = 640, row = 22, left = 190, right = 40, H = items.length * row + 44;
  const lo = Math.max(0, Math.min(...items.map((i) => i.low), reference ?? 1, referenceBand ? referenceBand[0] : 1) - 0.05);
  const hi = Math.min(1, Math.max(...items.map((i) => i.high), reference ?? 0, referenceBand ? referenceBand[1] : 0) + 0.05);
  const x = (v) => left + ((v - lo) / Math.max(1e-9, hi - lo)) * (W - left - right);
  const g = s("svg", { id, viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": label });
  if (referenceBand) {
    g.append(s("rect", { class: "reference-band", x: x(referenceBand[0]), y: 4, width: Math.max(0, x(referenceBand[1]) - x(referenceBand[0])), height: items.length * row + 4, fill: "var(--bad)", "fill-opacity": 0.08 },
      s("title", {}, `${referenceLabel}: 80% interval ${pct(referenceBand[0])} to ${pct(referenceBand[1])}`)));
  }
  items.forEach((it, k) => {
    const y = 14 + k * row;
    const color = it.name === highlight ? "var(--accent)" : "var(--muted)";
    g.append(s("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 12, fill: "currentColor" }, it.name.length > 28 ? it.name.slice(0, 27) + "…" : it.name));
    g.append(s("line", { x1: x(it.low), x2: x(it.high), y1: y, y2: y, stroke: color, "stroke-width": 3, "stroke-linecap": "round" },
      s("title", {}, `${it.name}: ${pct(it.value)} (80% interval ${pct(it.low)} to ${pct(it.high)})`)));
    g.append(s("circle", { cx: x(it.value), cy: y, r: 4.5, fill: color }));
  });
  const bottom = 14 + items.length * row;
  for (let t = Math.ceil(lo * 10) / 10; t <= hi + 1e-9; t += 0.1) {
    g.append(s("text", { x: x(t), y: bottom + 6, "text-anchor": "middle", "font-size": 10, fill: "currentColor" }, (100 * t).toFixed(0) + "%"));
  }
  if (reference != null) {
    g.append(s("line", { x1: x(reference), x2: x(reference), y1: 4, y2: bottom - 6, stroke: "var(--bad)", "stroke-dasharray": "4 3" }));
    g.append(s("text", { x: x(reference) + 4, y: bottom + 20, "font-size": 11, fill: "var(--bad)" }, referenceLabel));
  }
  g.append(s("text", { x: left, y: H - 2, "font-size": 11, fill: "currentColor" }, label));
  return h("div", { class: "bars" }, g);
}
function histogram(id, classes) {
  return barChart(id, classes.map((c) => ({ name: c.name, value: c.count })), { label: "labeled rows per class", digits: 0 });
}
function curves(el, title, series, data) {
  // series: [{label, color}], data: [xs, ys1, ys2...]
  el.replaceChildren();
  if (!window.uPlot) { el.append(h("p", { class: "muted" }, "charts unavailable")); return null; }
  const width = Math.min(560, el.clientWidth || 560);
  return new uPlot({
    title, width, height: 220,
    scales: { x: { time: false } },
    // whole epochs only on the x axis (uPlot would otherwise tick at 1.5, 2.5 on short trainings)
    axes: [{ label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, {}],
    series: [{ label: "epoch" }, ...series.map((x) => ({ label: x.label, stroke: x.color, width: 2, spanGaps: true }))],
  }, data, el);
}
// The label map as a heat map: rows teacher classes (those carrying mass), columns task classes.
function heatMap(map, view) {
  const T = map.teacher_labels.length, S = map.task_labels.length;
  const mass = map.plan.map((r) => r.reduce((a, b) => a + b, 0));
  let rows = [...Array(T).keys()].sort((a, b) => mass[b] - mass[a]);
  const shown = rows.filter((i) => mass[i] > 0.002).slice(0, 30);
  const M = view === "cost" ? map.cost : view === "conditional" ? map.conditional : map.plan;
  const colMax = [...Array(S).keys()].map((j) => Math.max(1e-12, ...shown.map((i) => M[i][j])));
  const cell = (i, j) => {
    const v = M[i][j];
    const a = view === "plan" ? v / colMax[j] : view === "cost" ? 1 - v : v;
    const bg = view === "cost" ? `rgba(192,57,43,${(1 - a).toFixed(3)})` : `rgba(42,91,215,${a.toFixed(3)})`;
    return h("td", { style: `background:${bg};color:${(view === "cost" ? 1 - a : a) > 0.55 ? "#fff" : "inherit"}`,
      title: `${map.teacher_labels[i]} → ${map.task_labels[j]}: plan ${num(map.plan[i][j], 4)}, P(task|teacher) ${num(map.conditional[i][j], 3)}, cost ${num(map.cost[i][j], 3)}` },
      view === "plan" ? (v >= 0.0005 ? (100 * v).toFixed(1) : "") : num(v, 2));
  };
  const t = h("table", { id: "label-map-table" },
    h("thead", {}, h("tr", {}, h("th", { class: "rowname" }, "teacher ↓ / task →"), map.task_labels.map((n) => h("th", { scope: "col" }, n)))),
    h("tbody", {}, shown.map((i) => h("tr", {}, h("th", { class: "rowname", scope: "row" }, map.teacher_labels[i]), [...Array(S).keys()].map((j) => cell(i, j))))));
  const hidden = T - shown.length;
  return h("div", { class: "heat" }, t, hidden > 0 ? h("p", { class: "muted" }, `${hidden} teacher classes with almost no mass on this task are not shown.`) : null);
}

// ---------- router ----------
const routes = [];
const route = (re, fn) => routes.push([re, fn]);
let leave = [];
function onLeave(fn) { leave.push(fn); }
async function render() {
  leave.forEach((f) => { try { f(); } catch {} });
  leave = [];
  delete main.dataset.page;
  const hash = location.hash.replace(/^#/, "") || "/zoo";
  const top = hash.split("?")[0].split("/")[1];
  $$("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === top || (top === "teachers" && a.dataset.nav === "zoo") || (top === "compare" && a.dataset.nav === "students")));
  for (const [re, fn] of routes) {
    const m = hash.match(re);
    if (m) {
      show(loading("page"));
      try { await fn(...m.slice(1).map(decodeURIComponent)); }
      catch (e) { show(h("h1", {}, "Something went wrong"), errorBox("page-error", e.message)); }
      main.dataset.page = top;
      return;
    }
  }
  show(h("h1", {}, "Not found"), empty("No page " + hash + ". ", h("a", { href: "#/zoo" }, "Go to the zoo")));
}
window.addEventListener("hashchange", () => { render(); main.focus(); });
const go = (hash) => { location.hash = hash; };

// ---------- zoo ----------
async function allTeachers() {
  let out = [], token = null;
  do {
    const q = "/v1/teachers?page_size=500" + (token ? "&page_token=" + encodeURIComponent(token) : "");
    const page = await api(q);
    out = out.concat(page.teachers);
    token = page.next_page_token;
  } while (token);
  return out;
}
const arch = (t) => t.provenance.arch || t.provenance.architecture || t.provenance.model || t.producer || "–";
const inShape = (t) => shape(t.predictor ? t.predictor.input_shape : t.inputs[0] && t.inputs[0].shape);

function dropZone(id, accept, what, onFiles) {
  const input = h("input", { id: id + "-file", type: "file", accept, class: "visually-hidden", style: "position:absolute;opacity:0;width:1px;height:1px" });
  input.addEventListener("change", () => input.files.length && onFiles(input.files[0]));
  const zone = h("div", { id: id + "-drop", class: "drop", tabindex: "0", role: "button", "aria-label": "Upload " + what },
    h("p", {}, h("strong", {}, "Drop " + what + " here"), " or ", h("label", { for: id + "-file", style: "cursor:pointer;text-decoration:underline;font-weight:400" }, "choose a file")), input);
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); if (e.dataTransfer.files.length) onFiles(e.dataTransfer.files[0]); });
  return zone;
}

route(/^\/zoo$/, async () => {
  const teachers = await allTeachers();
  const search = h("input", { id: "zoo-search", type: "search", placeholder: "Search id, name, label, description", "aria-label": "Search teachers", size: 34 });
  const usable = h("select", { id: "zoo-usable", "aria-label": "Usable" }, h("option", { value: "" }, "usable or not"), h("option", { value: "yes" }, "usable"), h("option", { value: "no" }, "unusable"));
  const shapes = [...new Set(teachers.map(inShape))].sort();
  const shapeSel = h("select", { id: "zoo-shape", "aria-label": "Input shape" }, h("option", { value: "" }, "any input shape"), shapes.map((x) => h("option", { value: x }, x)));
  const holder = h("div", { id: "zoo-holder" });
  const cols = [
    { key: "id", label: "Teacher", render: (t) => h("a", { href: "#/teachers/" + encodeURIComponent(t.id) }, t.id) },
    { key: "labels", label: "Labels", value: (t) => t.labels.length, render: (t) => `${t.labels.length}: ${t.labels.slice(0, 4).join(", ")}${t.labels.length > 4 ? ", …" : ""}` },
    { key: "input", label: "Input", value: inShape, render: inShape },
    { key: "arch", label: "Architecture", value: arch, render: arch },
    { key: "params", label: "Parameters", num: true, render: (t) => count(t.params) },
    { key: "bytes", label: "Size", num: true, render: (t) => bytes(t.bytes) },
    { key: "usable", label: "Usable", value: (t) => (t.usable ? 1 : 0), render: (t) => (t.usable ? h("span", { class: "badge good" }, "usable") : h("span", { class: "badge bad", title: t.reason || "" }, "unusable")) },
  ];
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const rows = teachers.filter((t) =>
      (!q || [t.id, t.name, t.description || "", ...t.labels].join(" ").toLowerCase().includes(q)) &&
      (!usable.value || (usable.value === "yes") === t.usable) &&
      (!shapeSel.value || inShape(t) === shapeSel.value));
    holder.replaceChildren(
      h("p", { class: "muted", id: "zoo-count" }, `${rows.length} of ${teachers.length} teachers`),
      rows.length ? table("zoo-table", cols, rows, { onRow: (t) => go("#/teachers/" + encodeURIComponent(t.id)), rowAttrs: (t) => ({ "data-id": t.id }), sortKey: "id" })
        : empty(teachers.length ? "No teacher matches these filters." : "The zoo is empty: upload an ONNX classifier above."));
  };
  [search, usable, shapeSel].forEach((e) => e.addEventListener("input", draw));
  const bar = h("progress", { id: "teacher-progress", value: 0, max: 1, hidden: true });
  const msg = h("div", { id: "teacher-upload-result" });
  const labels = h("input", { id: "teacher-labels", placeholder: '["cat", "dog"] (optional)', size: 30 });
  const version = h("input", { id: "teacher-version", placeholder: "1", size: 6 });
  const zone = dropZone("teacher", ".onnx", "an ONNX classifier", async (file) => {
    const form = new FormData();
    form.append("file", file, file.name);
    if (version.value.trim()) form.append("version", version.value.trim());
    if (labels.value.trim()) form.append("labels", labels.value.trim());
    bar.hidden = false;
    bar.value = 0;
    msg.replaceChildren(h("p", { class: "loading muted" }, `Uploading ${file.name}…`));
    try {
      const r = await upload("/v1/teachers", form, bar);
      msg.replaceChildren(h("p", { class: "ok", id: "teacher-upload-ok" }, `Added ${r.body.id} `, h("a", { href: "#/teachers/" + encodeURIComponent(r.body.id) }, "open")));
      teachers.push(r.body);
      draw();
    } catch (e) {
      msg.replaceChildren(errorBox("teacher-error", `${file.name} was not added: ${e.message}`));
    } finally { bar.hidden = true; }
  });
  show(
    h("h1", {}, "Teacher zoo"),
    h("details", { class: "card" }, h("summary", {}, "Upload a teacher"),
      h("div", { class: "row", style: "margin:8px 0" }, h("label", { for: "teacher-version" }, "Version"), version, h("label", { for: "teacher-labels" }, "Labels"), labels),
      zone, bar, msg),
    h("div", { class: "row", style: "margin:14px 0 6px" }, search, usable, shapeSel),
    holder);
  $("details", main).open = teachers.length === 0;
  draw();
});

route(/^\/teachers\/(.+)$/, async (id) => {
  const t = await api("/v1/teachers/" + encodeURIComponent(id));
  const sig = (list) => table("sig-" + Math.random().toString(36).slice(2), [
    { key: "name", label: "name" }, { key: "elem_type", label: "type" }, { key: "shape", label: "shape", render: (x) => shape(x.shape) }], list);
  const del = h("button", { id: "teacher-delete", class: "danger", onclick: async () => {
    if (!(await confirmDialog(`Delete ${t.id} from the zoo? Its file is removed.`))) return;
    try { await api("/v1/teachers/" + encodeURIComponent(t.id), { method: "DELETE" }); toast(`Deleted ${t.id}`); go("#/zoo"); }
    catch (e) { main.prepend(errorBox("teacher-delete-error", e.message)); }
  } }, "Delete");
  const dl = h("span", { id: "teacher-download-status" });
  show(
    h("p", {}, h("a", { href: "#/zoo" }, "← Zoo")),
    h("h1", { id: "teacher-title" }, t.id, " ", t.usable ? h("span", { class: "badge good" }, "usable") : h("span", { class: "badge bad" }, "unusable")),
    t.usable ? null : errorBox("teacher-reason", t.reason || "unusable"),
    t.warnings.length ? h("ul", {}, t.warnings.map((w) => h("li", { class: "muted" }, w))) : null,
    h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h2", {}, "Model"), h("dl", { class: "kv", id: "teacher-detail" },
        h("dt", {}, "name"), h("dd", {}, t.name), h("dt", {}, "version"), h("dd", {}, t.version),
        h("dt", {}, "description"), h("dd", {}, t.description || "–"),
        h("dt", {}, "parameters"), h("dd", {}, count(t.params)), h("dt", {}, "file"), h("dd", {}, `${t.path} (${bytes(t.bytes)})`),
        h("dt", {}, "sha256"), h("dd", { class: "mono", id: "teacher-sha" }, t.sha256),
        h("dt", {}, "producer"), h("dd", {}, t.producer || "–"),
        h("dt", {}, "opsets"), h("dd", {}, Object.entries(t.opsets).map(([k, v]) => `${k || "ai.onnx"} ${v}`).join(", ") || "–"),
        h("dt", {}, "classes"), h("dd", {}, t.num_classes ?? "–"),
        h("dt", {}, "output"), h("dd", {}, t.predictor ? `${t.predictor.output} (${t.predictor.kind}${t.softmax_applied ? ", softmax applied" : ""})` : "–"),
        h("dt", {}, "indexed"), h("dd", {}, when(t.indexed_at))),
        h("div", { class: "row", style: "margin-top:12px" },
          h("button", { class: "primary", onclick: () => download("/v1/teachers/" + encodeURIComponent(t.id) + "/model.onnx", t.id.replace("@", "-v") + ".onnx", t.sha256, dl) }, "Download ONNX"),
          del, dl)),
      h("div", { class: "card" }, h("h2", {}, `Labels (${t.labels.length}, from ${t.label_source})`),
        h("p", { id: "teacher-labels-list" }, t.labels.join(", ") || "–"),
        h("h2", {}, "Metadata and card"),
        Object.keys(t.provenance).length ? h("dl", { class: "kv" }, Object.entries(t.provenance).map(([k, v]) => [h("dt", {}, k), h("dd", { class: v.length > 60 ? "mono" : "" }, v.length > 300 ? v.slice(0, 300) + "…" : v)])) : h("p", { class: "muted" }, "none"))),
    h("h2", {}, "Signature"), h("div", { class: "grid2" }, h("div", {}, h("h3", {}, "Inputs"), sig(t.inputs)), h("div", {}, h("h3", {}, "Outputs"), sig(t.outputs))));
});

// ---------- tasks ----------
// Datasets that are not another dataset's test split (those are held out, never trained on).
const trainable = (datasets) => datasets.filter((d) => !datasets.some((o) => o.test_dataset_id === d.id));
route(/^\/tasks(?:\?(.*))?$/, async (query) => {
  const path = `/v1/datasets?page_size=${pageSize(new URLSearchParams(query || ""))}`;
  const first = await api(path);
  const bar = h("progress", { id: "dataset-progress", value: 0, max: 1, hidden: true });
  const msg = h("div", { id: "dataset-upload-result" });
  const labelCol = h("input", { id: "dataset-label-column", placeholder: "label", size: 10 });
  const zone = dropZone("dataset", ".npz,.csv,.zip", "a dataset (.npz, .csv, or .zip of image folders)", async (file) => {
    const form = new FormData();
    form.append("file", file, file.name);
    if (labelCol.value.trim()) form.append("label_column", labelCol.value.trim());
    bar.hidden = false;
    msg.replaceChildren(h("p", { class: "loading muted" }, `Uploading ${file.name}…`));
    try {
      const r = await upload("/v1/datasets", form, bar);
      go("#/tasks/" + r.body.id);
    } catch (e) {
      msg.replaceChildren(errorBox("dataset-error", `${file.name} was not stored: ${e.message}`));
    } finally { bar.hidden = true; }
  });
  show(
    h("h1", {}, "Tasks"),
    h("div", { class: "card" }, h("h2", { style: "margin-top:0" }, "Upload a task dataset"),
      h("p", { class: "muted" }, ".npz with x, y (-1 = unlabeled) and optional labels / x_test / y_test; .csv with a header and a label column; .zip of <class>/<image> folders."),
      h("div", { class: "row", style: "margin-bottom:8px" }, h("label", { for: "dataset-label-column" }, "CSV label column"), labelCol),
      zone, bar, msg),
    paged(path, "datasets", first, (datasets, total) => {
      const visible = trainable(datasets);
      return [h("h2", { id: "datasets-heading" }, datasets.length < total ? `Datasets: the newest ${datasets.length} of ${total}` : "Datasets"),
        visible.length ? table("dataset-table", [
      { key: "name", label: "Name", render: (d) => h("a", { href: "#/tasks/" + d.id }, d.name) },
      { key: "id", label: "Id", render: (d) => h("code", {}, d.id) },
      { key: "format", label: "Format" },
      { key: "rows", label: "Rows", num: true },
      { key: "labeled", label: "Labeled", num: true },
      { key: "classes", label: "Classes", num: true, value: (d) => d.classes.length, render: (d) => d.classes.length },
      { key: "row_shape", label: "Row shape", render: (d) => shape(d.row_shape), value: (d) => shape(d.row_shape) },
      { key: "created", label: "Uploaded", num: true, render: (d) => when(d.created) },
    ], visible, { onRow: (d) => go("#/tasks/" + d.id), rowAttrs: (d) => ({ "data-id": d.id }), sortKey: "created", sortDir: -1 })
      : empty("No datasets yet: drop one above.")];
    }));
});

function sampleGrid(sm) {
  const byClass = new Map();
  for (const x of sm.samples) { if (!byClass.has(x.class)) byClass.set(x.class, []); byClass.get(x.class).push(x); }
  return h("div", { class: "samples", id: "sample-grid" }, [...byClass].map(([cls, xs]) => h("div", { class: "cls" }, h("span", { title: cls }, cls), xs.map((x) => {
    const c = h("canvas", { width: sm.width, height: sm.height, title: `${cls} (row ${x.row})` });
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(sm.width, sm.height);
    const n = sm.width * sm.height;
    for (let p = 0; p < n; p++) {
      const r = x.pixels[p], g = sm.channels === 3 ? x.pixels[n + p] : r, b = sm.channels === 3 ? x.pixels[2 * n + p] : r;
      img.data.set([r, g, b, 255], 4 * p);
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }))));
}

route(/^\/tasks\/([^/]+)$/, async (id) => {
  const d = await api("/v1/datasets/" + encodeURIComponent(id));
  const isImage = (d.row_shape.length === 2) || (d.row_shape.length === 3 && [1, 3].includes(d.row_shape[0]));
  const samples = h("div", {}, isImage ? loading("samples") : h("p", { class: "muted" }, `Rows of shape ${shape(d.row_shape)} are not images.`));
  const rankMsg = h("div", { id: "rank-result" });
  const rankBtn = h("button", { id: "rank-btn", class: "primary", onclick: async () => {
    rankBtn.disabled = true;
    // streamed: each teacher as it is scored, then the ranking
    const bar = h("progress", { id: "rank-progress", max: 1, value: 0 });
    const line = h("p", { class: "loading muted", id: "rank-status" }, "Ranking the zoo (teacher outputs are computed once and cached)…");
    rankMsg.replaceChildren(line, bar);
    let best = null;
    const lower = (m) => ["ot", "ot_pool", "ot_prototype"].includes(m);
    try {
      let done = null, failed = null;
      await follow("/v1/rankings/stream", (ev, name) => {
        if (name === "teacher") {
          bar.max = ev.total;
          bar.value = ev.done;
          const t = ev.teacher, v = t.scores && t.scores.ot;
          if (t.compatible && v != null && (best === null || (lower("ot") ? v < best.v : v > best.v))) best = { id: t.teacher_id, v };
          line.textContent = `Scored ${ev.done} of ${ev.total} teachers` + (best ? `; best so far by ot: ${best.id} (${num(best.v)})` : "");
        } else if (name === "ranking") done = ev;
        else if (name === "error") failed = ev.error;
      }, undefined, { dataset_id: d.id });
      if (failed || !done) throw new Error(failed || "the ranking stream ended early");
      go("#/rankings/" + done.id);
    } catch (e) { rankMsg.replaceChildren(errorBox("rank-error", e.message)); rankBtn.disabled = false; }
  } }, "Rank the zoo for this task");
  const del = h("button", { id: "dataset-delete", class: "danger", onclick: async () => {
    if (!(await confirmDialog(`Delete dataset ${d.name} (${d.id})?`))) return;
    try { await api("/v1/datasets/" + d.id, { method: "DELETE" }); go("#/tasks"); } catch (e) { rankMsg.replaceChildren(errorBox("dataset-delete-error", e.message)); }
  } }, "Delete");
  show(
    h("p", {}, h("a", { href: "#/tasks" }, "← Tasks")),
    h("h1", { id: "dataset-title" }, d.name),
    h("div", { class: "row" }, rankBtn, h("a", { class: "button", href: `#/jobs?dataset=${d.id}` }, "Distill…"), del), rankMsg,
    h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h2", { style: "margin-top:0" }, "Rows"), h("dl", { class: "kv", id: "dataset-detail" },
        h("dt", {}, "id"), h("dd", { class: "mono" }, d.id), h("dt", {}, "format"), h("dd", {}, d.format),
        h("dt", {}, "rows"), h("dd", { id: "dataset-rows" }, d.rows),
        h("dt", {}, "labeled"), h("dd", { id: "dataset-labeled" }, d.labeled),
        h("dt", {}, "unlabeled"), h("dd", { id: "dataset-unlabeled" }, d.unlabeled),
        h("dt", {}, "row shape"), h("dd", {}, shape(d.row_shape)),
        h("dt", {}, "classes"), h("dd", {}, d.classes.length),
        h("dt", {}, "test split"), h("dd", {}, d.test_dataset_id ? h("code", {}, d.test_dataset_id) : "none"),
        h("dt", {}, "sha256"), h("dd", { class: "mono" }, d.sha256),
        h("dt", {}, "uploaded"), h("dd", {}, when(d.created)))),
      h("div", { class: "card" }, h("h2", { style: "margin-top:0" }, "Class histogram"), histogram("class-histogram", d.classes))),
    h("h2", {}, "Sample images"), samples);
  if (isImage) {
    try { samples.replaceChildren(sampleGrid(await api(`/v1/datasets/${d.id}/samples?per_class=8`))); }
    catch (e) { samples.replaceChildren(errorBox("samples-error", e.message)); }
  }
});

// ---------- rankings ----------
route(/^\/rankings(?:\?(.*))?$/, async (query) => {
  const path = `/v1/rankings?page_size=${pageSize(new URLSearchParams(query || ""))}`;
  const first = await api(path);
  show(h("h1", {}, "Rankings"),
    h("p", { class: "muted" }, "Rank a task from its page (Tasks → a dataset → Rank). Newest first:"),
    paged(path, "rankings", first, (rankings, total) => [
      rankings.length < total ? h("p", { class: "muted", id: "rankings-shown" }, `the newest ${rankings.length} of ${total}`) : null,
      rankings.length ? table("ranking-list", [
        { key: "id", label: "Ranking", render: (r) => h("a", { href: "#/rankings/" + r.id }, r.id) },
        { key: "dataset_id", label: "Dataset", render: (r) => h("a", { href: "#/tasks/" + r.dataset_id }, r.dataset_id) },
        { key: "recommended", label: "Recommended" },
        { key: "teacher_helps", label: "Verdict", value: (r) => (r.teacher_helps ? 1 : 0), render: (r) => h("span", { class: "badge " + (r.teacher_helps ? "good" : "bad") }, (r.teacher_helps ? "teacher helps" : "scratch") + (r.confident ? "" : " (lean)")) },
        { key: "compatible", label: "Compatible", num: true, render: (r) => `${r.compatible} of ${r.teachers}` },
        { key: "primary_metric", label: "Metric" },
        { key: "created", label: "When", num: true, render: (r) => when(r.created) }], rankings, { onRow: (r) => go("#/rankings/" + r.id), rowAttrs: (r) => ({ "data-id": r.id }), sortKey: "created", sortDir: -1 })
        : empty("No rankings yet. ", h("a", { href: "#/tasks" }, "Pick a task"))]));
});

route(/^\/rankings\/([^/]+)$/, async (id) => {
  const r = await api("/v1/rankings/" + encodeURIComponent(id));
  const primary = r.primary_metric;
  const lowerBetter = r.directions[primary] === "lower";
  const compatible = r.results.filter((x) => x.compatible && x.rank != null).sort((a, b) => a.rank - b.rank);
  const top = compatible[0];
  const metrics = Object.keys(r.directions).filter((m) => compatible.some((x) => m in x.scores));
  const v = r.verdict;
  const mapHolder = h("div", { id: "label-map" });
  let selected = top && top.teacher_id;
  let view = "plan";
  const showMap = async (tid) => {
    selected = tid;
    $$("#ranking-table tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === tid));
    mapHolder.replaceChildren(loading("label map of " + tid));
    try {
      const m = await api(`/v1/rankings/${r.id}/teachers/${encodeURIComponent(tid)}/label_map`);
      const views = h("div", { class: "row", role: "radiogroup", "aria-label": "Heat map" }, [["plan", "transport plan (% of labeled rows)"], ["conditional", "P(task class | teacher class)"], ["cost", "OT cost"]].map(([k, label]) =>
        h("label", { style: "font-weight:400" }, h("input", { type: "radio", name: "lm-view", value: k, checked: k === view, onchange: () => { view = k; showMap(tid); } }), " " + label)));
      mapHolder.replaceChildren(
        h("h2", {}, `Label map of ${tid}`),
        h("p", { class: "muted" }, `Which of the teacher's classes teach which of the task's, from ${m.labeled_rows} labeled rows.` + (m.name_matches.length ? ` ${m.name_matches.length} class names match.` : "")),
        h("ul", { id: "label-pairs" }, m.pairs.map((p) => h("li", {}, h("strong", {}, p.teacher_class), " → ", h("strong", {}, p.task_class),
          h("span", { class: "muted" }, ` (${pct(p.share)} of its mass; P = ${num(p.conditional, 2)})`)))),
        views, heatMap(m, view));
    } catch (e) { mapHolder.replaceChildren(errorBox("label-map-error", e.message)); }
  };
  const cols = [
    { key: "rank", label: "Rank", num: true, value: (x) => x.rank ?? 1e9, render: (x) => x.rank ?? "–" },
    { key: "teacher_id", label: "Teacher", render: (x) => h("span", {}, h("a", { href: "#/teachers/" + encodeURIComponent(x.teacher_id), onclick: (e) => e.stopPropagation() }, x.teacher_id),
      x.tied_with_top && x.rank !== 1 ? h("span", { class: "badge warn", title: `within noise of the top teacher (gap ${num(x.gap_z, 1)} standard errors)` }, " tied") : null,
      x.same_classes ? h("span", { class: "badge good", title: "its labels are exactly the task's classes: kd can use its outputs directly, and among teachers within noise of the top it is ranked first" }, "own labels") : null) },
    ...metrics.map((m) => ({ key: "m_" + m, label: m + (m === primary ? " ★" : ""), num: true, value: (x) => x.scores[m], render: (x) => num(x.scores[m], 4) })),
    { key: "expected", label: "Expected student acc.", num: true, value: (x) => x.expected_accuracy && x.expected_accuracy.estimate,
      render: (x) => (x.expected_accuracy ? h("span", { title: "80% interval; held out by task the estimate was off by 7 points on average" }, `${pct(x.expected_accuracy.estimate)} [${(100 * x.expected_accuracy.low).toFixed(0)}, ${(100 * x.expected_accuracy.high).toFixed(0)}]`) : "–") },
    { key: "params", label: "Params", num: true, render: (x) => count(x.params) },
    { key: "notes", label: "Notes", sort: false, render: (x) => x.compatible ? (x.notes.join("; ") || "") : h("span", { class: "muted" }, x.reason) },
  ];
  const verdictCard = h("div", { class: "card", id: "verdict" },
    h("h2", { style: "margin-top:0" }, "Verdict"),
    top ? h("p", { id: "recommendation" }, "Recommended teacher: ", h("strong", {}, top.teacher_id), ` (${primary} ${num(top.score)})`) : h("p", {}, "No compatible teacher."),
    top && top.expected_accuracy ? h("p", { id: "expected" }, "Expected accuracy of a student taught by it: ", h("strong", {}, pct(top.expected_accuracy.estimate)),
      h("span", { class: "muted" }, ` (80% interval ${pct(top.expected_accuracy.low)} to ${pct(top.expected_accuracy.high)}; the default student mlp:256; off by 7 points on average on tasks it was not fitted on)`)) : null,
    h("p", { id: "verdict-text" }, h("span", { class: "badge " + (v.teacher_helps ? "good" : "bad") }, v.teacher_helps ? "the teacher should help" : "train from scratch"), " ",
      h("span", { class: "badge " + (v.confident ? "good" : "warn") }, v.confident ? "confident" : "a lean, not a finding"), " ", v.reason),
    h("dl", { class: "kv" }, h("dt", {}, "teacher estimate"), h("dd", {}, pct(v.teacher_estimate)), h("dt", {}, "scratch estimate"), h("dd", {}, pct(v.scratch_estimate)),
      h("dt", {}, "scratch student (expected)"), h("dd", { id: "expected-scratch" }, v.expected_scratch_accuracy ? `${pct(v.expected_scratch_accuracy.estimate)} (80% interval ${pct(v.expected_scratch_accuracy.low)} to ${pct(v.expected_scratch_accuracy.high)})` : "–"),
      h("dt", {}, "expected gain over scratch"), h("dd", { id: "expected-gain", title: "a rule fitted on the ground-truth tasks: how much better students taught by teachers with these two estimates came out than scratch students" }, v.expected_gain == null ? "–" : `${v.expected_gain >= 0 ? "+" : ""}${(100 * v.expected_gain).toFixed(1)} points`),
      h("dt", {}, "z"), h("dd", {}, num(v.z, 2)), h("dt", {}, "tied with the top"), h("dd", {}, v.tied.join(", ") || "none"),
      h("dt", {}, "labeled rows"), h("dd", { id: "ranked-rows" }, rankedRows(r))),
    top ? h("a", { class: "button primary", id: "distill-top", href: `#/jobs?dataset=${r.dataset_id}&teacher=${encodeURIComponent(top.teacher_id)}` }, "Distill from " + top.teacher_id) : null);
  show(
    h("p", {}, h("a", { href: "#/tasks/" + r.dataset_id }, "← Task " + r.dataset_id)),
    h("h1", {}, "Ranking ", h("code", {}, r.id)),
    h("div", { class: "grid2" }, verdictCard,
      h("div", { class: "card" }, h("h2", { style: "margin-top:0" }, `${primary} per teacher`),
        compatible.length ? barChart("score-chart", compatible.map((x) => ({ name: x.teacher_id, value: x.score, tied: x.tied_with_top })), { label: primary, lowerBetter, highlight: top && top.teacher_id }) : empty("No compatible teacher."))),
    compatible.some((x) => x.expected_accuracy) ? h("div", { class: "card", style: "margin-top:16px" },
      h("h2", { style: "margin-top:0" }, "Expected student accuracy per teacher"),
      h("p", { class: "muted" }, v.expected_scratch_accuracy
        ? `The default student (mlp:256, faculty) taught by each teacher: estimate and 80% interval; the dashed line and the shaded band are the same student trained on the labeled rows alone (expected ${pct(v.expected_scratch_accuracy.estimate)}, 80% interval ${pct(v.expected_scratch_accuracy.low)} to ${pct(v.expected_scratch_accuracy.high)}). Held out by task the estimates were off by 7 and 9 points on average.`
        : "The default student (mlp:256, faculty) taught by each teacher: estimate and 80% interval; the dashed line is the scratch estimate (labeled rows alone). Held out by task the estimate was off by 7 points on average."),
      intervalChart("expected-chart", compatible.filter((x) => x.expected_accuracy).sort((a, b) => b.expected_accuracy.estimate - a.expected_accuracy.estimate).slice(0, 25)
        .map((x) => ({ name: x.teacher_id, value: x.expected_accuracy.estimate, low: x.expected_accuracy.low, high: x.expected_accuracy.high })),
        { label: "expected test accuracy", reference: v.expected_scratch_accuracy ? v.expected_scratch_accuracy.estimate : v.scratch_estimate, referenceLabel: v.expected_scratch_accuracy ? "scratch student (expected)" : "scratch estimate",
          referenceBand: v.expected_scratch_accuracy ? [v.expected_scratch_accuracy.low, v.expected_scratch_accuracy.high] : null, highlight: top && top.teacher_id })) : null,
    h("h2", {}, "Every metric"), h("p", { class: "muted" }, "★ orders the teachers. Click a row to see its label map. " + metrics.map((m) => `${m}: ${r.directions[m]} is better`).join("; ")),
    table("ranking-table", cols, r.results, { onRow: (x) => x.compatible && showMap(x.teacher_id), rowAttrs: (x) => ({ "data-id": x.teacher_id, class: x.compatible ? "" : "muted" }), sortKey: "rank" }),
    mapHolder);
  if (selected) showMap(selected);
});

// A list the server pages newest first (`path` with its page size; `field` the page's array): `render`
// draws the items held so far (and the total) into the returned box, under which a button fetches the
// next page until there is none.
function paged(path, field, first, render) {
  const box = h("div", { id: field + "-paged" });
  const items = first[field];
  let next = first.next_page_token;
  const draw = () => {
    const more = next ? h("button", { id: field + "-more", onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const p = await api(`${path}&page_token=${encodeURIComponent(next)}`);
        items.push(...p[field]);
        next = p.next_page_token;
        draw();
      } catch (e) { box.append(errorBox(field + "-more-error", e.message)); ev.target.disabled = false; }
    } }, `Show older ${field}`) : null;
    box.replaceChildren(...[render(items, first.total), more].flat().filter(Boolean));
  };
  draw();
  return box;
}
const pageSize = (params) => Math.min(500, Math.max(1, Number(params.get("page_size")) || 200));

// ---------- jobs ----------
const METHODS = {
  scratch: "cross-entropy on the labeled rows only (the baseline)",
  kd: "Hinton KD (the teacher shares the task's label names)",
  faculty: "cross-label OT distillation (any teacher)",
  transfer: "representation transfer",
  auto: "the best of kd / faculty / transfer on validation",
  multihop: "a chain of intermediate students",
  multi_teacher: "several teachers fused into one lesson",
  weight_fusion: "teachers of one MLP family fused in weight space",
};
const USES = { // which fields apply to each method
  teacher: ["kd", "faculty", "transfer", "auto", "multihop"],
  teachers: ["multi_teacher", "weight_fusion"],
  fusion: ["multi_teacher"],
  weighting: ["kd", "faculty", "transfer", "auto", "multihop"],
  multihop: ["multihop"],
  weight_fusion: ["weight_fusion"],
  student: ["scratch", "kd", "faculty", "transfer", "auto", "multihop", "multi_teacher"],
  distill: ["kd", "faculty", "transfer", "auto", "multihop", "multi_teacher"],
};
function field(id, label, input, hint) {
  return h("div", {}, h("label", { for: id }, label), input, hint ? h("span", { class: "hint" }, hint) : null);
}
function jobStateBadge(j) {
  const cls = { succeeded: "good", failed: "bad", cancelled: "warn" }[j.state] || "";
  return h("span", { class: "badge " + cls, "data-state": j.state }, j.state);
}

route(/^\/jobs(?:\?(.*))?$/, async (query) => {
  const params = new URLSearchParams(query || "");
  const jobsPath = `/v1/jobs?page_size=${pageSize(params)}`;
  const [{ datasets }, teachers, jobsPage] = await Promise.all([api("/v1/datasets?page_size=500"), allTeachers(), api(jobsPath)]);
  const usable = teachers.filter((t) => t.usable);
  const sel = (id, options, value) => h("select", { id }, options.map(([v, l]) => h("option", { value: v, selected: v === value }, l)));
  const input = (id, attrs) => h("input", { id, ...attrs });
  const f = {
    dataset: sel("job-dataset", trainable(datasets).map((d) => [d.id, `${d.name} (${d.id}, ${d.labeled} labeled)`]), params.get("dataset")),
    method: sel("job-method", Object.entries(METHODS).map(([k, v]) => [k, `${k}: ${v}`]), params.get("method") || "faculty"),
    teacher: sel("job-teacher", [["auto", "auto (the ranking's recommendation)"], ...usable.map((t) => [t.id, t.id])], params.get("teacher") || "auto"),
    teachers: input("job-teachers", { placeholder: "auto:3 or id1, id2", value: "auto:3" }),
    fusion: sel("job-fusion", ["auto", "mean", "weighted", "plurality", "borda", "loss_avg", "mimic_all"].map((x) => [x, x])),
    weighting: sel("job-weighting", [["none", "none"], ["profweight", "ProfWeight"], ["sratio", "SRatio"], ["auto", "auto (try each)"]]),
    student: input("job-student", { placeholder: "mlp:256", list: "student-specs" }),
    max_epochs: input("job-max-epochs", { type: "number", min: 1, placeholder: "100" }),
    seed: input("job-seed", { type: "number", min: 0, placeholder: "0" }),
    patience: input("job-patience", { type: "number", min: 1, placeholder: "25" }),
    lr: input("job-lr", { type: "number", step: "any", min: 0, placeholder: "0.003" }),
    temperature: input("job-temperature", { type: "number", step: "any", min: 0, placeholder: "4" }),
    ot_weight: input("job-ot-weight", { type: "number", step: "any", min: 0, placeholder: "1" }),
    max_params: input("job-max-params", { type: "number", min: 1, placeholder: "no limit" }),
    max_latency: input("job-max-latency", { type: "number", step: "any", min: 0, placeholder: "no limit" }),
    probes: input("job-probes", { placeholder: "default: the deepest 4 layers" }),
    eval_dataset: sel("job-eval-dataset", [["", "the dataset's own test split, if any"], ...datasets.map((d) => [d.id, `${d.name} (${d.id}, ${d.rows} rows)`])]),
    batch_size: input("job-batch-size", { type: "number", min: 1, placeholder: "128" }),
    weight_decay: input("job-weight-decay", { type: "number", step: "any", min: 0, placeholder: "1e-4" }),
    val_fraction: input("job-val-fraction", { type: "number", step: "any", min: 0, max: 0.9, placeholder: "0.2" }),
    alpha: input("job-alpha", { type: "number", step: "any", min: 0, max: 1, placeholder: "0.5" }),
    ot_epsilon: input("job-ot-epsilon", { type: "number", step: "any", min: 0, placeholder: "0.02" }),
    sratio_beta: input("job-sratio-beta", { type: "number", step: "any", min: 0, placeholder: "3" }),
    scratch_fallback: h("input", { id: "job-scratch-fallback", type: "checkbox", checked: true }),
    multihop: h("textarea", { id: "job-multihop", rows: 2, placeholder: '{"max_hops": 2, "candidates": "auto"} (or "zoo", or ["mlp:64", "a_zoo_id"])' }),
    weight_fusion: h("textarea", { id: "job-weight-fusion", rows: 2, placeholder: '{"align": "activations", "fine_tune_epochs": 20}' }),
    name: input("job-name", { placeholder: "default: dataset, method, student" }),
  };
  const specs = h("datalist", { id: "student-specs" }, ["linear", "mlp:256", "mlp:64", "mlp:128,64", "cnn", "cnn:8,16:64", "tree:6"].map((x) => h("option", { value: x })));
  const groups = {};
  const group = (key, legend, ...fields) => (groups[key] = h("fieldset", { id: "fs-" + key }, h("legend", {}, legend), h("div", { class: "form-grid" }, fields)));
  const sync = () => {
    const m = f.method.value;
    for (const [key, methods] of Object.entries(USES)) if (groups[key]) {
      const on = methods.includes(m);
      groups[key].disabled = !on;
      groups[key].title = on ? "" : `does not apply to ${m}`;
    }
  };
  f.method.addEventListener("change", sync);
  const msg = h("div", { id: "job-submit-result" });
  const submit = h("button", { id: "job-submit", class: "primary", type: "submit" }, "Start job");
  const form = h("form", { id: "job-form", class: "card", onsubmit: async (e) => {
    e.preventDefault();
    const m = f.method.value;
    const req = { dataset_id: f.dataset.value, method: m };
    const on = (k) => USES[k].includes(m);
    if (on("teacher")) req.teacher = f.teacher.value;
    if (on("teachers")) {
      const t = f.teachers.value.trim();
      if (t) req.teachers = t.startsWith("auto") ? t : t.split(",").map((x) => x.trim()).filter(Boolean);
    }
    if (on("fusion")) req.fusion = f.fusion.value;
    if (on("weighting") && f.weighting.value !== "none") req.weighting = f.weighting.value;
    if (on("student") && f.student.value.trim()) req.student = f.student.value.trim();
    if (on("student") && (f.max_params.value || f.max_latency.value)) {
      const auto = {};
      if (f.max_params.value) auto.max_params = Number(f.max_params.value);
      if (f.max_latency.value) auto.max_latency_ms = Number(f.max_latency.value);
      req.student = { auto };
    }
    if (on("weighting") && f.weighting.value !== "none" && f.probes.value.trim()) req.probes = f.probes.value.split(",").map((x) => x.trim()).filter(Boolean);
    if (f.eval_dataset.value) req.eval_dataset_id = f.eval_dataset.value;
    const config = {};
    const distillOnly = ["temperature", "ot_weight", "alpha", "ot_epsilon", "sratio_beta"];
    for (const k of ["max_epochs", "patience", "seed", "lr", "temperature", "ot_weight", "batch_size", "weight_decay", "val_fraction", "alpha", "ot_epsilon", "sratio_beta"])
      if (f[k].value !== "" && (on("distill") || !distillOnly.includes(k))) config[k] = Number(f[k].value);
    if (on("distill") && !f.scratch_fallback.checked) config.scratch_fallback = false;
    if (Object.keys(config).length) req.config = config;
    try {
      if (on("multihop") && f.multihop.value.trim()) req.multihop = JSON.parse(f.multihop.value);
      if (on("weight_fusion") && f.weight_fusion.value.trim()) req.weight_fusion = JSON.parse(f.weight_fusion.value);
    } catch (err) { msg.replaceChildren(errorBox("job-error", "settings are not valid JSON: " + err.message)); return; }
    if (f.name.value.trim()) req.name = f.name.value.trim();
    submit.disabled = true;
    try { const j = await api("/v1/jobs", { json: req }); go("#/jobs/" + j.id); }
    catch (err) { msg.replaceChildren(errorBox("job-error", err.message)); }
    finally { submit.disabled = false; }
  } },
    h("h2", { style: "margin-top:0" }, "Start a distillation job"),
    datasets.length ? null : errorBox("job-no-data", "Upload a dataset first (Tasks)."),
    h("div", { class: "form-grid", style: "margin-bottom:12px" }, field("job-dataset", "Dataset", f.dataset), field("job-method", "Method", f.method), field("job-name", "Student name", f.name)),
    h("div", { class: "fieldsets" },
    group("teacher", "Teacher", field("job-teacher", "Teacher", f.teacher)),
    group("teachers", "Teachers (multi-teacher, weight fusion)", field("job-teachers", "Teachers", f.teachers, "ids, comma-separated, or auto:K")),
    group("fusion", "Fusion rule", field("job-fusion", "Fusion", f.fusion)),
    group("student", "Student", field("job-student", "Architecture", f.student, "linear, mlp[:W1,W2][:act], cnn[:C1,C2][:HIDDEN], tree[:DEPTH]"), specs,
      field("job-max-params", "or a budget: max parameters", f.max_params, "the largest student within the budget"), field("job-max-latency", "max latency (ms / row)", f.max_latency)),
    group("weighting", "Sample weights", field("job-weighting", "Weighting", f.weighting, "from probes on the teacher's layers"), field("job-probes", "Probe layers", f.probes, "tensor names, comma-separated")),
    h("fieldset", { id: "fs-config" }, h("legend", {}, "Training"), h("div", { class: "form-grid" },
      field("job-max-epochs", "Max epochs", f.max_epochs), field("job-patience", "Patience (epochs)", f.patience), field("job-seed", "Seed", f.seed), field("job-lr", "Learning rate", f.lr),
      field("job-batch-size", "Batch size", f.batch_size), field("job-weight-decay", "Weight decay", f.weight_decay), field("job-val-fraction", "Validation fraction", f.val_fraction),
      field("job-eval-dataset", "Test rows", f.eval_dataset, "accuracy reported on them, never trained on"))),
    group("distill", "Distillation", field("job-temperature", "Temperature", f.temperature), field("job-alpha", "KD alpha", f.alpha), field("job-ot-weight", "OT weight", f.ot_weight),
      field("job-ot-epsilon", "OT epsilon", f.ot_epsilon), field("job-sratio-beta", "SRatio beta", f.sratio_beta),
      h("div", {}, h("label", { for: "job-scratch-fallback" }, "Never worse than scratch"), h("span", { class: "row" }, f.scratch_fallback, h("span", { class: "hint" }, "deliver the scratch student when it beats the distilled one on validation")))),
    group("multihop", "Multihop", field("job-multihop", "Settings (JSON)", f.multihop)),
    group("weight_fusion", "Weight fusion", field("job-weight-fusion", "Settings (JSON)", f.weight_fusion))),
    h("div", { class: "row" }, submit), msg);
  sync();
  show(h("h1", {}, "Jobs"), form, paged(jobsPath, "jobs", jobsPage, (jobs, total) => [
    h("h2", { id: "jobs-heading" }, jobs.length < total ? `The newest ${jobs.length} of ${total} jobs` : "All jobs"),
    jobs.length ? table("job-table", [
      { key: "id", label: "Job", render: (j) => h("a", { href: "#/jobs/" + j.id }, j.id) },
      { key: "state", label: "State", render: jobStateBadge },
      { key: "method", label: "Method", value: (j) => j.request.method, render: (j) => j.request.method },
      { key: "teacher", label: "Teacher", value: (j) => (j.teacher ? j.teacher.id : j.request.teacher), render: (j) => (j.teacher ? j.teacher.id : j.request.method === "scratch" ? "–" : j.request.teacher) },
      { key: "dataset_id", label: "Dataset" },
      { key: "progress", label: "Progress", num: true, render: (j) => pct(j.progress) },
      { key: "created", label: "Created", num: true, render: (j) => when(j.created) },
    ], jobs, { onRow: (j) => go("#/jobs/" + j.id), rowAttrs: (j) => ({ "data-id": j.id }), sortKey: "created", sortDir: -1 }) : empty("No jobs yet.")]));
});

function chainView(nodes) {
  const out = [];
  nodes.forEach((n, k) => {
    if (k) out.push(h("span", { class: "arrow", "aria-hidden": "true" }, "→"));
    out.push(h("div", { class: "node " + (n.kind || "") }, h("div", {}, h("strong", {}, n.name)), n.detail ? h("div", { class: "muted", style: "font-size:12px" }, n.detail) : null));
  });
  return h("div", { class: "chain", id: "job-chain", role: "list" }, out);
}

route(/^\/jobs\/([^/?]+)$/, async (id) => {
  let job = await api("/v1/jobs/" + encodeURIComponent(id));
  const stateEl = h("span", { id: "job-state" });
  const phase = h("span", { id: "job-phase" });
  const bar = h("progress", { id: "job-progress", max: 1, value: 0 });
  const epochsEl = h("span", { id: "job-epochs", class: "muted" });
  const lossEl = h("div", { id: "loss-chart", class: "chart" });
  const accEl = h("div", { id: "acc-chart", class: "chart" });
  const chainEl = h("div", {});
  const result = h("div", { id: "job-result" });
  const cancel = h("button", { id: "job-cancel", class: "danger", onclick: async () => {
    cancel.disabled = true;
    try { update(await api(`/v1/jobs/${job.id}/cancel`, { method: "POST" })); }
    catch (e) { result.replaceChildren(errorBox("job-cancel-error", e.message)); cancel.disabled = false; }
  } }, "Cancel");
  // A job with several trainings (transfer's stages, a search's trials) draws one training at a time:
  // the latest, or the one picked.
  let loss = null, acc = null, shown = "", picked = null;
  const stageSel = h("select", { id: "job-stage", "aria-label": "Training shown", hidden: true, onchange: () => { picked = stageSel.value; shown = ""; draw(); } });
  const stageOf = (e) => e.stage || "training";
  const draw = () => {
    const all = job.epochs;
    const stages = [...new Set(all.map(stageOf))];
    const stage = picked && stages.includes(picked) ? picked : stages.at(-1);
    const key = `${(job.epochs_dropped || 0) + all.length}/${stage}/${job.state}`;
    if (key === shown) return;
    shown = key;
    stageSel.hidden = stages.length < 2;
    $("#job-stage-label") && ($("#job-stage-label").hidden = stages.length < 2);
    stageSel.replaceChildren(...stages.map((st) => h("option", { value: st, selected: st === stage }, `${st} (${all.filter((e) => stageOf(e) === st).length} epochs)`)));
    const ep = all.filter((e) => stageOf(e) === stage);
    if (!ep.length) {
      // a finished job without epochs grew a tree (or stopped before its first epoch)
      const over = !["queued", "running"].includes(job.state);
      const tree = String(job.request.student || "").startsWith("tree");
      lossEl.replaceChildren(h("p", { class: "muted", id: "job-no-curves" }, !over ? "Curves appear with the first epoch."
        : tree ? "No training curves: a tree student is grown in one pass, not trained by epochs." : "No epochs were recorded."));
      return;
    }
    const xs = ep.map((e, k) => k + 1);
    const col = (k) => ep.map((e) => (e[k] == null ? null : e[k]));
    lossEl.setAttribute("aria-label", `loss curves: ${ep.length} epochs of ${stage}`);
    accEl.setAttribute("aria-label", `validation accuracy: ${ep.length} epochs of ${stage}`);
    const ld = [xs, col("train_loss"), col("val_loss"), col("distill_loss")];
    const ad = [xs, col("val_accuracy")];
    if (loss) loss.setData(ld); else loss = curves(lossEl, "loss", [{ label: "train", color: "#2a5bd7" }, { label: "validation", color: "#c0392b" }, { label: "distill term", color: "#b7791f" }], ld);
    if (acc) acc.setData(ad); else acc = curves(accEl, "validation accuracy", [{ label: "validation accuracy", color: "#1e8a4c" }], ad);
  };
  const update = (j) => {
    job = j;
    stateEl.replaceChildren(jobStateBadge(j));
    phase.textContent = j.phase;
    bar.value = j.progress;
    bar.setAttribute("aria-valuenow", String(j.progress));
    const last = j.epochs.at(-1);
    const over = !["queued", "running"].includes(j.state);
    epochsEl.textContent = last ? `${over ? "last training: " : ""}${last.stage ? last.stage + ", " : ""}epoch ${last.epoch}${last.val_accuracy != null ? `, validation accuracy ${pct(last.val_accuracy)}` : ""}${j.epochs_dropped ? ` (the ${j.epochs_dropped} epochs of earlier trainings are no longer shown)` : ""}` : "";
    cancel.hidden = j.state !== "queued" && j.state !== "running";
    cancel.disabled = false;
    draw();
    if (j.request.method === "multihop" || j.search.length) {
      const kept = j.search.filter((t) => t.kept);
      const nodes = [{ name: j.teacher ? j.teacher.id : j.request.teacher, kind: "teacher", detail: "teacher" },
        ...kept.map((t) => ({ name: t.model, detail: `hop ${t.hop}, ${count(t.parameters)} params, ${hopMethod(t)}, estimate ${pct(t.val_accuracy)}` })),
        { name: (j.request.student && (j.request.student.kind || j.request.student)) || "student", kind: "student", detail: "student" }];
      chainEl.replaceChildren(...[h("h2", {}, "Chain"), chainView(nodes),
        j.search.length ? table("job-search", [
          { key: "hop", label: "Hop", num: true }, { key: "model", label: "Model" }, { key: "method", label: "Method", value: hopMethod, render: hopMethod },
          { key: "parameters", label: "Params", num: true, render: (t) => count(t.parameters) },
          { key: "val_accuracy", label: "Estimated acc", num: true, render: (t) => pct(t.val_accuracy) },
          { key: "student_val_accuracy", label: "Student, estimated", num: true, render: (t) => pct(t.student_val_accuracy) },
          { key: "gain", label: "Gain ± SE (pts)", num: true, title: "the student's estimated gain over the shorter chain, paired by held-out row, and its standard error (judged for each hop's best candidate)",
            render: (t) => (t.gain == null ? "" : `${t.gain >= 0 ? "+" : ""}${(100 * t.gain).toFixed(1)} ± ${(100 * t.gain_se).toFixed(1)}`) },
          { key: "kept", label: "Kept", value: (t) => (t.kept ? 1 : 0), render: (t) => (t.kept ? "yes" : "") }], j.search, {}) : null,
        // why a finished search ended (the rule, max_hops or the time budget)
        j.search_stopped ? h("p", { class: "muted", id: "job-search-stopped" }, "Search stopped: " + j.search_stopped) : null].filter(Boolean));
    }
    // what was delivered: the method's (or search's) answer, or the scratch baseline when it won
    if (j.state === "succeeded" && j.student_id) result.replaceChildren(h("p", { class: "ok" }, "Done: ", h("a", { id: "job-student-link", href: "#/students/" + j.student_id }, "student " + j.student_id),
      j.picked ? h("span", { id: "job-picked" }, " · delivered: ", j.picked === "scratch" && j.request.method !== "scratch" ? "the scratch baseline, which beat the distilled student (the student's notes say why)" : j.picked) : null));
    else if (j.state === "failed") result.replaceChildren(errorBox("job-failed", j.error || "failed"));
    else if (j.state === "cancelled") result.replaceChildren(h("p", { class: "muted" }, "Cancelled."));
  };
  show(
    h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
    h("h1", {}, "Job ", h("code", {}, job.id), " ", stateEl),
    h("div", { class: "card" },
      h("p", { class: "row" }, h("strong", {}, "Phase: "), phase, epochsEl, cancel),
      bar,
      h("dl", { class: "kv", style: "margin-top:10px" }, h("dt", {}, "method"), h("dd", {}, job.request.method), job.request.weighting && job.request.weighting !== "none" ? [h("dt", {}, "weighting"), h("dd", { id: "job-weighting-shown" }, job.request.weighting)] : null, h("dt", {}, "dataset"), h("dd", {}, h("a", { href: "#/tasks/" + job.dataset_id }, job.dataset_id)),
        h("dt", {}, "teacher"), h("dd", { id: "job-teacher-id" }, job.teacher ? job.teacher.id : job.request.teacher),
        h("dt", {}, "created"), h("dd", {}, when(job.created)), job.notes.length ? [h("dt", {}, "notes"), h("dd", {}, job.notes.join("; "))] : null),
      result),
    h("p", { class: "row" }, h("label", { for: "job-stage", hidden: true, id: "job-stage-label" }, "Training shown"), stageSel), h("div", { class: "grid2" }, lossEl, accEl), chainEl);
  update(job);
  if (!job.state || ["queued", "running"].includes(job.state)) {
    const ctl = new AbortController();
    onLeave(() => ctl.abort());
    // epochs=new: each event carries the epochs not sent before, `epochs_dropped` their position; the
    // page keeps the latest 2,000 (as the server does) and draws from them
    let hist = [], histStart = 0;
    const merge = (j) => {
      const at = j.epochs_dropped || 0;
      if (at < histStart || at > histStart + hist.length) { hist = []; histStart = at; }
      hist.length = at - histStart;
      hist.push(...j.epochs);
      if (hist.length > 2000) { const cut = hist.length - 2000; hist.splice(0, cut); histStart += cut; }
      update({ ...j, epochs: hist.slice(), epochs_dropped: histStart });
    };
    follow(`/v1/jobs/${job.id}/events?epochs=new`, merge, ctl.signal).catch((e) => { if (e.name !== "AbortError") result.replaceChildren(errorBox("job-events-error", "live updates stopped: " + e.message)); });
  }
});

// ---------- students ----------
// How many rows a ranking looked at: all of the dataset's, or a stratified sample of a big one.
const rankedRows = (r) => {
  const n = (v) => v.toLocaleString("en-US");
  if (!r.sampled_from) return `${n(r.labeled_rows)} of ${n(r.rows)}`;
  const s = r.sampled_from, pool = r.rows - r.labeled_rows, allPool = s.rows - s.labeled_rows;
  return `a stratified sample: ${n(r.labeled_rows)} of ${n(s.labeled_rows)}` + (allPool ? `, and ${n(pool)} of ${n(allPool)} unlabeled` : "");
};
const shortOfMargin = (f) => f && f.no_teacher_helps && f.margin_se > 0 && f.gain >= 0 && f.gain <= f.required_gain;
const delivered = (c) => {
  if (c.method === "scratch") return "labeled rows only";
  if (c.delivered !== "scratch") return "distilled";
  const s = c.selection, on = s ? s.estimator : "validation";
  if (s && shortOfMargin(s.fallback)) {
    const f = s.fallback;
    const by = f.gain > 0 ? `beat it by ${(100 * f.gain).toFixed(1)} ± ${(100 * f.gain_se).toFixed(1)} points on ${on}, short of the ${f.margin_se} standard errors asked` : `only tied with it on ${on} (a tie goes to scratch here)`;
    return `scratch delivered (the ranking's verdict is that no teacher helps, and the distilled student ${by})`;
  }
  return `scratch delivered (it beat the distilled student on ${on})`;
};
// What the delivered file learned from: a scratch student delivered over a distilled one learned from
// none of the teachers it was compared with.
const chainText = (c) => {
  const ids = c.teacher_chain.map((t) => t.id).join(" → ");
  if (c.delivered === "scratch" && ids) return `none: scratch delivered (compared with a student taught by ${ids})`;
  return ids || "none (scratch)";
};
function studentCard(c, { compare } = {}) {
  const dl = h("span", { class: "download-status", id: "download-status-" + c.id });
  const acc = c.test ? [["test, student", c.test.student.accuracy], ["test, scratch", c.test.scratch && c.test.scratch.accuracy], ["test, teacher", c.test.teacher && c.test.teacher.accuracy]]
    : [["val, student", c.accuracy.student], ["val, scratch", c.accuracy.scratch], ["val, teacher", c.accuracy.teacher]];
  return h("div", { class: "card student", "data-id": c.id },
    h("div", { class: "row" }, compare ? h("input", { type: "checkbox", class: "compare-pick", value: c.id, "aria-label": "compare " + c.id }) : null,
      h("h2", { style: "margin:0" }, h("a", { href: "#/students/" + c.id }, c.name))),
    h("p", { class: "muted", id: "delivered-" + c.id }, `${c.method} · ${c.student} · ${delivered(c)}`),
    barChart("acc-" + c.id, acc.filter((a) => a[1] != null).map(([n, v]) => ({ name: n, value: v })), { label: c.test ? "held-out test accuracy" : "validation accuracy", highlight: acc[0][0], width: 300 }),
    h("dl", { class: "kv" }, h("dt", {}, "parameters"), h("dd", {}, count(c.parameters)), h("dt", {}, "size"), h("dd", {}, bytes(c.file_size)),
      h("dt", {}, "latency"), h("dd", {}, `${num(c.latency_ms, 3)} ms / row`), h("dt", {}, "sha256"), h("dd", { class: "mono" }, c.sha256.slice(0, 16) + "…"),
      h("dt", {}, "chain"), h("dd", { id: "chain-" + c.id }, chainText(c))),
    h("div", { class: "row", style: "margin-top:8px" },
      h("button", { class: "primary download-btn", id: "download-" + c.id, onclick: () => download(`/v1/students/${c.id}/model.onnx`, c.id + ".onnx", c.sha256, dl) }, "Download ONNX"), dl));
}
route(/^\/students(?:\?(.*))?$/, async (query) => {
  const path = `/v1/students?page_size=${pageSize(new URLSearchParams(query || ""))}`;
  const first = await api(path);
  const cmp = h("button", { id: "compare-btn", onclick: () => {
    const ids = $$(".compare-pick:checked").map((x) => x.value);
    if (ids.length < 2) toast("Pick two or more students to compare");
    else go("#/compare/" + ids.join(","));
  } }, "Compare selected");
  show(h("h1", {}, "Students"), paged(path, "students", first, (students, total) => {
    if (!students.length) return empty("No students yet. ", h("a", { href: "#/jobs" }, "Start a job"));
    // the ticks survive loading older students
    const picked = new Set($$(".compare-pick:checked").map((x) => x.value));
    const cards = h("div", { class: "cards", id: "student-list" }, students.map((c) => studentCard(c, { compare: true })));
    cards.querySelectorAll(".compare-pick").forEach((x) => { x.checked = picked.has(x.value); });
    return h("div", {}, h("p", { class: "row" }, cmp, h("span", { class: "muted" }, "tick two or more cards"),
      students.length < total ? h("span", { class: "muted", id: "students-shown" }, `the newest ${students.length} of ${total}`) : null), cards);
  }));
});
route(/^\/students\/([^/]+)$/, async (id) => {
  const c = await api("/v1/students/" + encodeURIComponent(id));
  const lossEl = h("div", { class: "chart" }), accEl = h("div", { class: "chart" });
  const del = h("button", { id: "student-delete", class: "danger", onclick: async () => {
    if (!(await confirmDialog(`Delete student ${c.id}?`))) return;
    try { await api("/v1/students/" + c.id, { method: "DELETE" }); go("#/students"); } catch (e) { main.prepend(errorBox("student-delete-error", e.message)); }
  } }, "Delete");
  show(h("p", {}, h("a", { href: "#/students" }, "← Students")), h("h1", {}, c.name),
    h("div", { class: "grid2" }, studentCard(c),
      h("div", { class: "card" }, h("h2", { style: "margin-top:0" }, "Card"), h("dl", { class: "kv", id: "student-detail" },
        h("dt", {}, "id"), h("dd", { class: "mono" }, c.id), h("dt", {}, "dataset"), h("dd", {}, h("a", { href: "#/tasks/" + c.dataset_id }, c.dataset_id)),
        h("dt", {}, "input shape"), h("dd", {}, shape(c.input_shape)), h("dt", {}, "labels"), h("dd", {}, c.labels.join(", ")),
        h("dt", {}, "sha256"), h("dd", { class: "mono", id: "student-sha" }, c.sha256),
        h("dt", {}, "epochs"), h("dd", {}, `${c.epochs_run}${c.best_epoch != null ? `, best ${c.best_epoch}` : ""}${c.stopped_early ? ", stopped early" : ""}`),
        h("dt", {}, "rows"), h("dd", {}, `${c.accuracy.train_rows} train, ${c.accuracy.validation_rows} validation, ${c.accuracy.unlabeled_rows} unlabeled` + (c.accuracy.mixup_rows ? `, ${c.accuracy.mixup_rows} mixup rows labeled by the teacher` : "")),
        c.selection ? [h("dt", {}, "chosen by"), h("dd", { id: "student-selection" }, `${c.selection.estimator} (${c.selection.rows} held-out rows): ${c.selection.candidates.map((k) => `${k.name} ${pct(k.accuracy)}`).join(", ")}; delivered ${c.selection.picked}${c.selection.restarts > 1 ? ` (the lowest-loss of ${c.selection.restarts} seeded trainings)` : ""}${c.selection.fallback ? `; distilled − scratch ${(100 * c.selection.fallback.gain).toFixed(1)} ± ${(100 * c.selection.fallback.gain_se).toFixed(1)} points` : ""}`)] : null,
        c.multihop && c.multihop.stopped ? [h("dt", {}, "search"), h("dd", { id: "student-search-stopped" }, `stopped: ${c.multihop.stopped}${c.multihop.time_budget_s != null ? ` (time budget ${num(c.multihop.time_budget_s, 1)} s)` : ""}`)] : null,
        c.test ? [h("dt", {}, "test"), h("dd", {}, `${c.test.rows} rows of ${c.test.dataset_id}: student ${pct(c.test.student.accuracy)} [${pct(c.test.student.low)}, ${pct(c.test.student.high)}]`)] : null,
        h("dt", {}, "ONNX vs trained"), h("dd", {}, `max |diff| ${num(c.onnx_max_abs_diff, 6)}`),
        h("dt", {}, "created"), h("dd", {}, when(c.created)), h("dt", {}, "faculty"), h("dd", {}, c.faculty_version),
        c.notes.length ? [h("dt", {}, "notes"), h("dd", {}, c.notes.join("; "))] : null),
        h("div", { class: "row", style: "margin-top:10px" }, del))),
    c.teacher_chain.length ? [h("h2", {}, c.delivered === "scratch" ? "Teacher chain tried (not used: the scratch student was delivered)" : "Teacher chain"),
      chainView([...c.teacher_chain.map((t) => ({ name: t.id, kind: "teacher", detail: t.accuracy != null ? `accuracy ${pct(t.accuracy)}` : t.selected_by })),
        { name: c.student, kind: "student", detail: c.delivered === "scratch" ? "the distilled student, not delivered" : "this student" }])] : null,
    h("h2", {}, "Training"), h("div", { class: "grid2" }, lossEl, accEl));
  const ep = c.history, xs = ep.map((e, k) => k + 1), col = (k) => ep.map((e) => e[k] ?? null);
  if (ep.length) {
    curves(lossEl, "loss", [{ label: "train", color: "#2a5bd7" }, { label: "validation", color: "#c0392b" }], [xs, col("train_loss"), col("val_loss")]);
    curves(accEl, "validation accuracy", [{ label: "validation accuracy", color: "#1e8a4c" }], [xs, col("val_accuracy")]);
  } else lossEl.append(h("p", { class: "muted" }, "No training history (a tree student, or fused without fine-tuning)."));
});
route(/^\/compare\/(.+)$/, async (ids) => {
  const cards = await Promise.all(ids.split(",").map((id) => api("/v1/students/" + encodeURIComponent(id))));
  const rowsOf = [
    ["method", (c) => c.method], ["student", (c) => c.student], ["delivered", delivered],
    ["test accuracy", (c) => (c.test ? pct(c.test.student.accuracy) : "–")], ["test, scratch", (c) => (c.test && c.test.scratch ? pct(c.test.scratch.accuracy) : "–")],
    ["test, teacher", (c) => (c.test && c.test.teacher ? pct(c.test.teacher.accuracy) : "–")],
    ["val accuracy", (c) => pct(c.accuracy.student)], ["val, scratch", (c) => pct(c.accuracy.scratch)], ["val, teacher", (c) => pct(c.accuracy.teacher)],
    ["parameters", (c) => count(c.parameters)], ["size", (c) => bytes(c.file_size)], ["latency", (c) => num(c.latency_ms, 3) + " ms"],
    ["teacher chain", chainText], ["sha256", (c) => c.sha256.slice(0, 16) + "…"],
  ];
  show(h("p", {}, h("a", { href: "#/students" }, "← Students")), h("h1", {}, `Comparing ${cards.length} students`),
    h("div", { class: "table-wrap" }, h("table", { id: "compare-table" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), cards.map((c) => h("th", { scope: "col" }, h("a", { href: "#/students/" + c.id }, c.name))))),
      h("tbody", {}, rowsOf.map(([name, f]) => h("tr", {}, h("th", { scope: "row" }, name), cards.map((c) => h("td", {}, f(c)))))))),
    h("h2", {}, "Accuracy"),
    barChart("compare-chart", cards.map((c) => ({ name: c.name, value: c.test ? c.test.student.accuracy : c.accuracy.student })), {
      highlight: cards.reduce((b, c) => ((c.test ? c.test.student.accuracy : c.accuracy.student) > (b.test ? b.test.student.accuracy : b.accuracy.student) ? c : b)).name, label: cards.every((c) => c.test) ? "held-out test accuracy" : "accuracy (test where there is one, else validation)" }));
});

// ---------- start ----------
(async () => {
  render();
  try {
    const hz = await api("/healthz");
    $("#server-status").textContent = `faculty ${hz.version} · ${hz.usable_teachers}/${hz.teachers} teachers usable`;
  } catch (e) { $("#server-status").textContent = "server: " + e.message; }
})();
