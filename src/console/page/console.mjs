// The console page: signs in with an app's key and secret, follows the app's event stream at
// /console, shows its occupied channels and presence members, and triggers events through the
// REST API. Every request is signed here, in the page, with the secret the user typed; the
// secret never leaves the page.

import { signedQuery } from "./crypto.mjs";

const $ = (id) => document.getElementById(id);

// Types the server sends, and the colour group each row gets.
const GROUPS = {
  Connection: "connection",
  Disconnection: "connection",
  "Connection refused": "problem",
  Subscribed: "subscription",
  Unsubscribed: "subscription",
  "Signed in": "subscription",
  "API Message": "message",
  "Client Event Message": "message",
  "Server to user": "message",
  "Member added": "presence",
  "Member removed": "presence",
  "Channel occupied": "channel",
  "Channel vacated": "channel",
  "Cache miss": "channel",
  "Webhook sent": "channel",
  "Webhook failed": "problem",
  "Rate limited": "problem",
  "Events dropped": "problem",
};

// Types after which the channel list may have changed.
const CHANNEL_CHANGES = new Set([
  "Subscribed",
  "Unsubscribed",
  "Disconnection",
  "Member added",
  "Member removed",
  "Channel occupied",
  "Channel vacated",
]);

let session = null; // { key, secret, appId, socket }
let events = []; // newest last
let pending = [];
let paused = false;
let total = 0;
let refreshTimer = null;
let selectedChannel = null;

function setStatus(text, state) {
  const status = $("status");
  status.textContent = text;
  status.dataset.state = state;
}

function showError(element, message) {
  element.textContent = message;
  element.hidden = !message;
}

/** A signed GET of a console or REST path: the parsed JSON, or an Error with the server's text. */
async function signedGet(path, params = {}) {
  const query = signedQuery({ method: "GET", path, key: session.key, secret: session.secret, params });
  const response = await fetch(`${path}?${query}`);
  const text = await response.text();
  if (!response.ok) throw new Error(`${response.status}: ${text.trim()}`);
  return JSON.parse(text);
}

async function connect(key, secret) {
  disconnect();
  showError($("login-error"), "");
  session = { key, secret };
  setStatus("Connecting…", "connecting");
  let app;
  try {
    app = await signedGet("/console/app");
  } catch (error) {
    session = null;
    setStatus("Signed out", "error");
    showError($("login-error"), `Could not sign in: ${error.message}`);
    return;
  }
  session.appId = app.app_id;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = signedQuery({ method: "GET", path: "/console", key, secret });
  const socket = new WebSocket(`${scheme}://${location.host}/console?${query}`);
  session.socket = socket;
  socket.onopen = () => {
    setStatus(`Watching app ${app.app_id} (key ${key})`, "live");
    $("panels").hidden = false;
    $("disconnect").hidden = false;
    refreshChannels();
  };
  socket.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    received(event);
  };
  socket.onclose = () => {
    if (session?.socket === socket) {
      setStatus(`Disconnected from app ${app.app_id}`, "error");
      session.socket = null;
    }
  };
}

function disconnect() {
  if (session?.socket) {
    const socket = session.socket;
    session.socket = null;
    socket.close();
  }
  clearInterval(refreshTimer);
  refreshTimer = null;
}

function received(event) {
  total += 1;
  $("event-count").textContent = String(total);
  if (CHANNEL_CHANGES.has(event.type)) scheduleRefresh();
  if (paused) {
    pending.push(event);
    trim(pending);
    $("pending-count").textContent = String(pending.length);
    return;
  }
  events.push(event);
  trim(events);
  render();
}

function maxRows() {
  const n = Number.parseInt($("max-rows").value, 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, 10000) : 500;
}

function trim(list) {
  const excess = list.length - maxRows();
  if (excess > 0) list.splice(0, excess);
}

function matches(event) {
  const type = $("filter-type").value;
  if (type && event.type !== type) return false;
  const channel = $("filter-channel").value.trim();
  if (channel) {
    const names = event.channels ?? (event.channel ? [event.channel] : []);
    if (!names.some((name) => name.startsWith(channel))) return false;
  }
  const text = $("filter-text").value.trim().toLowerCase();
  if (text) {
    const haystack = [event.type, event.socket, event.details, event.data ?? ""].join(" ").toLowerCase();
    if (!haystack.includes(text)) return false;
  }
  return true;
}

function localTime(event) {
  if (!event.timestamp_ms) return event.time ?? "";
  return new Date(event.timestamp_ms).toLocaleTimeString([], { hour12: false });
}

function render() {
  const types = $("filter-type");
  for (const event of events) {
    if (![...types.options].some((o) => o.value === event.type)) {
      types.add(new Option(event.type, event.type));
    }
  }
  const body = $("events").tBodies[0];
  const rows = [];
  for (let i = events.length - 1; i >= 0; i--) {
    const event = events[i];
    if (!matches(event)) continue;
    const row = document.createElement("tr");
    row.className = GROUPS[event.type] ?? "";
    row.dataset.type = event.type;
    const cells = [localTime(event), event.type, event.socket, event.details];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    if (event.data !== undefined) {
      const data = document.createElement("div");
      data.className = "data";
      data.textContent = event.data;
      row.lastChild.append(data);
    }
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

function scheduleRefresh() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshChannels();
  }, 300);
}

async function refreshChannels() {
  if (!session?.appId) return;
  const base = `/apps/${encodeURIComponent(session.appId)}/channels`;
  try {
    const [all, presence] = await Promise.all([
      signedGet(base, { info: "subscription_count" }),
      signedGet(base, { filter_by_prefix: "presence-", info: "user_count,subscription_count" }),
    ]);
    const channels = { ...all.channels, ...presence.channels };
    const body = $("channels").tBodies[0];
    const names = Object.keys(channels).sort();
    body.replaceChildren(
      ...names.map((name) => {
        const row = document.createElement("tr");
        row.dataset.channel = name;
        const isPresence = name.startsWith("presence-");
        row.dataset.presence = String(isPresence);
        const counts = channels[name];
        for (const text of [name, counts.subscription_count ?? "", isPresence ? counts.user_count ?? "" : ""]) {
          const cell = document.createElement("td");
          cell.textContent = String(text);
          row.append(cell);
        }
        if (isPresence) row.addEventListener("click", () => showMembers(name));
        return row;
      }),
    );
    $("channel-count").textContent = String(names.length);
    showError($("channels-error"), "");
    if (selectedChannel) {
      if (names.includes(selectedChannel)) showMembers(selectedChannel);
      else $("members").hidden = true;
    }
  } catch (error) {
    showError($("channels-error"), `Channels unavailable: ${error.message}`);
  }
}

async function showMembers(channel) {
  selectedChannel = channel;
  try {
    const { members } = await signedGet("/console/members", { channel });
    $("members-channel").textContent = channel;
    $("member-list").replaceChildren(
      ...members.map((member) => {
        const item = document.createElement("li");
        item.dataset.userId = member.user_id;
        item.append(member.user_id);
        if (member.user_info !== null && member.user_info !== undefined) {
          const info = document.createElement("code");
          info.textContent = ` ${JSON.stringify(member.user_info)}`;
          item.append(info);
        }
        return item;
      }),
    );
    $("members").hidden = false;
  } catch (error) {
    showError($("channels-error"), `Members unavailable: ${error.message}`);
  }
}

async function trigger() {
  const channels = $("trigger-channels")
    .value.split(",")
    .map((c) => c.trim())
    .filter(Boolean);
  const body = JSON.stringify({ name: $("trigger-event").value.trim(), channels, data: $("trigger-data").value });
  const path = `/apps/${encodeURIComponent(session.appId)}/events`;
  const query = signedQuery({ method: "POST", path, key: session.key, secret: session.secret, body });
  const result = $("trigger-result");
  try {
    const response = await fetch(`${path}?${query}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    const text = (await response.text()).trim();
    result.dataset.ok = String(response.ok);
    result.textContent = response.ok ? `Sent to ${channels.join(", ")}` : `Refused (${response.status}): ${text}`;
  } catch (error) {
    result.dataset.ok = "false";
    result.textContent = `Not sent: ${error.message}`;
  }
}

async function offerLocalApps() {
  let apps;
  try {
    const response = await fetch("/console/apps");
    if (!response.ok) return;
    ({ apps } = await response.json());
  } catch {
    return;
  }
  if (!apps?.length) return;
  const select = $("apps");
  select.replaceChildren(new Option("Choose…", ""));
  for (const app of apps) {
    const option = new Option(`${app.app_id} (key ${app.key})`, app.key);
    if (app.secret) option.dataset.secret = app.secret;
    select.add(option);
  }
  $("apps-field").hidden = false;
  select.addEventListener("change", () => {
    const option = select.selectedOptions[0];
    $("key").value = option.value;
    $("secret").value = option.dataset.secret ?? "";
    if (!option.dataset.secret) $("secret").focus();
  });
}

function setUp() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    connect($("key").value.trim(), $("secret").value);
  });
  $("disconnect").addEventListener("click", () => {
    disconnect();
    session = null;
    $("panels").hidden = true;
    $("disconnect").hidden = true;
    setStatus("Signed out", "signed-out");
  });
  for (const id of ["filter-type", "filter-channel", "filter-text"]) {
    $(id).addEventListener("input", render);
  }
  $("max-rows").addEventListener("change", () => {
    trim(events);
    render();
  });
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").setAttribute("aria-pressed", String(paused));
    $("pause").textContent = paused ? "Resume" : "Pause";
    $("paused-note").hidden = !paused;
    if (!paused) {
      events.push(...pending);
      pending = [];
      trim(events);
      render();
    }
    $("pending-count").textContent = "0";
  });
  $("clear").addEventListener("click", () => {
    events = [];
    pending = [];
    render();
  });
  $("trigger-form").addEventListener("submit", (e) => {
    e.preventDefault();
    trigger();
  });
  // Counts drift with events the stream does not carry (other nodes): re-read now and then.
  setInterval(() => session?.socket && refreshChannels(), 5000);
  offerLocalApps();
}

setUp();
