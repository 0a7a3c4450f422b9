// Operators' control centre: every member and plant with live values, device health, open
// alarms, community self-consumption and coverage, and the coefficient schedule in force.
import {
  LiveClient, api, applyI18n, fmtAge, fmtBeta, fmtDateTime, fmtEnergy, fmtPct, fmtPower,
  getToken, onLangChange, recall, remember, renderState, setupLangToggle, t,
} from "./common.js";
import {
  ALARM, ALARM_STATE, CHANNEL_KIND, COMMUNITY, LIVE, LIVE_ALARM, MEMBER, PLANT, TYPE,
  channel as channelOf,
} from "./messages.js";

const $ = (id) => document.getElementById(id);
const state = {
  cid: null, overview: null, members: new Map(), community: null, alarms: new Map(),
  devices: [], deadLetters: [], conn: "connecting",
};

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
  $("schedule-kind").textContent = s ? (s.kind === "static" ? "estático / static" : `${s.kind} ${s.year}`) : "—";
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
    li.textContent = `${t(a[ALARM.severity])} · ${a[ALARM.kind]} · ${a[ALARM.deviceId]}${who} · ` +
      `${t("since")} ${fmtDateTime(a[ALARM.openedAtMs])}`;
    return li;
  }));
}

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

async function refresh(token) {
  const cid = state.cid;
  const [overview, devices, alarms, deadLetters] = await Promise.allSettled([
    api(`/api/communities/${cid}/overview`, token),
    api(`/api/communities/${cid}/devices`, token),
    api(`/api/communities/${cid}/alarms`, token),
    api(`/api/communities/${cid}/deadletters`, token),
  ]);
  if (deadLetters.status === "fulfilled") state.deadLetters = deadLetters.value.sources;
  if (overview.status === "fulfilled") {
    state.overview = overview.value;
    remember(`overview.${cid}`, state.overview);
  }
  if (devices.status === "fulfilled") state.devices = devices.value.devices;
  if (alarms.status === "fulfilled") {
    for (const a of alarms.value.open) state.alarms.set(a[ALARM.alarmId], a);
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
}

function onMessage(channel, message) {
  const type = message[LIVE.type];
  if (type === TYPE.member) {
    state.members.set(message[MEMBER.memberId], message);
    remember(channel, message);
    renderMembers();
  } else if (type === TYPE.community) {
    state.community = message;
    remember(channel, message);
    renderCommunity();
  } else if (type === TYPE.alarm && channelOf.kind(channel) === CHANNEL_KIND.operators) {
    const alarm = message[LIVE_ALARM.alarm];
    if (alarm[ALARM.state] === ALARM_STATE.open) state.alarms.set(alarm[ALARM.alarmId], alarm);
    else state.alarms.delete(alarm[ALARM.alarmId]);
    renderAlarms();
  }
}

async function main() {
  setupLangToggle($("lang"));
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
  const select = $("community-select");
  const wanted = new URLSearchParams(location.search).get("community");
  state.cid = me.communities.includes(wanted) ? wanted : me.communities[0];
  if (me.communities.length > 1) {
    select.closest("label").hidden = false;
    select.replaceChildren(...me.community_details.map((c) =>
      new Option(c.name, c.id, false, c.id === state.cid)));
    select.addEventListener("change", () => { location.search = `?community=${select.value}`; });
  }
  state.overview = recall(`overview.${state.cid}`);
  for (const m of state.overview?.members || []) {
    const cached = recall(channelOf.member(state.cid, m.id));
    if (cached) state.members.set(m.id, cached);
  }
  state.community = recall(channelOf.community(state.cid));
  renderAll();
  await refresh(token);
  const channels = [channelOf.community(state.cid), channelOf.operators(state.cid),
    ...(state.overview?.members || []).map((m) => channelOf.member(state.cid, m.id))];
  new LiveClient({
    token, channels, onMessage,
    onState: (s) => { state.conn = s; renderState($("conn-state"), s); },
  });
  setInterval(() => refresh(token), 30 * 1000);
  setInterval(() => { renderMembers(); renderCommunity(); }, 1000);
  onLangChange(() => { applyI18n(); renderState($("conn-state"), state.conn); renderAll(); });
}

main();
