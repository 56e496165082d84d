// The explorer's script: each page's data from the emulator's REST API (IoT Hub's service API
// under /api/hub, DPS's under /api/dps, the NDJSON telemetry stream), no build step.
// An error answer is shown as Azure wrote it (status, error code, message); the page goes on.
"use strict";

const HUB_API_VERSION = "2021-04-12";
const DPS_API_VERSION = "2021-10-01";

// ---- talking to the API ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body, text) {
    super(describeError(status, body, text));
    this.status = status;
    this.body = body;
  }
}

// "404 DeviceNotOnline: device1 is not connected …" from IoT Hub's or DPS's error body.
function describeError(status, body, text) {
  if (body && typeof body.Message === "string") {
    const m = /^ErrorCode:([^;]*);(.*)$/s.exec(body.Message);
    if (m) return `${status} ${m[1]}: ${m[2]}`;
    return `${status} ${body.Message}`;
  }
  if (body && body.message) return `${status} ${body.errorCode || ""}: ${body.message}`;
  return `${status} ${text || ""}`.trim();
}

function apiUrl(service, path, query) {
  const params = new URLSearchParams(query || {});
  if (!path.startsWith("/_emulator/")) params.set("api-version", service === "dps" ? DPS_API_VERSION : HUB_API_VERSION);
  const qs = params.toString();
  return `/api/${service}${path}${qs ? "?" + qs : ""}`;
}

async function api(method, path, { body, headers, query, service = "hub" } = {}) {
  const init = { method, headers: { "X-Explorer": "1", ...(headers || {}) } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(apiUrl(service, path, query), init);
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!res.ok) throw new ApiError(res.status, json, text);
  return { status: res.status, headers: res.headers, body: json };
}

// A text answer of the hub's API (NDJSON, HTML, XML); an error as `api` throws it.
async function apiText(path, query) {
  const res = await fetch(apiUrl("hub", path, query), { headers: { "X-Explorer": "1" } });
  const text = await res.text();
  if (!res.ok) {
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = null; }
    throw new ApiError(res.status, body, text);
  }
  return text;
}

// Every page of an IoT Hub query (the continuation header leads from page to page).
async function queryAll(text) {
  const out = [];
  let continuation = null;
  do {
    const headers = { "x-ms-max-item-count": "1000" };
    if (continuation) headers["x-ms-continuation"] = continuation;
    const res = await api("POST", "/devices/query", { body: { query: text }, headers });
    out.push(...res.body);
    continuation = res.headers.get("x-ms-continuation");
  } while (continuation);
  return out;
}

const enc = encodeURIComponent;
const $ = (sel, root = document) => root.querySelector(sel);

// `source` says who showed the error: a refresh clears only its own, never an action's.
function showError(box, err, source = "action") {
  if (!box) return;
  if (!err) {
    if (source === "action" || box.dataset.source === source) { box.hidden = true; box.textContent = ""; }
    return;
  }
  box.textContent = err instanceof Error ? err.message : String(err);
  box.dataset.source = source;
  box.hidden = false;
}

// Runs `fn`; its error lands in `box` (and nowhere else: the page keeps working).
async function guarded(box, fn, source = "action") {
  try {
    const out = await fn();
    showError(box, null, source);
    return out;
  } catch (err) {
    showError(box, err, source);
    return undefined;
  }
}

// A periodic refresh: its errors show, and go when it works again, without hiding an action's.
function poll(ms, box, fn) {
  return every(ms, () => guarded(box, fn, "refresh"));
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function pretty(value) { return JSON.stringify(value, null, 2); }

// A body shown pretty-printed when it is JSON, as text otherwise.
function prettyBody(text) {
  try { return pretty(JSON.parse(text)); } catch (e) { return text; }
}

function when(iso) {
  if (!iso || iso.startsWith("0001-")) return "never";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function badge(text, kind) { return el("span", { class: `badge ${kind || text.toLowerCase()}` }, text); }

// Every `ms` while the tab is open; the first run at once.
function every(ms, fn) {
  let timer = null;
  const run = async () => {
    try { await fn(); } finally { timer = setTimeout(run, ms); }
  };
  run();
  return () => clearTimeout(timer);
}

function connectionString(doc) {
  const host = document.body.dataset.hubHost;
  let out = `HostName=${host};DeviceId=${doc.deviceId}`;
  if (doc.moduleId) out += `;ModuleId=${doc.moduleId}`;
  const auth = doc.authentication || {};
  if (auth.type === "sas") out += `;SharedAccessKey=${auth.symmetricKey.primaryKey}`;
  else if (auth.type === "selfSigned" || auth.type === "certificateAuthority") out += ";x509=true";
  return out;
}

function authKind(doc) {
  const t = (doc.authentication || {}).type;
  return { sas: "symmetric key", selfSigned: "X.509 self-signed", certificateAuthority: "X.509 CA-signed", none: "none" }[t] || t;
}

async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    if (fallbackInput) { fallbackInput.focus(); fallbackInput.select(); }
    return false;
  }
}

function identityPath(deviceId, moduleId) {
  return moduleId ? `/devices/${enc(deviceId)}/modules/${enc(moduleId)}` : `/devices/${enc(deviceId)}`;
}

function twinPath(deviceId, moduleId) {
  return moduleId ? `/twins/${enc(deviceId)}/modules/${enc(moduleId)}` : `/twins/${enc(deviceId)}`;
}

// ---- devices --------------------------------------------------------------------------------

function devicesPage() {
  const errorBox = $("#devices-error");
  const tbody = $("#devices tbody");
  const auth = $("#new-device-auth");
  auth.addEventListener("change", () => {
    document.querySelectorAll(".x509-only").forEach((n) => { n.hidden = auth.value !== "selfSigned"; });
  });

  async function refresh() {
    // Two calls whatever the number of devices: the registry, and every module by the query API.
    const [{ body: devices }, modules] = await Promise.all([
      api("GET", "/devices"),
      queryAll("SELECT * FROM devices.modules"),
    ]);
    const moduleCounts = {};
    for (const d of devices) moduleCounts[d.deviceId] = 0;
    for (const m of modules) moduleCounts[m.deviceId] = (moduleCounts[m.deviceId] || 0) + 1;
    tbody.replaceChildren(...devices.map((d) => deviceRow(d, moduleCounts[d.deviceId])));
    $("#devices-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  function deviceRow(d, modules) {
    const enabled = d.status === "enabled";
    return el("tr", { "data-device-id": d.deviceId },
      el("td", {}, el("a", { href: `/devices/${enc(d.deviceId)}` }, d.deviceId), d.capabilities && d.capabilities.iotEdge ? " " : "", d.capabilities && d.capabilities.iotEdge ? badge("edge", "edge") : ""),
      el("td", { class: "status" }, badge(d.status, enabled ? "enabled" : "disabled")),
      el("td", { class: "connection" }, badge(d.connectionState, d.connectionState === "Connected" ? "connected" : "disconnected")),
      el("td", { class: "auth" }, authKind(d)),
      el("td", { class: "activity" }, when(d.lastActivityTime)),
      el("td", { class: "c2d" }, String(d.cloudToDeviceMessageCount)),
      el("td", { class: "modules" }, modules === undefined ? "" : String(modules)),
      el("td", { class: "actions" },
        el("button", { type: "button", class: "copy", onclick: () => copyFor(d) }, "Copy connection string"),
        el("button", { type: "button", class: "toggle", onclick: () => guarded(errorBox, () => setStatus(d, enabled ? "disabled" : "enabled").then(refresh)) }, enabled ? "Disable" : "Enable"),
        el("button", { type: "button", class: "delete danger", onclick: () => remove(d) }, "Delete")));
  }

  async function copyFor(d) {
    const box = $("#copied-connection-string");
    box.value = connectionString(d);
    box.parentElement.parentElement.hidden = false;
    await copyText(box.value, box);
  }

  async function remove(d) {
    if (!confirm(`Delete device ${d.deviceId}?`)) return;
    await guarded(errorBox, async () => {
      await api("DELETE", `/devices/${enc(d.deviceId)}`, { headers: { "If-Match": "*" } });
      await refresh();
    });
  }

  $("#create-device").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = $("#new-device-id").value.trim();
    const authentication = { type: auth.value };
    if (auth.value === "selfSigned") {
      authentication.x509Thumbprint = { primaryThumbprint: $("#new-device-thumbprint1").value.trim() || null, secondaryThumbprint: $("#new-device-thumbprint2").value.trim() || null };
    }
    await guarded(errorBox, async () => {
      // Without If-Match the PUT is a create: an existing device is Azure's 409, not an update.
      await api("PUT", `/devices/${enc(id)}`, {
        body: { deviceId: id, authentication, capabilities: { iotEdge: $("#new-device-edge").checked } },
      });
      $("#new-device-id").value = "";
      await refresh();
    });
  });

  poll(2000, errorBox, refresh);
}

async function setStatus(doc, status) {
  const path = identityPath(doc.deviceId, doc.moduleId);
  const { body: current } = await api("GET", path);
  const body = { ...current, status };
  for (const k of ["connectionState", "connectionStateUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount", "statusUpdatedTime"]) delete body[k];
  return api("PUT", path, { body, headers: { "If-Match": `"${current.etag}"` } });
}

// ---- one device or module -------------------------------------------------------------------

function devicePage() {
  const deviceId = document.body.dataset.deviceId;
  const moduleId = document.body.dataset.moduleId || null;
  identitySection(deviceId, moduleId);
  if (!moduleId) modulesSection(deviceId);
  twinSection(deviceId, moduleId);
  methodSection(deviceId, moduleId);
  if (!moduleId) c2dSection(deviceId);
}

function identitySection(deviceId, moduleId) {
  const errorBox = $("#identity-error");
  let doc = null;
  async function refresh() {
    doc = (await api("GET", identityPath(deviceId, moduleId))).body;
    $("#identity-status").replaceChildren(badge(doc.status || "enabled", (doc.status || "enabled") === "enabled" ? "enabled" : "disabled"));
    $("#identity-connection").replaceChildren(badge(doc.connectionState, doc.connectionState === "Connected" ? "connected" : "disconnected"),
      ` since ${when(doc.connectionStateUpdatedTime)}`);
    $("#identity-auth").textContent = authKind(doc);
    $("#identity-activity").textContent = when(doc.lastActivityTime);
    const c2d = $("#identity-c2d");
    if (c2d) c2d.textContent = String(doc.cloudToDeviceMessageCount);
    const cs = $("#connection-string");
    if (cs.value !== connectionString(doc)) cs.value = connectionString(doc);
    const prints = (doc.authentication || {}).x509Thumbprint || {};
    $("#thumbprints").textContent = doc.authentication.type === "selfSigned"
      ? `primary ${prints.primaryThumbprint || "—"}, secondary ${prints.secondaryThumbprint || "—"}`
      : doc.authentication.type === "certificateAuthority" ? "any certificate from a trusted CA with CN = the device ID" : "none (not an X.509 identity)";
    const toggle = $("#toggle-status");
    toggle.hidden = Boolean(moduleId);
    toggle.textContent = doc.status === "enabled" ? "Disable" : "Enable";
  }
  $("#copy-connection-string").addEventListener("click", () => copyText($("#connection-string").value, $("#connection-string")));
  $("#toggle-status").addEventListener("click", () => guarded(errorBox, async () => {
    await setStatus(doc, doc.status === "enabled" ? "disabled" : "enabled");
    await refresh();
  }));
  $("#delete-identity").addEventListener("click", async () => {
    if (!confirm(`Delete ${moduleId ? deviceId + "/" + moduleId : deviceId}?`)) return;
    const ok = await guarded(errorBox, async () => {
      await api("DELETE", identityPath(deviceId, moduleId), { headers: { "If-Match": "*" } });
      return true;
    });
    if (ok) location.href = moduleId ? `/devices/${enc(deviceId)}` : "/devices";
  });
  poll(2000, errorBox, refresh);
}

function modulesSection(deviceId) {
  const errorBox = $("#modules-error");
  const tbody = $("#module-table tbody");
  async function refresh() {
    const { body: modules } = await api("GET", `/devices/${enc(deviceId)}/modules`);
    tbody.replaceChildren(...modules.map((m) => el("tr", { "data-module-id": m.moduleId },
      el("td", {}, el("a", { href: `/devices/${enc(deviceId)}/modules/${enc(m.moduleId)}` }, m.moduleId)),
      el("td", {}, badge(m.connectionState, m.connectionState === "Connected" ? "connected" : "disconnected")),
      el("td", {}, authKind(m)),
      el("td", {}, when(m.lastActivityTime)))));
  }
  $("#create-module").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = $("#new-module-id").value.trim();
    await guarded(errorBox, async () => {
      await api("PUT", `/devices/${enc(deviceId)}/modules/${enc(id)}`, { body: { moduleId: id, deviceId } });
      $("#new-module-id").value = "";
      await refresh();
    });
  });
  poll(3000, errorBox, refresh);
}

function withoutMetadata(section) {
  const out = {};
  for (const [k, v] of Object.entries(section || {})) if (k !== "$metadata" && k !== "$version") out[k] = v;
  return out;
}

function twinSection(deviceId, moduleId) {
  const errorBox = $("#twin-error");
  const desired = $("#twin-desired");
  const tags = $("#twin-tags");
  let loaded = null; // the twin the editors show: its etag guards the save
  let dirty = false;
  desired.addEventListener("input", () => { dirty = true; });
  tags.addEventListener("input", () => { dirty = true; });

  function describe(twin) {
    return `etag ${twin.etag} · desired $version ${twin.properties.desired.$version} · reported $version ${twin.properties.reported.$version}`;
  }

  async function refresh(force) {
    const { body: twin } = await api("GET", twinPath(deviceId, moduleId));
    $("#twin-reported").textContent = pretty(withoutMetadata(twin.properties.reported));
    if (force || !dirty) {
      loaded = twin;
      dirty = false;
      desired.value = pretty(withoutMetadata(twin.properties.desired));
      tags.value = pretty(twin.tags || {});
      $("#twin-version").textContent = describe(twin);
    }
    return twin;
  }

  function parse(area, what) {
    try {
      const v = JSON.parse(area.value || "{}");
      if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
      return v;
    } catch (e) {
      throw new Error(`${what} is not a JSON object: ${e.message}`);
    }
  }

  $("#twin-save").addEventListener("click", async () => {
    const status = $("#twin-status");
    try {
      const body = { tags: parse(tags, "Tags"), properties: { desired: parse(desired, "Desired") } };
      // A PUT replaces desired and tags; If-Match makes a change made meanwhile a 412, not lost.
      const { body: twin } = await api("PUT", twinPath(deviceId, moduleId), { body, headers: { "If-Match": `"${loaded.etag}"` } });
      showError(errorBox, null);
      loaded = twin;
      dirty = false;
      $("#twin-version").textContent = describe(twin);
      status.textContent = `saved: desired $version ${twin.properties.desired.$version}`;
    } catch (err) {
      status.textContent = "";
      if (err instanceof ApiError && err.status === 412) {
        let now = "";
        try {
          const { body: current } = await api("GET", twinPath(deviceId, moduleId));
          now = ` The twin changed since it was loaded: desired $version ${loaded.properties.desired.$version} → ${current.properties.desired.$version}, etag ${loaded.etag} → ${current.etag}. Reload, then apply your change again.`;
        } catch (e) { /* the error shown is the 412 */ }
        showError(errorBox, err.message + now);
      } else {
        showError(errorBox, err);
      }
    }
  });
  $("#twin-reload").addEventListener("click", () => guarded(errorBox, () => refresh(true)));
  poll(3000, errorBox, () => refresh(false));
}

function methodSection(deviceId, moduleId) {
  const errorBox = $("#method-error");
  const result = $("#method-result");
  $("#method-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = $("#method-status");
    result.hidden = true;
    let payload = null;
    const text = $("#method-payload").value.trim();
    try {
      payload = text ? JSON.parse(text) : null;
    } catch (e) {
      showError(errorBox, `The payload is not JSON: ${e.message}`);
      return;
    }
    const body = {
      methodName: $("#method-name").value.trim(),
      payload,
      responseTimeoutInSeconds: Number($("#method-response-timeout").value),
      connectTimeoutInSeconds: Number($("#method-connect-timeout").value),
    };
    status.textContent = "waiting for the device…";
    const answer = await guarded(errorBox, () => api("POST", `${twinPath(deviceId, moduleId)}/methods`, { body }));
    status.textContent = "";
    if (answer) {
      result.textContent = `status ${answer.body.status}\n${pretty(answer.body.payload)}`;
      result.hidden = false;
    }
  });
}

function c2dSection(deviceId) {
  const errorBox = $("#c2d-error");
  const tbody = $("#c2d-messages tbody");
  const STATE = { queued: "queued", delivered: "delivered, awaiting ack", Success: "acknowledged", Expired: "expired", DeliveryCountExceeded: "delivered too often", Purged: "purged", Rejected: "rejected" };

  async function refresh() {
    const [pending, history] = await Promise.all([
      api("GET", `/_emulator/c2d/${enc(deviceId)}`),
      api("GET", `/_emulator/c2d/${enc(deviceId)}/history`),
    ]);
    const rows = [
      ...pending.body.map((m) => ({ ...m, label: m.state, end: m.expiryTime })),
      ...history.body.slice().reverse().map((m) => ({ ...m, label: m.outcome, end: m.finishedTime })),
    ];
    tbody.replaceChildren(...rows.map((m) => el("tr", { "data-message-id": m.messageId },
      el("td", {}, m.messageId),
      el("td", { class: "state" }, badge(STATE[m.label] || m.label, `c2d-${m.label}`)),
      el("td", {}, String(m.deliveryCount)),
      el("td", {}, m.ack || "none"),
      el("td", {}, when(m.enqueuedTime)),
      el("td", {}, when(m.end)))));
  }

  $("#c2d-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const properties = {};
    for (const line of $("#c2d-properties").value.split("\n")) {
      if (!line.trim()) continue;
      const i = line.indexOf("=");
      if (i < 0) properties[line.trim()] = "";
      else properties[line.slice(0, i).trim()] = line.slice(i + 1);
    }
    const body = { data: $("#c2d-body").value, properties };
    if ($("#c2d-message-id").value.trim()) body.messageId = $("#c2d-message-id").value.trim();
    if ($("#c2d-ack").value) body.ack = $("#c2d-ack").value;
    if ($("#c2d-ttl").value) body.ttlSeconds = Number($("#c2d-ttl").value);
    await guarded(errorBox, async () => {
      await api("POST", `/_emulator/c2d/${enc(deviceId)}`, { body });
      await refresh();
    });
  });
  $("#c2d-purge").addEventListener("click", () => guarded(errorBox, async () => {
    await api("DELETE", `/devices/${enc(deviceId)}/commands`);
    await refresh();
  }));
  poll(1500, errorBox, refresh);
}

// ---- telemetry ------------------------------------------------------------------------------

// Each line of an NDJSON response, as it arrives, until `signal` aborts.
// `onOpen` runs once the server answered: from then on it sends every new line.
async function streamLines(url, signal, onLine, onOpen) {
  const res = await fetch(url, { headers: { "X-Explorer": "1" }, signal });
  if (!res.ok) {
    const text = await res.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = null; }
    throw new ApiError(res.status, body, text);
  }
  if (onOpen) onOpen();
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) onLine(line); // blank lines are the server's heartbeats
    }
  }
}

function telemetryPage() {
  const MAX_SHOWN = 500;
  const list = $("#telemetry-list");
  const select = $("#telemetry-device");
  const filter = $("#telemetry-filter");
  const state = $("#telemetry-state");
  const errorBox = $("#telemetry-error");
  const held = [];
  let paused = false;
  let received = 0;
  let controller = null;
  const wanted = new URLSearchParams(location.search).get("deviceId") || "";

  // Messages per second over the last 60 s.
  const WINDOW = 60;
  const counts = new Map();
  let chart = null;
  function chartData() {
    const now = Math.floor(Date.now() / 1000);
    const xs = [], ys = [];
    for (let t = now - WINDOW + 1; t <= now; t++) { xs.push(t); ys.push(counts.get(t) || 0); }
    for (const t of counts.keys()) if (t <= now - WINDOW) counts.delete(t);
    return [xs, ys];
  }
  if (window.uPlot) {
    const graph = $("#rate-graph");
    chart = new uPlot({
      width: Math.max(300, graph.clientWidth || 800), height: 160,
      series: [{}, { label: "msg/s", stroke: "#0063b1", fill: "rgba(0,99,177,0.15)" }],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      legend: { show: false },
    }, chartData(), graph);
  }
  // The figure also says how many messages the graph holds, for readers without the picture.
  setInterval(() => {
    const data = chartData();
    if (chart) chart.setData(data);
    $("#rate-graph").dataset.lastMinute = String(data[1].reduce((a, b) => a + b, 0));
  }, 1000);

  function matches(m) {
    const f = filter.value.trim().toLowerCase();
    if (!f) return true;
    return JSON.stringify(m).toLowerCase().includes(f);
  }

  function propertyTable(title, props) {
    const entries = Object.entries(props || {});
    if (!entries.length) return "";
    return el("details", { open: title === "Application properties" },
      el("summary", {}, `${title} (${entries.length})`),
      el("table", { class: "props" }, entries.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v === null ? "null" : String(v))))));
  }

  function card(m) {
    const who = m.moduleId ? `${m.deviceId}/${m.moduleId}` : m.deviceId;
    const body = m.bodyEncoding === "base64" ? `(binary, base64) ${m.body}` : prettyBody(m.body);
    return el("li", { class: "message", "data-device-id": m.deviceId, "data-sequence-number": String(m.sequenceNumber) },
      el("div", { class: "meta" }, el("strong", {}, who), ` · enqueued ${when(m.enqueuedTime)} · #${m.sequenceNumber}`),
      el("pre", { class: "json body" }, body),
      propertyTable("Application properties", m.properties),
      propertyTable("System properties", m.systemProperties));
  }

  function show(m) {
    if (!matches(m)) return;
    list.prepend(card(m));
    while (list.children.length > MAX_SHOWN) list.lastElementChild.remove();
  }

  function onMessage(line) {
    let m;
    try { m = JSON.parse(line); } catch (e) { return; }
    received += 1;
    const t = Math.floor(Date.now() / 1000);
    counts.set(t, (counts.get(t) || 0) + 1);
    $("#telemetry-count").textContent = String(received);
    if (paused) {
      held.push(m);
      if (held.length > MAX_SHOWN) held.shift();
      $("#telemetry-held").textContent = String(held.length);
    } else {
      show(m);
    }
  }

  async function connect() {
    if (controller) controller.abort();
    const mine = controller = new AbortController();
    const query = select.value ? { deviceId: select.value } : {};
    state.textContent = "connecting";
    state.className = "badge";
    while (!mine.signal.aborted) {
      try {
        await streamLines(apiUrl("hub", "/_emulator/telemetry/stream", query), mine.signal, onMessage, () => {
          state.textContent = "live";
          state.className = "badge connected";
          showError(errorBox, null);
        });
      } catch (err) {
        if (mine.signal.aborted) return;
        showError(errorBox, err);
      }
      if (mine.signal.aborted) return;
      state.textContent = "reconnecting";
      state.className = "badge disconnected";
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  $("#telemetry-pause").addEventListener("click", () => {
    paused = !paused;
    $("#telemetry-pause").textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      for (const m of held.splice(0)) show(m);
      $("#telemetry-held").textContent = "0";
    }
  });
  $("#telemetry-clear").addEventListener("click", () => { list.replaceChildren(); held.length = 0; $("#telemetry-held").textContent = "0"; });
  filter.addEventListener("input", () => {
    for (const li of list.children) li.hidden = filter.value.trim() !== "" && !li.textContent.toLowerCase().includes(filter.value.trim().toLowerCase());
  });
  select.addEventListener("change", () => {
    const url = new URL(location.href);
    if (select.value) url.searchParams.set("deviceId", select.value); else url.searchParams.delete("deviceId");
    history.replaceState(null, "", url);
    connect();
  });

  (async () => {
    const devices = await guarded(errorBox, () => api("GET", "/devices"));
    const ids = devices ? devices.body.map((d) => d.deviceId) : [];
    if (wanted && !ids.includes(wanted)) ids.push(wanted);
    for (const id of ids) select.append(el("option", { value: id }, id));
    select.value = wanted;
    connect();
  })();
}

// ---- DPS ------------------------------------------------------------------------------------

function dpsPage() {
  const errorBox = $("#dps-error");
  const query = (path, table) => api("POST", path, { service: "dps", body: { query: `SELECT * FROM ${table}` } });

  function allocation(e) {
    const hubs = (e.iotHubs || []).join(", ");
    return [e.allocationPolicy || "hashed", hubs].filter(Boolean).join(" → ");
  }

  function statusBadge(s) { return badge(s || "enabled", (s || "enabled") === "enabled" || s === "assigned" ? "enabled" : "disabled"); }

  function removeButton(path, what) {
    return el("button", { type: "button", class: "danger", onclick: async () => {
      if (!confirm(`Delete ${what}?`)) return;
      await guarded(errorBox, async () => { await api("DELETE", path, { service: "dps", headers: { "If-Match": "*" } }); await refresh(); });
    } }, "Delete");
  }

  async function refresh() {
    const [enrollments, groups] = await Promise.all([query("/enrollments/query", "enrollments"), query("/enrollmentGroups/query", "enrollmentGroups")]);
    const records = [];
    await Promise.all(enrollments.body.map(async (e) => {
      try { records.push({ ...(await api("GET", `/registrations/${enc(e.registrationId)}`, { service: "dps" })).body, enrollment: "individual" }); } catch (err) { if (!(err instanceof ApiError && err.status === 404)) throw err; }
    }));
    const perGroup = {};
    await Promise.all(groups.body.map(async (g) => {
      const regs = (await api("POST", `/registrations/${enc(g.enrollmentGroupId)}/query`, { service: "dps", body: { query: "SELECT * FROM registrations" } })).body;
      perGroup[g.enrollmentGroupId] = regs.length;
      for (const r of regs) records.push({ ...r, enrollment: `group ${g.enrollmentGroupId}` });
    }));
    $("#dps-enrollments tbody").replaceChildren(...enrollments.body.map((e) => el("tr", { "data-id": e.registrationId },
      el("td", {}, e.registrationId), el("td", {}, e.attestation.type), el("td", {}, statusBadge(e.provisioningStatus)),
      el("td", {}, e.deviceId || ""), el("td", {}, allocation(e)), el("td", {}, when(e.lastUpdatedDateTimeUtc)),
      el("td", {}, removeButton(`/enrollments/${enc(e.registrationId)}`, `enrollment ${e.registrationId}`)))));
    $("#dps-groups tbody").replaceChildren(...groups.body.map((g) => el("tr", { "data-id": g.enrollmentGroupId },
      el("td", {}, g.enrollmentGroupId), el("td", {}, g.attestation.type), el("td", {}, statusBadge(g.provisioningStatus)),
      el("td", {}, allocation(g)), el("td", {}, String(perGroup[g.enrollmentGroupId] ?? "")), el("td", {}, when(g.lastUpdatedDateTimeUtc)),
      el("td", {}, removeButton(`/enrollmentGroups/${enc(g.enrollmentGroupId)}`, `enrollment group ${g.enrollmentGroupId}`)))));
    records.sort((a, b) => a.registrationId.localeCompare(b.registrationId));
    $("#dps-registrations tbody").replaceChildren(...records.map((r) => el("tr", { "data-id": r.registrationId },
      el("td", {}, r.registrationId), el("td", {}, r.enrollment), el("td", {}, statusBadge(r.status)),
      el("td", {}, r.deviceId || ""), el("td", {}, r.assignedHub || ""), el("td", {}, when(r.lastUpdatedDateTimeUtc)),
      el("td", {}, removeButton(`/registrations/${enc(r.registrationId)}`, `registration record ${r.registrationId}`)))));
  }
  poll(5000, errorBox, refresh);
}

// ---- edge -----------------------------------------------------------------------------------

function edgePage() {
  const errorBox = $("#edge-error");
  function facts(dl, obj) {
    dl.replaceChildren(...Object.entries(obj).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v))]));
  }
  async function refresh() {
    const [{ body: status }, { body: routes }] = await Promise.all([api("GET", "/_emulator/edge"), api("GET", "/_emulator/edge/routes")]);
    $("#edge-body").hidden = false;
    const up = status.upstream || {};
    $("#edge-upstream-state").replaceChildren(badge(String(up.state), up.state === "online" ? "connected" : "disconnected"));
    facts($("#edge-upstream"), up);
    $("#edge-queues tbody").replaceChildren(...Object.entries(status.queues || {}).map(([name, q]) => el("tr", { "data-endpoint": name },
      el("td", {}, name), el("td", { class: "depth" }, String(q.messages)), el("td", {}, JSON.stringify(q.byPriority)))));
    facts($("#edge-store"), status.store || {});
    $("#edge-routes tbody").replaceChildren(
      ...Object.entries(routes.routes || {}).map(([name, text]) => el("tr", { "data-route": name }, el("td", {}, name), el("td", {}, el("code", {}, text)))),
      // A route edgeHub refused: the others keep working, this one says why it does not.
      ...Object.entries(routes.errors || {}).map(([name, error]) => el("tr", { "data-route": name, class: "refused" },
        el("td", {}, name, " ", badge("refused", "disconnected")), el("td", {}, error))));
    const rest = { ...status };
    delete rest.upstream; delete rest.queues; delete rest.store;
    $("#edge-status").textContent = pretty(rest);
  }
  poll(2000, errorBox, refresh);
}

// ---- faults and the packet trace ------------------------------------------------------------

function faultsPage() {
  const errorBox = $("#faults-error");
  const kindSelect = $("#fault-kind");
  let kinds = [];

  function showParams() {
    const kind = kinds.find((k) => k.kind === kindSelect.value);
    $("#fault-imitates").textContent = kind ? `Imitates: ${kind.imitates}` : "";
    $("#fault-params").replaceChildren(...(kind ? kind.params : []).map((p) => el("label", {}, `${p.name} `,
      p.choices
        ? el("select", { "data-param": p.name, "data-type": p.type }, p.choices.map((c) => el("option", { value: String(c), selected: c === p.default }, String(c))))
        : el("input", { "data-param": p.name, "data-type": p.type, placeholder: p.default === null ? "" : String(p.default) }))));
  }

  async function refresh() {
    const { body: faults } = await api("GET", "/_emulator/faults");
    $("#fault-table tbody").replaceChildren(...faults.map((f) => el("tr", { "data-fault-id": f.id, "data-kind": f.kind },
      el("td", {}, f.id), el("td", { class: "kind" }, f.kind),
      el("td", {}, f.deviceId ? (f.moduleId ? `${f.deviceId}/${f.moduleId}` : f.deviceId) : "every device"),
      el("td", {}, Object.entries(f.params || {}).map(([k, v]) => `${k}=${v}`).join(", ")),
      el("td", { class: "fired" }, String(f.fired)), el("td", {}, f.count === null ? "∞" : String(f.count)),
      el("td", {}, f.expires ? new Date(f.expires * 1000).toLocaleTimeString() : f.count === null ? "cleared" : "used up or cleared"),
      el("td", {}, el("button", { type: "button", class: "danger remove", onclick: () => guarded(errorBox, async () => {
        await api("DELETE", `/_emulator/faults/${enc(f.id)}`);
        await refresh();
      }) }, "Clear")))));
  }

  $("#fault-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const params = {};
    for (const input of document.querySelectorAll("#fault-params [data-param]")) {
      const value = input.value.trim();
      if (value === "") continue;
      params[input.dataset.param] = input.dataset.type === "str" ? value : Number(value);
    }
    const body = { kind: kindSelect.value, params };
    if ($("#fault-device").value.trim()) body.deviceId = $("#fault-device").value.trim();
    if ($("#fault-module").value.trim()) body.moduleId = $("#fault-module").value.trim();
    if ($("#fault-count").value) body.count = Number($("#fault-count").value);
    if ($("#fault-duration").value) body.durationSeconds = Number($("#fault-duration").value);
    await guarded(errorBox, async () => { await api("POST", "/_emulator/faults", { body }); await refresh(); });
  });
  $("#faults-clear").addEventListener("click", () => guarded(errorBox, async () => { await api("DELETE", "/_emulator/faults"); await refresh(); }));
  kindSelect.addEventListener("change", showParams);
  guarded(errorBox, async () => {
    kinds = (await api("GET", "/_emulator/faults/kinds")).body;
    kindSelect.replaceChildren(...kinds.map((k) => el("option", { value: k.kind }, k.kind)));
    showParams();
  });
  const wanted = new URLSearchParams(location.search).get("deviceId");
  if (wanted) { $("#fault-device").value = wanted; $("#trace-device").value = wanted; }
  poll(2000, errorBox, refresh);
  tracePanel();
}

function tracePanel() {
  const MAX_ROWS = 1000;
  const errorBox = $("#trace-error");
  const tbody = $("#trace-table tbody");
  const state = $("#trace-state");
  let controller = null;

  function query() {
    const q = {};
    if ($("#trace-device").value.trim()) q.deviceId = $("#trace-device").value.trim();
    if ($("#trace-conn").value) q.conn = $("#trace-conn").value;
    return q;
  }

  function details(e) {
    const parts = [];
    if (e.topic) parts.push(e.topic);
    if (e.topics) parts.push(e.topics.map(([t, q]) => `${t} (QoS ${q})`).join(", "));
    if (e.packet_id !== undefined) parts.push(`id ${e.packet_id}`);
    if (e.qos !== undefined) parts.push(`QoS ${e.qos}`);
    if (e.dup) parts.push("DUP");
    if (e.client_id) parts.push(`client ${e.client_id}`);
    if (e.username) parts.push(`user ${e.username}`);
    if (e.keep_alive !== undefined) parts.push(`keep-alive ${e.keep_alive}`);
    if (e.return_code !== undefined) parts.push(`code ${JSON.stringify(e.return_code)}`);
    if (e.tls) parts.push(`TLS ${JSON.stringify(e.tls)}`);
    if (e.reason) parts.push(e.reason);
    if (e.size !== undefined) parts.push(`${e.size} B`);
    return parts.join(" · ");
  }

  function row(e) {
    return el("tr", { "data-seq": String(e.seq), "data-type": e.type, class: `trace-${e.direction}` },
      el("td", {}, String(e.seq)), el("td", {}, new Date(e.time * 1000).toLocaleTimeString()),
      el("td", {}, el("a", { href: "#trace", onclick: () => { $("#trace-conn").value = e.conn; read(); } }, String(e.conn))),
      el("td", {}, e.peer || ""), el("td", {}, e.listener || ""),
      el("td", {}, e.device_id ? (e.module_id ? `${e.device_id}/${e.module_id}` : e.device_id) : ""),
      el("td", {}, { in: "→", out: "←", event: "•" }[e.direction] || e.direction),
      el("td", { class: "type" }, e.type), el("td", { class: "details" }, details(e)));
  }

  function add(line) {
    let e;
    try { e = JSON.parse(line); } catch (err) { return; }
    tbody.prepend(row(e));
    while (tbody.children.length > MAX_ROWS) tbody.lastElementChild.remove();
  }

  function stop() {
    if (controller) controller.abort();
    controller = null;
    state.textContent = "stopped";
    state.className = "badge";
    $("#trace-follow").textContent = "Follow live";
  }

  async function read() {
    stop();
    tbody.replaceChildren();
    await guarded(errorBox, async () => {
      const text = await apiText("/_emulator/trace", query());
      for (const line of text.split("\n")) if (line.trim()) add(line);
    });
  }

  async function follow() {
    if (controller) { stop(); return; }
    tbody.replaceChildren();
    const mine = controller = new AbortController();
    $("#trace-follow").textContent = "Stop";
    try {
      await streamLines(apiUrl("hub", "/_emulator/trace", { ...query(), follow: "true" }), mine.signal, add, () => {
        state.textContent = "live";
        state.className = "badge connected";
        showError(errorBox, null);
      });
    } catch (err) {
      if (!mine.signal.aborted) showError(errorBox, err);
    }
    if (controller === mine) stop();
  }

  $("#trace-follow").addEventListener("click", follow);
  $("#trace-refresh").addEventListener("click", read);
  $("#trace-clear").addEventListener("click", () => guarded(errorBox, async () => { await api("DELETE", "/_emulator/trace"); tbody.replaceChildren(); }));
  read();
}

// ---- certification reports ------------------------------------------------------------------

const REPORTS = "/_emulator/certification/reports";

function verdictBadge(verdict) { return badge(verdict, `verdict-${verdict.replace(" ", "-")}`); }

function countBadges(counts) {
  return Object.entries(counts || {}).filter(([, n]) => n).map(([result, n]) => badge(`${n} ${result}`, `result-${result}`));
}

function took(started, finished) {
  const s = (new Date(finished) - new Date(started)) / 1000;
  return isNaN(s) ? "" : s < 120 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(1)} min`;
}

function certificationPage() {
  const errorBox = $("#certification-error");
  async function refresh() {
    const { body: runs } = await api("GET", REPORTS);
    $("#certification-empty").hidden = runs.length > 0;
    $("#certification-runs tbody").replaceChildren(...runs.map((r) => el("tr", { "data-report-id": String(r.id), "data-device-id": r.deviceId },
      el("td", {}, el("a", { href: `/certification/${r.id}` }, `#${r.id}`)),
      el("td", { class: "device" }, r.deviceId, el("small", { class: "muted" }, ` ${r.auth || ""}${r.provisioning === "dps" ? ", DPS" : ""}`)),
      el("td", { class: "profile" }, r.profile),
      el("td", {}, when(r.started)),
      el("td", {}, took(r.started, r.finished)),
      el("td", { class: "verdict" }, verdictBadge(r.verdict)),
      el("td", { class: "counts" }, countBadges(r.counts)),
      el("td", {}, el("button", { type: "button", class: "danger delete", onclick: async () => {
        if (!confirm(`Delete certification run #${r.id} of ${r.deviceId}?`)) return;
        await guarded(errorBox, async () => { await api("DELETE", `${REPORTS}/${r.id}`); await refresh(); });
      } }, "Delete")))));
  }
  poll(3000, errorBox, refresh);
}

// A file of the report, fetched with the explorer's header and handed to the browser to save.
async function download(path, name, type) {
  const text = await apiText(path);
  const url = URL.createObjectURL(new Blob([text], { type }));
  el("a", { href: url, download: name }).click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// A page shown in a srcdoc frame resolves its links against the explorer's address: its links to
// its own sections (#check) would load the explorer into the frame. Its own base keeps them in it.
function ownBase(html) {
  const base = '<base href="about:srcdoc">';
  const head = /<head(\s[^>]*)?>/i; // not <header>
  return head.test(html) ? html.replace(head, (tag) => tag + base) : base + html;
}

function certificationReportPage() {
  const id = document.body.dataset.reportId;
  const errorBox = $("#report-error");
  guarded(errorBox, async () => {
    const { body: report } = await api("GET", `${REPORTS}/${id}`);
    const { body: runs } = await api("GET", REPORTS);
    const summary = runs.find((r) => String(r.id) === id) || { verdict: "deleted", formats: ["json"] }; // deleted meanwhile
    $("#report-verdict").replaceChildren(verdictBadge(summary.verdict));
    const d = report.device || {};
    // What the list shows; the rest (command, times, tool, exit code) heads certify's own page below.
    const facts = {
      Device: `${d.deviceId} (${d.auth}, provisioning ${d.provisioning})`, Profile: report.profile,
      Started: when(report.started), Checks: countBadges(report.counts),
    };
    $("#report-facts").replaceChildren(...Object.entries(facts).flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, v)]));
    const base = `certify-${d.deviceId}-${id}`;
    const files = { json: ["application/json", "json"], html: ["text/html", "html"], junit: ["application/xml", "xml"] };
    $("#report-downloads").replaceChildren("Download: ", ...summary.formats.map((f) => el("button", { type: "button", class: `download-${f}`,
      onclick: () => guarded(errorBox, () => download(f === "json" ? `${REPORTS}/${id}` : `${REPORTS}/${id}/${f}`, `${base}.${files[f][1]}`, files[f][0])) },
      f === "junit" ? "JUnit XML" : f.toUpperCase())));
    if (summary.formats.includes("html")) {
      $("#report-frame").srcdoc = ownBase(await apiText(`${REPORTS}/${id}/html`));
    } else {
      $("#report-frame").hidden = true;
      $("#report-json").textContent = pretty(report);
      $("#report-json").hidden = false;
    }
    $("#report-body").hidden = false;
  });
}

// ---- start ----------------------------------------------------------------------------------

const PAGES = {
  devices: devicesPage, device: devicePage, telemetry: telemetryPage, dps: dpsPage, edge: edgePage, faults: faultsPage,
  certification: certificationPage, certification_report: certificationReportPage,
};
document.addEventListener("DOMContentLoaded", () => {
  const start = PAGES[document.body.dataset.page];
  if (start) start();
});
