// The dashboard: connects to /events, resyncs from /census + /butterfly, renders.
// Data from the ring is untrusted: it is only ever inserted as text (textContent), never as HTML.
import {
  RingState, describeElection, isNews, short, subjects, summarize, SseParser,
} from "./state.js";

const BASE = new URL("..", window.location.href); // the page is <gateway>/ui/
const TOKEN_KEY = "pysup.gateway.token";
const LOG_MAX = 500; // log entries kept on the page
const BACKOFF_MAX_MS = 30000;
const CATEGORIES = ["member", "rumor", "election", "config", "file", "service", "stream"];

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};

let state = new RingState();
let offsetMs = 0; // server clock - this browser's clock, from stream.hello
let lastId = null;
let token = sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY);
let tokenWaiters = [];
const seen = new Set(); // event ids in the log (a replay after a reset repeats some)

class AuthError extends Error {}

// --- the gateway ----------------------------------------------------------------------------

async function get(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(new URL(path, BASE), { ...options, headers, cache: "no-store" });
  if (resp.status === 401) {
    askToken(token ? "That token was refused." : "This gateway needs its token.");
    throw new AuthError("unauthorized");
  }
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp;
}

function askToken(why) {
  $("token-why").textContent = why;
  if (!$("token-dialog").open) $("token-dialog").showModal();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function tokenEntered(value, remember) {
  token = value || null;
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  if (token) (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((resolve) => resolve());
}

// --- resync: a fresh snapshot, then the events received since it was asked for ----------------

let resyncGen = 0;
let sinceResync = null; // events received while a resync is in flight

async function resync() {
  const gen = ++resyncGen;
  sinceResync = [];
  setSync("resyncing");
  try {
    const [census, butterfly] = await Promise.all([
      get("census").then((r) => r.json()),
      get("butterfly").then((r) => r.json()),
    ]);
    if (gen !== resyncGen) return; // a newer resync is under way
    const fresh = RingState.fromSnapshot(census, butterfly, state, Date.now());
    for (const [ev, at] of sinceResync) fresh.apply(ev, at);
    state = fresh;
    sinceResync = null;
    document.body.dataset.resyncs = String(Number(document.body.dataset.resyncs || 0) + 1);
    setSync("ok");
    render();
  } catch (e) {
    if (gen !== resyncGen) return;
    setSync(`failed: ${e.message}`);
    if (e instanceof AuthError) await new Promise((r) => tokenWaiters.push(r));
    else await sleep(3000);
    if (gen === resyncGen) resync();
  }
}

// --- the stream -------------------------------------------------------------------------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function backoff(attempt) {
  const ms = Math.min(BACKOFF_MAX_MS, 1000 * 2 ** attempt);
  return ms / 2 + Math.random() * (ms / 2);
}

async function run() {
  let attempt = 0;
  for (;;) {
    const ctrl = new AbortController();
    let watchdog = null;
    let silenceMs = 45000;
    const kick = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ctrl.abort(new Error("no heartbeat")), silenceMs);
    };
    try {
      setConn("connecting", "connecting…");
      const headers = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const resp = await get("events", { headers, signal: ctrl.signal });
      const reader = resp.body.getReader();
      const parser = new SseParser();
      kick();
      resync(); // every (re)connection: anything may have been missed while away
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        kick();
        for (const msg of parser.feed(value)) {
          const hello = handle(msg);
          if (hello) {
            attempt = 0;
            silenceMs = Math.max(5000, hello.heartbeat_s * 3000);
            kick();
            setConn("live", "live");
          }
        }
      }
      setConn("reconnecting", "stream ended");
    } catch (e) {
      if (e instanceof AuthError) {
        setConn("auth", "needs the gateway token");
        await new Promise((r) => tokenWaiters.push(r));
        continue;
      }
      setConn("reconnecting", e.message || "connection failed");
    } finally {
      clearTimeout(watchdog);
      ctrl.abort();
    }
    const delay = backoff(attempt++);
    setConn("reconnecting", `reconnecting in ${Math.ceil(delay / 1000)}s`);
    await sleep(delay);
  }
}

// One message from the stream. Returns the hello payload for a stream.hello.
function handle(msg) {
  let ev;
  try {
    ev = JSON.parse(msg.data);
  } catch {
    return null;
  }
  if (msg.id !== null) lastId = msg.id;
  if (ev.event === "stream.hello") {
    offsetMs = ev.data.server_time * 1000 - Date.now();
    if (ev.data.member_id) state.localId = ev.data.member_id;
    return ev.data;
  }
  if (ev.event === "stream.reset") resync();
  const at = ev.time * 1000 - offsetMs;
  if (sinceResync) sinceResync.push([ev, at]);
  if (state.apply(ev, at)) render();
  logEvent(ev);
  return null;
}

// --- rendering --------------------------------------------------------------------------------

function setConn(kind, text) {
  const c = $("conn");
  c.dataset.state = kind;
  c.textContent = text;
}

function setSync(text) {
  $("sync").textContent = text === "ok" ? "" : text;
}

function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s}s`;
  if (s < 5400) return `${Math.round(s / 60)}m`;
  if (s < 129600) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

function badge(text, kind) {
  return el("span", { class: `badge ${kind}`, text });
}

function render() {
  renderMembers();
  renderGroups();
  renderFilterOptions();
  $("me").textContent = state.localId ? `member ${short(state.localId)}` : "";
}

function renderMembers() {
  const members = [...state.members.values()].sort((a, b) =>
    HEALTH_ORDER(a) - HEALTH_ORDER(b) || a.id.localeCompare(b.id));
  const rows = members.map((m) => el("tr", { dataset: { memberId: m.id, health: m.health } },
    el("td", { "data-label": "member", class: "id" }, el("span", { text: short(m.id), title: m.id }),
      m.id === state.localId ? badge("this member", "me") : "",
      m.persistent ? badge("permanent", "perm") : ""),
    el("td", { "data-label": "address", text: `${m.address}:${m.port}` }),
    el("td", { "data-label": "health", class: "health" }, badge(m.health, m.health.toLowerCase())),
    el("td", { "data-label": "for", class: "for", dataset: { since: m.since, exact: m.exact } }),
    el("td", { "data-label": "incarnation", text: String(m.incarnation) })));
  $("members-body").replaceChildren(...rows);
  const alive = members.filter((m) => m.health === "Alive").length;
  $("member-count").textContent = `${alive} of ${members.length} alive`;
  tickAges();
}

const HEALTH_ORDER = (m) => ({ Confirmed: 0, Suspect: 1, Alive: 2, Departed: 3 })[m.health] ?? 4;

function tickAges() {
  const now = Date.now();
  for (const td of document.querySelectorAll("td.for")) {
    const text = age(now - Number(td.dataset.since));
    td.textContent = td.dataset.exact === "true" ? text : `≥ ${text}`;
    td.title = td.dataset.exact === "true" ? "since the change was reported"
      : "at least since this page learned it";
  }
}

function renderGroups() {
  const cards = [...state.groups.values()].sort((a, b) => a.name.localeCompare(b.name))
    .filter((g) => g.members.size > 0).map(groupCard);
  $("groups").replaceChildren(...(cards.length ? cards
    : [el("p", { class: "muted", text: "No service groups in the ring yet." })]));
}

function groupCard(g) {
  const election = describeElection(state, g);
  const leader = g.leaderId ? short(g.leaderId) : "none";
  const facts = el("dl", { class: "facts" },
    el("dt", { text: "leader" }), el("dd", { class: "leader", text: leader }),
    el("dt", { text: "config version" }),
    el("dd", { class: "config", text: g.configVersion === null ? "none gossiped" : String(g.configVersion) }),
    el("dt", { text: "election" }),
    el("dd", { class: "election", dataset: { state: election.state }, text: election.text }));
  if (g.updateElection || g.updateElectionStatus !== "None") {
    // A rolling update elects its own leader, who updates first.
    const e = g.updateElection;
    const status = e ? e.status : g.updateElectionStatus;
    const who = g.updateLeaderId ? `leader ${short(g.updateLeaderId)}` : status;
    facts.append(el("dt", { text: "update election" }),
      el("dd", { class: "update-election", text: e ? `${who} (term ${e.term})` : who }));
  }
  const rows = [...g.members.values()].sort((a, b) => a.id.localeCompare(b.id)).map((m) => {
    const health = state.healthOf(g, m.id) || "Unknown";
    return el("li", { dataset: { memberId: m.id, health } },
      el("span", { class: "id", text: short(m.id), title: m.id }),
      m.id === g.leaderId ? badge("leader", "leader") : "",
      badge(health, health.toLowerCase()),
      m.healthCheck ? badge(`check ${m.healthCheck}`, `check-${m.healthCheck.toLowerCase()}`) : "",
      el("span", { class: "pkg muted", text: m.pkg }));
  });
  return el("article", { class: "group", dataset: { group: g.name } },
    el("h3", { text: g.name }), facts, el("ul", { class: "group-members" }, ...rows));
}

// --- the event log ----------------------------------------------------------------------------

function renderFilterOptions() {
  fillSelect($("filter-member"), [...state.members.keys()].sort(), (id) => {
    const m = state.members.get(id);
    return `${short(id)} ${m.address}`;
  });
  fillSelect($("filter-group"), [...state.groups.keys()].sort(), (name) => name);
}

function fillSelect(select, values, label) {
  const key = values.join(" ");
  if (select.dataset.values === key) return; // rebuilding would close an open menu
  select.dataset.values = key;
  const current = select.value;
  const options = [el("option", { value: "", text: "all" })];
  for (const v of values) options.push(el("option", { value: v, text: label(v) }));
  select.replaceChildren(...options);
  select.value = values.includes(current) ? current : "";
}

function logEvent(ev) {
  if (!isNews(ev)) return;
  if (ev.id !== null) {
    if (seen.has(ev.id)) return;
    seen.add(ev.id);
  }
  const { members, group } = subjects(ev);
  const time = new Date(ev.time * 1000 - offsetMs).toLocaleTimeString();
  const li = el("li", {
    dataset: { category: ev.event.split(".")[0], members: members.join(" "), group: group || "" },
  }, el("time", { text: time }), el("code", { text: ev.event }),
  el("span", { class: "summary", text: summarize(ev) }));
  applyFilter(li);
  const log = $("log");
  log.prepend(li);
  while (log.children.length > LOG_MAX) {
    const gone = log.lastElementChild;
    log.removeChild(gone);
  }
  if (seen.size > 4 * LOG_MAX) seen.clear();
}

function filters() {
  const on = new Set(CATEGORIES.filter((c) => $(`cat-${c}`).checked));
  return { on, member: $("filter-member").value, group: $("filter-group").value };
}

function applyFilter(li, f = filters()) {
  const d = li.dataset;
  li.hidden = !f.on.has(d.category) ||
    (f.member && !d.members.split(" ").includes(f.member)) ||
    (f.group && d.group !== f.group);
}

function refilter() {
  const f = filters();
  for (const li of $("log").children) applyFilter(li, f);
}

// --- start ------------------------------------------------------------------------------------

function setup() {
  const cats = $("categories");
  for (const c of CATEGORIES) {
    const box = el("input", { type: "checkbox", id: `cat-${c}` });
    box.checked = true;
    box.addEventListener("change", refilter);
    cats.append(el("label", {}, box, ` ${c}`));
  }
  $("filter-member").addEventListener("change", refilter);
  $("filter-group").addEventListener("change", refilter);
  $("token-button").addEventListener("click", () => askToken("Enter the gateway token."));
  $("token-ok").addEventListener("click", () => {
    tokenEntered($("token-input").value.trim(), $("token-remember").checked);
    $("token-input").value = "";
    $("token-dialog").close();
  });
  $("token-cancel").addEventListener("click", () => $("token-dialog").close());
  setInterval(tickAges, 1000);
  render();
  run();
}

setup();
