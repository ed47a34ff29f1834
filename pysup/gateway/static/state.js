// The dashboard's model of the ring: built from /census + /butterfly, updated by /events.
// No DOM here. Every update follows the ring's own precedence rules (incarnations, terms), so an
// event that is older than the snapshot it lands on never overrides it: after a resync the page
// re-applies the events received meanwhile, in any order, and ends in the same state.

export const HEALTH_RANK = { Alive: 1, Suspect: 2, Confirmed: 3, Departed: 4 };
export const MIN_QUORUM = 3; // a leader group's first election waits for 3 members (election.py)
const STATUS_RANK = { NoQuorum: 1, Running: 1, Finished: 2 };
const CENSUS_STATUS = {
  Running: "ElectionInProgress",
  NoQuorum: "ElectionNoQuorum",
  Finished: "ElectionFinished",
};

export function short(id) {
  return id ? String(id).slice(0, 8) : "?";
}

// Habitat's accept rule for member records: higher incarnation, or the same and worse health.
export function supersedes(stored, incoming) {
  if (!stored) return true;
  if (incoming.incarnation !== stored.incarnation) return incoming.incarnation > stored.incarnation;
  return HEALTH_RANK[incoming.health] > HEALTH_RANK[stored.health];
}

function electionWins(stored, incoming) {
  if (!stored) return true;
  if (incoming.term !== stored.term) return incoming.term > stored.term;
  return (STATUS_RANK[incoming.status] || 0) >= (STATUS_RANK[stored.status] || 0);
}

export class RingState {
  constructor() {
    this.localId = null;
    this.members = new Map(); // id -> {id, address, port, incarnation, health, persistent, since, exact}
    this.groups = new Map(); // name -> group (see newGroup)
  }

  // A fresh state from the two snapshots; `previous` keeps each member's time in its health.
  static fromSnapshot(census, butterfly, previous, nowMs) {
    const s = new RingState();
    s.localId = census.local_member_id || (butterfly.member || {}).local_member_id || null;
    const table = (butterfly.member && butterfly.member.members) || {};
    const rows = census.members || Object.values(table).map((m) => ({ ...m, member_id: m.id }));
    for (const m of rows) {
      const old = previous && previous.members.get(m.member_id);
      const same = old && old.health === m.health;
      s.members.set(m.member_id, {
        id: m.member_id,
        address: m.address,
        port: m.gossip_port,
        incarnation: m.incarnation,
        health: m.health,
        persistent: !!m.persistent,
        since: same ? old.since : nowMs,
        exact: same ? old.exact : false,
      });
    }
    for (const [name, g] of Object.entries(census.census_groups || {})) {
      const group = s.group(name);
      const prev = previous && previous.groups.get(name);
      for (const [id, m] of Object.entries(g.population || {})) {
        const known = prev && prev.members.get(id);
        group.members.set(id, {
          id,
          pkg: m.package || "",
          initialized: !!m.initialized,
          healthCheck: m.health_check || (known ? known.healthCheck : null),
          incarnation: known ? known.incarnation : 0,
          flags: m,
        });
      }
      group.electionStatus = g.election_status || "None";
      group.leaderId = g.leader_id || null;
      group.updateElectionStatus = g.update_election_status || "None";
      group.updateLeaderId = g.update_leader_id || null;
      if (g.service_config) group.configVersion = g.service_config.incarnation;
    }
    const lists = (kind) => (butterfly[kind] && butterfly[kind].list) || {};
    for (const [name, byMember] of Object.entries(lists("service"))) {
      const group = s.group(name);
      for (const [id, r] of Object.entries(byMember)) {
        const m = group.members.get(id);
        if (m) m.incarnation = r.incarnation;
      }
    }
    for (const [name, c] of Object.entries(lists("service_config"))) {
      s.group(name).configVersion = c.incarnation; // encrypted configs too (the census skips them)
    }
    for (const [kind, key] of [["election", "election"], ["election_update", "updateElection"]]) {
      for (const [name, e] of Object.entries(lists(kind))) {
        s.group(name)[key] = {
          candidate: e.member_id,
          term: e.term,
          status: e.status,
          votes: e.votes || [],
          voteCount: (e.votes || []).length,
        };
      }
    }
    return s;
  }

  group(name) {
    let g = this.groups.get(name);
    if (!g) {
      g = {
        name,
        members: new Map(), // id -> {id, pkg, initialized, healthCheck, incarnation, flags}
        electionStatus: "None",
        leaderId: null,
        updateElectionStatus: "None",
        updateLeaderId: null,
        election: null,
        updateElection: null,
        configVersion: null,
      };
      this.groups.set(name, g);
    }
    return g;
  }

  // Apply one event (its parsed `data:` line). `atMs`: when it happened, by this browser's clock.
  // Returns true when the state changed.
  apply(ev, atMs) {
    const d = ev.data || {};
    switch (ev.event) {
      case "member.health":
        return this.memberRecord(d, atMs);
      case "member.refuted": {
        const m = this.members.get(d.member_id);
        return !!m && this.memberRecord({ ...m, member_id: m.id, gossip_port: m.port,
          incarnation: d.incarnation, health: "Alive" }, atMs);
      }
      case "rumor.departure": {
        const m = this.members.get(d.member_id);
        if (!m || m.health === "Departed") return false;
        Object.assign(m, { health: "Departed", since: atMs, exact: true });
        return true;
      }
      case "rumor.service":
        return this.serviceRumor(d);
      case "rumor.config": {
        const g = this.group(d.service_group);
        if (g.configVersion !== null && g.configVersion >= d.incarnation) return false;
        g.configVersion = d.incarnation;
        return true;
      }
      case "rumor.election":
        return this.electionRumor(d);
      case "service.health": {
        const m = this.localId && this.group(d.service_group).members.get(this.localId);
        if (!m || m.healthCheck === d.health_check) return false;
        m.healthCheck = d.health_check;
        return true;
      }
      default:
        return false;
    }
  }

  memberRecord(d, atMs) {
    const old = this.members.get(d.member_id);
    const incoming = { incarnation: d.incarnation, health: d.health };
    if (!supersedes(old, incoming)) return false;
    const changed = !old || old.health !== d.health;
    this.members.set(d.member_id, {
      id: d.member_id,
      address: d.address,
      port: d.gossip_port,
      incarnation: d.incarnation,
      health: d.health,
      persistent: !!d.persistent,
      since: changed ? atMs : old.since,
      exact: changed ? true : old.exact,
    });
    return true;
  }

  serviceRumor(d) {
    const g = this.group(d.service_group);
    const m = g.members.get(d.member_id);
    if (m && m.incarnation > d.incarnation) return false;
    g.members.set(d.member_id, {
      id: d.member_id,
      pkg: d.pkg,
      initialized: d.initialized,
      healthCheck: d.health_check,
      incarnation: d.incarnation,
      flags: m ? m.flags : {},
    });
    return true;
  }

  electionRumor(d) {
    const g = this.group(d.service_group);
    const key = d.update ? "updateElection" : "election";
    const incoming = {
      candidate: d.member_id,
      term: d.term,
      status: d.status,
      votes: d.votes || [],
      voteCount: d.vote_count,
    };
    if (!electionWins(g[key], incoming)) return false;
    g[key] = incoming;
    const leader = d.status === "Finished" ? d.member_id : null;
    if (d.update) {
      g.updateElectionStatus = CENSUS_STATUS[d.status];
      g.updateLeaderId = leader;
    } else {
      g.electionStatus = CENSUS_STATUS[d.status];
      g.leaderId = leader;
    }
    return true;
  }

  // A group member's ring health: the member table's, else the census flags.
  healthOf(group, id) {
    const m = this.members.get(id);
    if (m) return m.health;
    const f = (group.members.get(id) || {}).flags || {};
    if (f.departed) return "Departed";
    if (f.confirmed) return "Confirmed";
    if (f.suspect) return "Suspect";
    return f.alive ? "Alive" : null;
  }
}

// A group's election, and what it waits for, in words (the rules of pysup/election.py).
export function describeElection(state, group) {
  const ids = [...group.members.keys()];
  const health = ids.map((id) => state.healthOf(group, id));
  const population = health.filter((h) => h && h !== "Departed").length;
  const alive = health.filter((h) => h === "Alive").length;
  const e = group.election;
  const status = e ? CENSUS_STATUS[e.status] : group.electionStatus;
  if (status === "ElectionFinished" || (!e && group.leaderId)) {
    const leader = group.leaderId || (e && e.candidate);
    return { state: "finished", text: `leader ${short(leader)}${e ? ` (term ${e.term})` : ""}` };
  }
  if (status === "ElectionNoQuorum") {
    const bootstrapping = !e || e.term === 0;
    if (bootstrapping && population < MIN_QUORUM) {
      const n = MIN_QUORUM - population;
      return {
        state: "waiting",
        text: `no quorum: waiting for ${n} more member${n === 1 ? "" : "s"} ` +
          `(a leader group elects once it has ${MIN_QUORUM})`,
      };
    }
    const need = Math.max(1, Math.floor(population / 2) + 1 - alive);
    return {
      state: "no-quorum",
      text: `no quorum: ${alive} of ${population} alive, waiting for ${need} more alive`,
    };
  }
  if (status === "ElectionInProgress") {
    const voted = new Set(e ? e.votes : []);
    const missing = ids.filter((id, i) => health[i] === "Alive" && !voted.has(id));
    const votes = ids.filter((id, i) => health[i] === "Alive" && voted.has(id)).length;
    const waiting = missing.length ? `, waiting for ${missing.map(short).join(", ")}` : "";
    const term = e ? ` term ${e.term}` : "";
    return { state: "running", text: `electing${term}: ${votes} of ${alive} votes${waiting}` };
  }
  return { state: "none", text: "no election (standalone)" };
}

// One line about an event, for the log.
// Whether an event belongs in the log. A health check whose result did not change is not news:
// the service groups panel shows the current result, and a check every interval on every service
// would bury what did change.
export function isNews(ev) {
  if (ev.event === "service.health") {
    const d = ev.data || {};
    return d.previous !== d.health_check;
  }
  return true;
}

export function summarize(ev) {
  const d = ev.data || {};
  const sg = d.service_group || "";
  switch (ev.event) {
    case "member.health": {
      const was = d.previous ? ` (was ${d.previous})` : " (new)";
      const by = d.suspected_by ? `, suspected by ${short(d.suspected_by)}` : "";
      return `${short(d.member_id)} ${d.health}${was}, incarnation ${d.incarnation}${by}`;
    }
    case "member.refuted":
      return `${short(d.member_id)} refuted a suspicion: incarnation ${d.incarnation}`;
    case "rumor.service":
      return `${sg} ${short(d.member_id)}: ${d.pkg}, health ${d.health_check || "not checked"}`;
    case "rumor.config":
      return `${sg} config version ${d.incarnation}${d.encrypted ? " (encrypted)" : ""}`;
    case "rumor.file":
      return `${sg} file ${d.filename} version ${d.incarnation}`;
    case "rumor.election":
      return `${sg} election term ${d.term}: ${d.status}, candidate ${short(d.member_id)}, ` +
        `${d.vote_count} vote${d.vote_count === 1 ? "" : "s"}`;
    case "rumor.departure":
      return `${short(d.member_id)} departed the ring`;
    case "election.start":
      return `${sg} election started, term ${d.term} (${d.why})`;
    case "election.vote":
      return `${sg} voted in term ${d.term}`;
    case "election.finish":
      return `${sg} elected ${short(d.leader)}, term ${d.term}, ${d.votes} votes (${d.why})`;
    case "election.no_quorum":
      return d.why === "waiting_for_members"
        ? `${sg} no quorum: waiting for ${d.waiting_for} more member(s)`
        : `${sg} no quorum: ${d.alive} of ${d.population} alive, waiting for ${d.waiting_for}`;
    case "election.even_population":
      return `${sg} has ${d.members} members: an even split leaves no quorum`;
    case "config.applied":
      return `${sg} applied ${d.source} config${d.incarnation !== null ? ` version ${d.incarnation}` : ""}`;
    case "config.rejected":
      return `${sg} rejected ${d.source} config: ${d.error}`;
    case "file.applied":
      return `${sg} wrote ${(d.files || []).join(", ")}`;
    case "file.rejected":
      return `${sg} rejected file ${d.filename || ""}: ${d.error}`;
    case "service.state":
      return `${sg} ${d.previous} → ${d.state}${d.reason ? ` (${d.reason})` : ""}`;
    case "service.hook":
      return `${sg} hook ${d.hook}: ` + (d.error ? d.error
        : d.timed_out ? "timed out" : `exit ${d.exit_code}`) + ` in ${d.duration_s}s`;
    case "service.exited":
      return `${sg} exited with ${d.exit_code}; restart #${d.attempt} in ${d.restart_in_s}s`;
    case "service.restart":
      return `${sg} restarting: ${d.reason}`;
    case "service.health":
      return `${sg} health ${d.health_check}${d.previous ? ` (was ${d.previous})` : ""}`;
    case "stream.reset":
      return `history exceeded (${d.reason}): resyncing`;
    case "stream.dropped":
      return "this page fell behind and was dropped: reconnecting";
    case "stream.closing":
      return "the supervisor is shutting down";
    default:
      return JSON.stringify(d);
  }
}

// The members and groups an event is about, for the log's filters.
export function subjects(ev) {
  const d = ev.data || {};
  const members = [d.member_id, d.candidate, d.voter, d.leader, d.suspected_by].filter(Boolean);
  return { members, group: d.service_group || null };
}

// Server-Sent Events, parsed from a fetch() body (EventSource cannot send the token header).
export class SseParser {
  constructor() {
    this.buf = "";
    this.decoder = new TextDecoder();
    this.reset();
    this.retryMs = null;
  }
  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }
  feed(bytes) {
    this.buf += this.decoder.decode(bytes, { stream: true });
    const lines = this.buf.split(/\r\n|\n|\r/);
    this.buf = lines.pop();
    const out = [];
    for (const line of lines) {
      if (line === "") {
        if (this.data.length || this.event) {
          out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
        }
        this.reset();
      } else if (!line.startsWith(":")) {
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? "" : line.slice(i + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") this.event = value;
        else if (field === "data") this.data.push(value);
        else if (field === "id") this.id = value;
        else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
      }
    }
    return out;
  }
}
