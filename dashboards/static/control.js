// Operators' control centre: every member and plant with live values, device health, open
// alarms, community self-consumption and coverage, and the coefficient schedule in force.
import {
  LiveClient, api, applyI18n, fmtAge, fmtBeta, fmtDateTime, fmtEnergy, fmtPct, fmtPower,
  getToken, onLangChange, recall, remember, renderState, setupLangToggle, t,
} from "./common.js";

const $ = (id) => document.getElementById(id);
const state = {
  cid: null, overview: null, members: new Map(), community: null, alarms: new Map(),
  devices: [], conn: "connecting",
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
    if (live?.stale) tr.classList.add("stale");
    tr.append(
      Object.assign(document.createElement("th"), { scope: "row", textContent: m.name }),
      cell(fmtBeta(live?.coefficient ?? m.coefficient), { "data-field": "coefficient" }),
      cell(fmtPower(live?.assigned_w), { "data-field": "assigned" }),
      cell(fmtPower(live?.consumption_w), { "data-field": "consumption" }),
      cell(fmtPower(live?.self_consumption_w), { "data-field": "self" }),
      cell(fmtPower(live?.import_w), { "data-field": "import" }),
      cell(fmtAge(live?.ts_ms), { "data-field": "age", class: "age" }),
    );
    return tr;
  });
  body.replaceChildren(...rows);
}

function renderCommunity() {
  const c = state.community;
  if (c) {
    $("community-generation").textContent = fmtPower(c.generation_w);
    $("community-consumption").textContent = fmtPower(c.consumption_w);
    $("community-self").textContent = fmtPower(c.self_consumption_w);
    $("community-import").textContent = fmtPower(c.import_w);
    $("community-surplus").textContent = fmtPower(c.surplus_w);
    $("community-selfratio").textContent =
      c.generation_w > 0 ? fmtPct(c.self_consumption_w / c.generation_w) : "—";
    $("community-coverage").textContent =
      c.consumption_w > 0 ? fmtPct(c.self_consumption_w / c.consumption_w) : "—";
    $("community-reporting").textContent = `${c.members_reporting} / ${c.members_total}`;
    $("live-age").textContent = t("updated", { age: fmtAge(c.ts_ms) });
  }
  const plants = state.overview?.plants || [];
  $("plants-table").tBodies[0].replaceChildren(...plants.map((p) => {
    const live = c?.plants?.[p.id];
    const tr = document.createElement("tr");
    tr.dataset.plant = p.id;
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: p.name }),
      cell(fmtPower(live?.power_w), { "data-field": "power" }),
      cell(fmtAge(live?.ts_ms), { class: "age" }));
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
  const open = [...state.alarms.values()].sort((a, b) => b.opened_at_ms - a.opened_at_ms);
  if (!open.length) {
    list.replaceChildren(Object.assign(document.createElement("li"),
      { className: "none", textContent: t("noAlarms") }));
    return;
  }
  list.replaceChildren(...open.map((a) => {
    const li = document.createElement("li");
    li.className = `sev-${a.severity}`;
    li.dataset.alarm = a.alarm_id;
    const who = a.member_id ? ` · ${memberName(a.member_id)}` : "";
    li.textContent = `${t(a.severity)} · ${a.kind} · ${a.device_id}${who} · ` +
      `${t("since")} ${fmtDateTime(a.opened_at_ms)}`;
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

async function refresh(token) {
  const cid = state.cid;
  const [overview, devices, alarms] = await Promise.allSettled([
    api(`/api/communities/${cid}/overview`, token),
    api(`/api/communities/${cid}/devices`, token),
    api(`/api/communities/${cid}/alarms`, token),
  ]);
  if (overview.status === "fulfilled") {
    state.overview = overview.value;
    remember(`overview.${cid}`, state.overview);
  }
  if (devices.status === "fulfilled") state.devices = devices.value.devices;
  if (alarms.status === "fulfilled") {
    for (const a of alarms.value.open) state.alarms.set(a.alarm_id, a);
  }
  renderAll();
}

function renderAll() {
  renderOverview();
  renderMembers();
  renderCommunity();
  renderAlarms();
  renderDevices();
}

function onMessage(channel, message) {
  if (message.type === "member") {
    state.members.set(message.member_id, message);
    remember(channel, message);
    renderMembers();
  } else if (message.type === "community") {
    state.community = message;
    remember(channel, message);
    renderCommunity();
  } else if (message.type === "alarm" && channel.startsWith("operators:")) {
    const alarm = message.alarm;
    if (alarm.state === "open") state.alarms.set(alarm.alarm_id, alarm);
    else state.alarms.delete(alarm.alarm_id);
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
    const cached = recall(`member:${state.cid}:${m.id}`);
    if (cached) state.members.set(m.id, cached);
  }
  state.community = recall(`community:${state.cid}`);
  renderAll();
  await refresh(token);
  const channels = [`community:${state.cid}`, `operators:${state.cid}`,
    ...(state.overview?.members || []).map((m) => `member:${state.cid}:${m.id}`)];
  new LiveClient({
    token, channels, onMessage,
    onState: (s) => { state.conn = s; renderState($("conn-state"), s); },
  });
  setInterval(() => refresh(token), 30 * 1000);
  setInterval(() => { renderMembers(); renderCommunity(); }, 1000);
  onLangChange(() => { applyI18n(); renderState($("conn-state"), state.conn); renderAll(); });
}

main();
