// namesrv-redis web console: plain JavaScript over the pod's JSON API; live over /v1/events.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { clusters: null, topics: [], topic: null, kvNamespace: null, fetchedAt: 0,
                token: sessionStorage.getItem("namesrv-admin-token") || "", info: null };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (options.method && options.method !== "GET" && state.token) headers.Authorization = "Bearer " + state.token;
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 204) return null;
  const ct = r.headers.get("content-type") || "";
  const body = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw Object.assign(new Error((body && body.detail) || r.statusText), { status: r.status, body });
  return body;
}

// ------------------------------------------------------------------ clusters and brokers

function expiresText(secondsLeft) {
  if (secondsLeft === null || secondsLeft === undefined) return "–";
  const left = Math.max(0, secondsLeft - (Date.now() - state.fetchedAt) / 1000);
  return left.toFixed(0) + " s";
}

function renderBrokers() {
  const tbody = $("#brokers tbody");
  tbody.replaceChildren();
  const clusters = (state.clusters && state.clusters.clusters) || [];
  let rows = 0;
  for (const c of clusters) {
    for (const b of c.brokers) {
      b.addresses.forEach((a, i) => {
        const lv = a.liveness || {};
        const dv = lv.dataVersion ? `${lv.dataVersion.counter} @ ${new Date(lv.dataVersion.timestamp).toISOString().replace(".000Z", "Z")}` : "–";
        const perm = i === 0 ? el("td", { class: "admin" },
          el("button", { class: "danger", onclick: () => writePerm(b.brokerName, false) }, "wipe"), " ",
          el("button", { onclick: () => writePerm(b.brokerName, true) }, "add")) : el("td", { class: "admin" });
        tbody.append(el("tr", { "data-addr": a.address, "data-broker": b.brokerName },
          el("td", {}, c.name), el("td", {}, b.brokerName), el("td", { class: "num" }, a.id),
          el("td", {}, a.address),
          el("td", { class: a.alive ? "alive" : "dead" }, a.alive ? "alive" : "expired"),
          el("td", { class: "num expires", "data-seconds": lv.secondsLeft ?? "" }, expiresText(lv.secondsLeft)),
          el("td", { class: "num" }, dv), el("td", {}, lv.haServerAddr || "–"), perm));
        rows++;
      });
    }
  }
  $("#brokers-empty").hidden = rows > 0;
  $("#route-version").textContent = state.clusters ? state.clusters.version : "–";
}

function tickCountdowns() {
  for (const td of document.querySelectorAll("#brokers td.expires")) {
    const s = td.dataset.seconds;
    if (s === "") continue;
    td.textContent = expiresText(Number(s));
    const left = Number(s) - (Date.now() - state.fetchedAt) / 1000;
    td.classList.toggle("soon", left < 30);
    if (left <= 0) scheduleRefresh(); // Redis removes it soon: look again
  }
}

async function loadClusters() {
  state.clusters = await api("/v1/clusters");
  state.fetchedAt = Date.now();
  renderBrokers();
}

async function writePerm(brokerName, enabled) {
  try {
    const r = await api(`/v1/brokers/${encodeURIComponent(brokerName)}/write-permission`,
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ enabled }) });
    toast(`${enabled ? "added" : "wiped"} write permission of ${brokerName}: ${r.topicCount} topics`);
  } catch (e) { toast(`failed: ${e.message}`); }
}

// ------------------------------------------------------------------ topics and routes

function renderTopics() {
  const q = $("#topic-search").value.trim().toLowerCase();
  const shown = state.topics.filter((t) => t.toLowerCase().includes(q));
  $("#topic-count").textContent = q ? `${shown.length} of ${state.topics.length}` : `${state.topics.length}`;
  const ul = $("#topics");
  ul.replaceChildren(...shown.slice(0, 500).map((t) =>
    el("li", { class: t === state.topic ? "selected" : "", onclick: () => selectTopic(t) }, t)));
}

async function loadTopics() {
  state.topics = (await api("/v1/topics")).topics;
  renderTopics();
}

async function selectTopic(topic) {
  state.topic = topic;
  renderTopics();
  await loadRoute();
}

function permText(p) { return (p & 4 ? "R" : "-") + (p & 2 ? "W" : "-") + (p & 1 ? "X" : "-"); }

async function loadRoute() {
  const box = $("#route");
  if (!state.topic) return;
  $("#route-topic").textContent = state.topic;
  let route;
  try { route = await api(`/v1/routes/${encodeURIComponent(state.topic)}`); }
  catch (e) {
    box.replaceChildren(el("p", { class: "empty" }, e.status === 404 ? "TOPIC_NOT_EXIST: no route in the name server." : e.message));
    return;
  }
  const queues = Object.fromEntries(route.queueDatas.map((q) => [q.brokerName, q]));
  const table = el("table", { id: "route-table" }, el("thead", {}, el("tr", {},
    ...["Cluster", "Broker name", "Addresses", "Read Q", "Write Q", "Perm"].map((h) => el("th", {}, h)))));
  const tbody = el("tbody");
  for (const b of route.brokerDatas) {
    const q = queues[b.brokerName] || {};
    const addrs = Object.entries(b.brokerAddrs).map(([id, a]) => `${id}=${a}`).join(", ");
    tbody.append(el("tr", {}, el("td", {}, b.cluster), el("td", {}, b.brokerName), el("td", {}, addrs),
      el("td", { class: "num" }, q.readQueueNums ?? "–"), el("td", { class: "num" }, q.writeQueueNums ?? "–"),
      el("td", {}, q.perm === undefined ? "–" : permText(q.perm))));
  }
  table.append(tbody);
  const del = el("p", { class: "admin" }, el("button", { class: "danger", onclick: () => deleteTopic(state.topic) }, "delete topic"));
  box.replaceChildren(table, del);
}

async function deleteTopic(topic) {
  if (!confirm(`Delete the route of ${topic}?`)) return;
  try {
    const r = await api(`/v1/topics/${encodeURIComponent(topic)}`, { method: "DELETE" });
    toast(`deleted ${topic}: ${r.removedQueueDatas} queue datas`);
  } catch (e) { toast(`failed: ${e.message}`); }
}

// ------------------------------------------------------------------ KV and pods

async function loadKvNamespaces() {
  const { namespaces } = await api("/v1/kv");
  $("#kv-namespaces").replaceChildren(...namespaces.map((ns) =>
    el("li", { class: ns === state.kvNamespace ? "selected" : "", onclick: () => { state.kvNamespace = ns; loadKvNamespaces(); loadKv(); } }, ns)));
  if (!namespaces.length) $("#kv-namespaces").append(el("li", { class: "empty" }, "no KV namespace"));
}

async function loadKv() {
  const ns = state.kvNamespace;
  if (!ns) return;
  let table = {};
  try { table = (await api(`/v1/kv/${encodeURIComponent(ns)}`)).table; } catch (e) { /* emptied */ }
  const rows = Object.keys(table).sort().map((k) => el("tr", {}, el("td", {}, k), el("td", {}, table[k]),
    el("td", { class: "admin" }, el("button", { class: "danger", onclick: () => kvDelete(ns, k) }, "delete"))));
  const key = el("input", { type: "text", placeholder: "key", "aria-label": "key" });
  const value = el("input", { type: "text", placeholder: "value", "aria-label": "value" });
  const form = el("p", { class: "admin" }, key, " ", value, " ", el("button", { onclick: () => kvPut(ns, key.value, value.value) }, "put"));
  $("#kv").replaceChildren(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Key"), el("th", {}, "Value"), el("th", { class: "admin" }))), el("tbody", {}, ...rows)), form);
}

async function kvPut(ns, key, value) {
  try { await api(`/v1/kv/${encodeURIComponent(ns)}/${encodeURIComponent(key)}`, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ value }) }); await loadKv(); }
  catch (e) { toast(`failed: ${e.message}`); }
}

async function kvDelete(ns, key) {
  try { await api(`/v1/kv/${encodeURIComponent(ns)}/${encodeURIComponent(key)}`, { method: "DELETE" }); await loadKv(); }
  catch (e) { toast(`failed: ${e.message}`); }
}

async function loadPods() {
  const text = await api("/rocketmq/nsaddr");
  const pods = String(text).split(";").filter(Boolean);
  $("#pods").replaceChildren(...pods.map((p) => el("li", {}, p)));
}

// ------------------------------------------------------------------ refresh and live updates

async function refresh() {
  try {
    await Promise.all([loadClusters(), loadTopics(), loadKvNamespaces(), loadPods()]);
    if (state.topic) await loadRoute();
    if (state.kvNamespace) await loadKv();
  } catch (e) { toast(`refresh failed: ${e.message}`); }
}

let pending = null;
function scheduleRefresh() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 150);
}

function connectEvents() {
  const live = $("#live");
  const es = new EventSource("/v1/events");
  es.onopen = () => { live.textContent = "live"; live.className = "pill on"; scheduleRefresh(); };
  es.addEventListener("route", (ev) => {
    const e = JSON.parse(ev.data);
    if (state.clusters && e.version) $("#route-version").textContent = e.version;
    scheduleRefresh();
  });
  es.onerror = () => { live.textContent = "reconnecting…"; live.className = "pill off"; };
}

// Read-only until the admin token is entered (the server checks it on every change). A pod
// started without --admin-token offers no changes here at all: give it a token first.
function setMode() {
  const required = !!(state.info && state.info.adminTokenRequired);
  const canAdmin = required && !!state.token;
  document.body.classList.toggle("can-admin", canAdmin);
  const mode = $("#mode");
  mode.textContent = canAdmin ? "admin" : required ? "read-only" : "read-only (pod has no admin token)";
  mode.className = canAdmin ? "pill admin-on" : "pill";
  $("#token-form").hidden = !required;
}

async function main() {
  $("#topic-search").addEventListener("input", renderTopics);
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("#token").value;
    sessionStorage.setItem("namesrv-admin-token", state.token);
    setMode();
  });
  try {
    state.info = await api("/v1/console/info");
    $("#namespace").textContent = `namespace ${state.info.namespace}`;
  } catch (e) { /* older pod */ }
  setMode();
  await refresh();
  connectEvents();
  setInterval(tickCountdowns, 1000);
  setInterval(refresh, 10000); // bounds staleness if an event is lost
}

main();
