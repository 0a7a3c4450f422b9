// Operators' control centre: the fleet (every community of the token: status, live generation,
// self-consumption today, open alarms, devices online), and the drill-down into one community:
// every member and plant with live values, a 15-minute trend, device health, open and recent
// alarms, community self-consumption and coverage, and the coefficient schedule in force.
import { liveTrend } from "./charts.js";
import {
  COLORS, LiveClient, api, applyI18n, fmtAge, fmtBeta, fmtDateTime, fmtEnergy, fmtPct, fmtPower,
  getToken, legend, onLangChange, recall, registerServiceWorker, remember, renderState,
  setupLangSelect, t,
} from "./common.js";
import {
  ALARM, ALARM_STATE, CHANNEL_KIND, COMMUNITY, LIVE, LIVE_ALARM, MEMBER, PLANT, TYPE,
  channel as channelOf,
} from "./messages.js";

const $ = (id) => document.getElementById(id);
const state = {
  cid: null, overview: null, members: new Map(), community: null, alarms: new Map(),
  devices: [], deadLetters: [], conn: "connecting", offlineSince: null, fleet: [],
  fleetLive: new Map(), recent: [], trend: [], reconciliation: null,
};
const TREND_MS = 15 * 60 * 1000;

function cell(text, attrs = {}) {
  const td = document.createElement("td");
  td.textContent = text;
  for (const [k, v] of Object.entries(attrs)) td.setAttribute(k, v);
  return td;
}

function renderMembers() {
  const body = $("members-table").tBodies[0];
  const rows = (state.overview?.members || []).map((m) => {
    const live = state.members.get(m.id);
    const tr = document.createElement("tr");
    tr.dataset.member = m.id;
    if (live?.[MEMBER.stale]) tr.classList.add("stale");
    tr.append(
      Object.assign(document.createElement("th"), { scope: "row", textContent: m.name }),
      // m is the REST overview's member (its coefficient now), live the LiveMember message
      cell(fmtBeta(live?.[MEMBER.coefficient] ?? m.coefficient), { "data-field": "coefficient" }),
      cell(fmtPower(live?.[MEMBER.assignedW]), { "data-field": "assigned" }),
      cell(fmtPower(live?.[MEMBER.consumptionW]), { "data-field": "consumption" }),
      cell(fmtPower(live?.[MEMBER.selfConsumptionW]), { "data-field": "self" }),
      cell(fmtPower(live?.[MEMBER.importW]), { "data-field": "import" }),
      cell(fmtAge(live?.[MEMBER.tsMs]), { "data-field": "age", class: "age" }),
    );
    return tr;
  });
  body.replaceChildren(...rows);
}

function renderCommunity() {
  const c = state.community;
  if (c) {
    const generation = c[COMMUNITY.generationW];
    const consumption = c[COMMUNITY.consumptionW];
    const self = c[COMMUNITY.selfConsumptionW];
    $("community-generation").textContent = fmtPower(generation);
    $("community-consumption").textContent = fmtPower(consumption);
    $("community-self").textContent = fmtPower(self);
    $("community-import").textContent = fmtPower(c[COMMUNITY.importW]);
    $("community-surplus").textContent = fmtPower(c[COMMUNITY.surplusW]);
    $("community-selfratio").textContent = generation > 0 ? fmtPct(self / generation) : "—";
    $("community-coverage").textContent = consumption > 0 ? fmtPct(self / consumption) : "—";
    $("community-reporting").textContent =
      `${c[COMMUNITY.membersReporting]} / ${c[COMMUNITY.membersTotal]}`;
    $("live-age").textContent = t("updated", { age: fmtAge(c[COMMUNITY.tsMs]) });
  }
  const plants = state.overview?.plants || [];
  $("plants-table").tBodies[0].replaceChildren(...plants.map((p) => {
    const live = c?.[COMMUNITY.plants]?.[p.id];
    const tr = document.createElement("tr");
    tr.dataset.plant = p.id;
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: p.name }),
      cell(fmtPower(live?.[PLANT.powerW]), { "data-field": "power" }),
      cell(fmtAge(live?.[PLANT.tsMs]), { class: "age" }));
    return tr;
  }));
}

function renderOverview() {
  const o = state.overview;
  if (!o) return;
  $("community-name").textContent = `· ${o.name}`;
  $("today-generation").textContent = fmtEnergy(o.today.generation_kwh);
  $("today-consumption").textContent = fmtEnergy(o.today.consumption_kwh);
  $("today-selfratio").textContent = fmtPct(o.today.self_consumption_ratio);
  $("today-coverage").textContent = fmtPct(o.today.coverage_ratio);
  const s = o.schedule;
  $("schedule-kind").textContent = s ? (s.kind === "static" ? t("scheduleStatic")
    : t("scheduleHourly", { year: s.year ?? "" })) : "—";
  $("schedule-from").textContent = s?.effective_from ?? "—";
  $("schedule-sum").textContent = s ? fmtBeta(s.sum_now) : "—";
}

function renderAlarms() {
  const list = $("alarms-list");
  const open = [...state.alarms.values()]
    .sort((a, b) => b[ALARM.openedAtMs] - a[ALARM.openedAtMs]);
  if (!open.length) {
    list.replaceChildren(Object.assign(document.createElement("li"),
      { className: "none", textContent: t("noAlarms") }));
    return;
  }
  list.replaceChildren(...open.map((a) => {
    const li = document.createElement("li");
    li.className = `sev-${a[ALARM.severity]}`;
    li.dataset.alarm = a[ALARM.alarmId];
    const who = a[ALARM.memberId] ? ` · ${memberName(a[ALARM.memberId])}` : "";
    li.textContent = `${t(a[ALARM.severity])} · ${kindName(a)} · ${a[ALARM.deviceId]}${who} · ` +
      `${t("since")} ${fmtDateTime(a[ALARM.openedAtMs])}`;
    return li;
  }));
}

const kindName = (a) => t(`kind_${a[ALARM.kind]}`, {}, a[ALARM.kind]);

// closed alarms of the last days (REST "recent"), the alarm history of the community
function renderRecent() {
  const list = $("recent-alarms");
  if (!state.recent.length) {
    list.replaceChildren(Object.assign(document.createElement("li"),
      { className: "none", textContent: t("noRecentAlarms") }));
    return;
  }
  list.replaceChildren(...state.recent.slice(0, 20).map((a) => {
    const li = document.createElement("li");
    li.className = `sev-${a[ALARM.severity]}`;
    li.dataset.alarm = a[ALARM.alarmId];
    const who = a[ALARM.memberId] ? ` · ${memberName(a[ALARM.memberId])}` : "";
    li.append(document.createTextNode(`${kindName(a)} · ${a[ALARM.deviceId]}${who} `),
      Object.assign(document.createElement("span"), { className: "when",
        textContent: `${fmtDateTime(a[ALARM.openedAtMs])} · ${t("closedAt", {
          time: fmtDateTime(a[ALARM.closedAtMs]) })}` }));
    return li;
  }));
}

// -- the fleet: every community of the token ----------------------------------------------------
function renderFleet() {
  $("fleet-table").tBodies[0].replaceChildren(...state.fleet.map((f) => {
    const tr = document.createElement("tr");
    tr.dataset.community = f.id;
    if (f.id === state.cid) { tr.classList.add("selected"); tr.setAttribute("aria-current", "true"); }
    const live = state.fleetLive.get(f.id);
    const th = Object.assign(document.createElement("th"), { scope: "row" });
    th.append(Object.assign(document.createElement("a"), { href: `?community=${encodeURIComponent(f.id)}`,
      textContent: f.name }));
    const status = cell("", { "data-field": "status" });
    status.append(Object.assign(document.createElement("span"), { className: `badge fleet-${f.status}`,
      textContent: t(`fleet_${f.status}`) }));
    tr.append(th, status,
      cell(fmtPower(live?.[COMMUNITY.generationW]), { "data-field": "generation" }),
      cell(fmtPct(f.today.self_consumption_ratio), { "data-field": "selfratio" }),
      // the community on screen counts its open alarms live (REST + websocket)
      cell(String(f.id === state.cid ? state.alarms.size : f.open_alarms),
        { "data-field": "alarms" }),
      cell(f.devices.total ? `${f.devices.ok} / ${f.devices.total}` : "—", { "data-field": "devices" }));
    return tr;
  }));
}

function drawTrend() {
  liveTrend($("community-trend"), state.trend, trendSeries(), { height: 180 });
}

const trendSeries = () => [
  { key: "generation", label: t("generation"), color: COLORS.generation },
  { key: "consumption", label: t("communityConsumption"), color: COLORS.consumption },
];

function memberName(mid) {
  return state.overview?.members?.find((m) => m.id === mid)?.name || mid;
}

function renderDevices() {
  $("devices-table").tBodies[0].replaceChildren(...state.devices.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.device = d.device_id;
    const owner = d.member_id ? memberName(d.member_id) : d.plant_id;
    tr.append(Object.assign(document.createElement("th"),
      { scope: "row", textContent: `${d.device_id} (${owner})` }),
    cell(t(`${d.role}_role`)),
    cell(t(`status_${d.status}`), { class: `status status-${d.status}`, "data-field": "status" }),
    cell(d.last_ts_ms ? fmtAge(d.last_ts_ms) : t("never"), { class: "age" }));
    return tr;
  }));
}

// sources the MQTT bridge dead-lettered (REST /deadletters: origin, reason, count, last seen,
// a truncated sample payload), so the operator can onboard them
function renderDeadLetters() {
  const body = $("deadletters-table").tBodies[0];
  if (!state.deadLetters.length) {
    const tr = document.createElement("tr");
    tr.className = "none";
    tr.append(cell(t("noDeadLetters"), { colspan: 5 }));
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...state.deadLetters.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.origin = d.origin;
    tr.dataset.reason = d.reason;
    const sample = cell(d.sample, { class: "sample" });
    sample.title = d.detail || "";
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: d.origin }),
      cell(t(`reason_${d.reason}`), { "data-field": "reason" }),
      cell(String(d.count), { "data-field": "count" }),
      cell(fmtDateTime(d.last_seen_ms), { "data-field": "last-seen" }),
      sample);
    return tr;
  }));
}

// per member, the month's hours settled on Datadis vs still provisional (REST /reconciliation)
function renderReconciliation() {
  const r = state.reconciliation;
  const body = $("recon-table").tBodies[0];
  if (!r) { body.replaceChildren(); return; }
  body.replaceChildren(...r.members.map((m) => {
    const tr = document.createElement("tr");
    tr.dataset.member = m.member_id;
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: m.name }),
      cell(`${m.hours} / ${m.hours_elapsed}`, { "data-field": "hours" }),
      cell(m.official_ratio === null ? "—" : fmtPct(m.official_ratio), { "data-field": "official" }),
      cell(fmtEnergy(m.official_kwh), { "data-field": "official-kwh" }),
      cell(fmtEnergy(m.provisional_kwh), { "data-field": "provisional-kwh" }),
      cell(String(m.divergence_alarms), { "data-field": "divergences" }));
    return tr;
  }));
}

async function loadReconciliation(token) {
  const month = $("recon-month").value;
  try {
    state.reconciliation = await api(`/api/communities/${state.cid}/reconciliation${month ? `?month=${month}` : ""}`, token);
    if (!month) $("recon-month").value = state.reconciliation.month;
  } catch (error) {
    console.warn("reconciliation", error.message);
  }
  renderReconciliation();
}

async function refresh(token) {
  const cid = state.cid;
  const [overview, devices, alarms, deadLetters, fleet] = await Promise.allSettled([
    api(`/api/communities/${cid}/overview`, token),
    api(`/api/communities/${cid}/devices`, token),
    api(`/api/communities/${cid}/alarms`, token),
    api(`/api/communities/${cid}/deadletters`, token),
    api("/api/fleet", token),
  ]);
  if (fleet.status === "fulfilled") {
    state.fleet = fleet.value.communities;
    remember("fleet", state.fleet);
  }
  if (deadLetters.status === "fulfilled") state.deadLetters = deadLetters.value.sources;
  if (overview.status === "fulfilled") {
    state.overview = overview.value;
    remember(`overview.${cid}`, state.overview);
  }
  if (devices.status === "fulfilled") state.devices = devices.value.devices;
  if (alarms.status === "fulfilled") {
    for (const a of alarms.value.open) state.alarms.set(a[ALARM.alarmId], a);
    state.recent = alarms.value.recent;
  }
  renderAll();
}

function renderAll() {
  renderOverview();
  renderMembers();
  renderCommunity();
  renderAlarms();
  renderDevices();
  renderDeadLetters();
  renderFleet();
  renderRecent();
  renderReconciliation();
}

function onMessage(channel, message) {
  const type = message[LIVE.type];
  if (type === TYPE.member) {
    state.members.set(message[MEMBER.memberId], message);
    remember(channel, message);
    renderMembers();
  } else if (type === TYPE.community) {
    state.fleetLive.set(message[COMMUNITY.communityId], message);
    remember(channel, message);
    if (message[COMMUNITY.communityId] !== state.cid) { renderFleet(); return; }
    state.community = message;
    addTrendPoint(message);
    renderCommunity();
    renderFleet();
  } else if (type === TYPE.alarm && channelOf.kind(channel) === CHANNEL_KIND.operators) {
    const alarm = message[LIVE_ALARM.alarm];
    if (alarm[ALARM.state] === ALARM_STATE.open) state.alarms.set(alarm[ALARM.alarmId], alarm);
    else state.alarms.delete(alarm[ALARM.alarmId]);
    renderAlarms();
    renderFleet();
  }
}

function addTrendPoint(c) {
  const ts = c[COMMUNITY.tsMs];
  if (state.trend.length && ts <= state.trend.at(-1).ts) return;
  state.trend.push({ ts, generation: c[COMMUNITY.generationW], consumption: c[COMMUNITY.consumptionW] });
  while (state.trend.length && state.trend[0].ts < Date.now() - TREND_MS) state.trend.shift();
}

async function main() {
  registerServiceWorker();
  setupLangSelect($("lang"));
  const token = getToken();
  if (!token) { $("need-token").hidden = false; return; }
  let me;
  try {
    me = await api("/api/me", token);
  } catch (error) {
    renderState($("conn-state"), "authError");
    $("need-token").hidden = false;
    return;
  }
  const wanted = new URLSearchParams(location.search).get("community");
  state.cid = me.communities.includes(wanted) ? wanted : me.communities[0];
  state.fleet = recall("fleet") || me.community_details.map((c) => ({ id: c.id, name: c.name,
    status: "ok", today: {}, open_alarms: 0, devices: { total: 0, ok: 0 } }));
  for (const cid of me.communities) {
    const cached = recall(channelOf.community(cid));
    if (cached) state.fleetLive.set(cid, cached);
  }
  state.overview = recall(`overview.${state.cid}`);
  for (const m of state.overview?.members || []) {
    const cached = recall(channelOf.member(state.cid, m.id));
    if (cached) state.members.set(m.id, cached);
  }
  state.community = recall(channelOf.community(state.cid));
  renderAll();
  await refresh(token);
  const channels = [...me.communities.map((cid) => channelOf.community(cid)),
    channelOf.operators(state.cid),
    ...(state.overview?.members || []).map((m) => channelOf.member(state.cid, m.id))];
  new LiveClient({
    token, channels, onMessage,
    onState: (s, since) => { state.conn = s; state.offlineSince = since; renderState($("conn-state"), s, since); },
  });
  legend($("trend-legend"), trendSeries());
  drawTrend();
  $("recon-month").addEventListener("change", () => loadReconciliation(token));
  loadReconciliation(token);
  setInterval(() => refresh(token), 30 * 1000);
  setInterval(() => loadReconciliation(token), 10 * 60 * 1000);
  setInterval(() => {
    renderMembers(); renderCommunity(); drawTrend();
    if (state.conn !== "live") renderState($("conn-state"), state.conn, state.offlineSince);
  }, 2000);
  onLangChange(() => {
    applyI18n(); renderState($("conn-state"), state.conn, state.offlineSince); renderAll();
    legend($("trend-legend"), trendSeries()); drawTrend();
  });
}

main();
