// Operators' control centre: the fleet (every community of the token: status, live generation,
// self-consumption today, open alarms, devices online), and the drill-down into one community:
// every member and plant with live values, a 15-minute trend, device health, open and recent
// alarms (acknowledge / assign, with their history), community self-consumption and coverage,
// the coefficient schedule in force, the optimiser's comparison of current vs optimised
// coefficients, the device controls (what each controllable device holds, a manual override
// confirmed before it is sent) and the command log of the community's devices.
import { liveTrend, pairedBars } from "./charts.js";
import { applyOverride, confirmDialog, renderControls } from "./controls.js";
import {
  COLORS, LiveClient, api, apiPost, applyI18n, fmtAge, fmtBeta, fmtDateTime, fmtDuration, fmtEnergy, fmtEur,
  fmtNumber, fmtPct, fmtPower, getToken, legend, onLangChange, recall, registerServiceWorker,
  remember, renderState, setupLangSelect, t,
} from "./common.js";
import {
  ALARM, ALARM_ACTION as ACT, ALARM_ACTION_KIND as ACT_KIND, ALARM_STATE, CHANNEL_KIND, COMMUNITY, LIVE, LIVE_ALARM, MEMBER, PLANT, TYPE,
  channel as channelOf,
} from "./messages.js";

const $ = (id) => document.getElementById(id);
const state = {
  cid: null, overview: null, members: new Map(), community: null, alarms: new Map(),
  devices: [], deadLetters: [], conn: "connecting", offlineSince: null, fleet: [],
  fleetLive: new Map(), recent: [], trend: [], reconciliation: null,
  actions: [], commands: [], controls: [], edges: [], coef: null, coefMetric: "ratio", token: null,
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
    li.append(Object.assign(document.createElement("span"), { className: "alarm-head",
      textContent: `${t(a[ALARM.severity])} · ${kindName(a)} · ${a[ALARM.deviceId]}${who} · ` +
        `${t("since")} ${fmtDateTime(a[ALARM.openedAtMs])}` }));
    const history = actionsOf(a[ALARM.alarmId]);
    const status = alarmStatus(history);
    if (status) li.append(Object.assign(document.createElement("span"), { className: "alarm-state", textContent: status }));
    const buttons = Object.assign(document.createElement("div"), { className: "actions" });
    const what = `${kindName(a)} · ${a[ALARM.deviceId]}`;
    for (const [action, label] of [[ACT_KIND.acknowledge, "ackButton"], [ACT_KIND.assign, "assignButton"]]) {
      const button = Object.assign(document.createElement("button"), { type: "button", textContent: t(label) });
      button.dataset.action = action;
      button.setAttribute("aria-label", `${t(label)}: ${what}`);
      button.addEventListener("click", () => (action === ACT_KIND.assign ? openAssign(a)
        : act(a[ALARM.alarmId], { [ACT.action]: action })));
      buttons.append(button);
    }
    li.append(buttons);
    if (history.length) li.append(historyDetails(history));
    return li;
  }));
}

// -- alarm actions: acknowledge / assign (REST /alarm-actions, POST …/alarms/{id}/actions) -------
const actionsOf = (alarmId) => state.actions.filter((x) => x[ACT.alarmId] === alarmId);

// the latest acknowledgement and the latest assignment, in words
function alarmStatus(history) {
  const ack = history.filter((x) => x[ACT.action] === ACT_KIND.acknowledge).at(-1);
  const assign = history.filter((x) => x[ACT.action] === ACT_KIND.assign).at(-1);
  return [ack && t("ackDone", { who: ack[ACT.actor], time: fmtDateTime(ack[ACT.atMs]) }),
    assign && t("assignedTo", { who: assign[ACT.assignee], by: assign[ACT.actor],
      time: fmtDateTime(assign[ACT.atMs]) })].filter(Boolean).join(" · ");
}

const HISTORY_TEXT = { [ACT_KIND.acknowledge]: "historyAcknowledge", [ACT_KIND.assign]: "historyAssign" };

function historyDetails(history) {
  const details = document.createElement("details");
  details.className = "alarm-history";
  details.append(Object.assign(document.createElement("summary"),
    { textContent: t("alarmHistory", { n: history.length }) }));
  const list = document.createElement("ol");
  list.append(...history.map((x) => {
    const item = document.createElement("li");
    item.dataset.action = x[ACT.action];
    item.textContent = t(HISTORY_TEXT[x[ACT.action]] || "historyAcknowledge", {
      time: fmtDateTime(x[ACT.atMs]), who: x[ACT.actor], assignee: x[ACT.assignee] }) +
      (x[ACT.note] ? ` — ${x[ACT.note]}` : "");
    return item;
  }));
  details.append(list);
  return details;
}

async function act(alarmId, body) {
  $("alarm-action-error").textContent = "";
  try {
    const action = await apiPost(`/api/communities/${state.cid}/alarms/${encodeURIComponent(alarmId)}/actions`,
      state.token, body);
    state.actions.push(action);
  } catch (error) {
    $("alarm-action-error").textContent = t("actionFailed", { error: error.message });
    return false;
  }
  renderAlarms();
  renderRecent();
  return true;
}

function openAssign(alarm) {
  const form = $("alarm-action-form");
  form.dataset.alarm = alarm[ALARM.alarmId];
  form.dataset.what = `${kindName(alarm)} · ${alarm[ALARM.deviceId]}`;
  $("assign-title").textContent = t("assignTitle", { alarm: form.dataset.what });
  form.hidden = false;
  $("assignee").focus();
}

function setupAssignForm() {
  const form = $("alarm-action-form");
  const close = () => { form.hidden = true; form.reset(); };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await act(form.dataset.alarm, { [ACT.action]: ACT_KIND.assign,
      [ACT.assignee]: $("assignee").value, [ACT.note]: $("assign-note").value });
    if (ok) close();
  });
  $("assign-cancel").addEventListener("click", close);
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
    const history = actionsOf(a[ALARM.alarmId]);
    if (history.length) li.append(historyDetails(history));
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

// the community's edges (REST /edges): certificate, last heartbeat, version, queue, errors
function renderEdges() {
  const body = $("edges-table").tBodies[0];
  if (!state.edges.length) {
    const tr = document.createElement("tr");
    tr.className = "none";
    tr.append(cell(t("edgesNone"), { colspan: 8 }));
    body.replaceChildren(tr);
    return;
  }
  const statusClass = { ok: "ok", late: "late", offline: "offline", never: "no_data" };
  body.replaceChildren(...state.edges.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset.edge = e.edge;
    const errors = Object.entries(e.errors);
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: e.edge }),
      cell(t(`edgeHealth_${e.health}`, { ago: fmtAge(e.last_contact_ms) }),
        { "data-field": "health", class: `status status-${statusClass[e.health]}` }),
      cell(t(`edgeState_${e.state}`, { date: fmtDateTime(e.certificate_expires_ms) }), { "data-field": "state" }),
      cell(e.software || "—", { "data-field": "software" }),
      cell(e.uptime_s === null ? "—" : fmtDuration(e.uptime_s), { "data-field": "uptime" }),
      cell(e.queue_depth === null ? "—" : fmtNumber(e.queue_depth, 0), { "data-field": "queue" }),
      cell(errors.length ? errors.map(([d, m]) => `${d}: ${m}`).join("; ") : t("edgeNoErrors"), { "data-field": "errors", class: "why" }),
      cell(e.maintenance.length ? e.maintenance.map((m) => `${fmtDateTime(m.asked_ms)} ${m.kind} · ${m.requested_by} · ${t(`maint_${m.status}`, {}, m.status)}${m.detail ? ` (${m.detail})` : ""}`).join("; ")
        : t("edgeMaintNone"), { "data-field": "maintenance", class: "why" }));
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

// -- the optimiser's report: current vs optimised coefficients (REST /coefficients/comparison) ----
const pct1 = (ratio) => (ratio === null || ratio === undefined ? "—" : `${fmtNumber(ratio * 100, 1)} %`);
const signed = (value, format) => `${value > 0 ? "+" : value < 0 ? "−" : ""}${format(Math.abs(value))}`;
// metric → how a scenario gives it and how it is written (axis: short form)
const COEF_METRICS = {
  ratio: { value: (s) => s.self_consumption_ratio, format: (v, axis) => (axis ? fmtPct(v) : pct1(v)), unit: "%" },
  savings: { value: (s) => s.savings_eur, format: (v) => fmtEur(v), unit: "€" },
  kwh: { value: (s) => s.self_consumed_kwh, format: (v, axis) => (axis ? fmtNumber(v, 0) : fmtEnergy(v, 0)), unit: "kWh" },
};
const coefSeries = () => [
  { key: "current", label: t("coefCurrent"), color: COLORS.grid },
  { key: "optimised", label: t("coefOptimised"), color: COLORS.self },
];

function renderCoefficients() {
  const c = state.coef;
  $("coef-none").hidden = !c || c.available;
  $("coef-body").hidden = !c?.available;
  if (!c) return;
  if (!c.available) {
    $("coef-none").textContent = t("coefNone");
    return;
  }
  const k = c.community;
  $("coef-summary").textContent = t("coefSummary", { from: pct1(k.current.self_consumption_ratio),
    to: pct1(k.optimised.self_consumption_ratio),
    kwh: signed(k.gain_self_consumed_kwh, (v) => fmtEnergy(v, 0)), eur: signed(k.gain_savings_eur, fmtEur) });
  $("coef-source").textContent = t("coefSource", { year: c.year, file: c.file, time: fmtDateTime(c.modified_ms) });
  for (const b of $("coef-metric").querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(b.dataset.metric === state.coefMetric));
  }
  const metric = COEF_METRICS[state.coefMetric];
  const rows = c.members.map((m) => ({ label: m.name, current: metric.value(m.current),
    optimised: metric.value(m.optimised) }));
  pairedBars($("coef-chart"), rows, coefSeries(), { height: 220, format: metric.format, unit: metric.unit });
  legend($("coef-legend"), coefSeries());
  const line = (m, head) => {
    const tr = document.createElement("tr");
    tr.dataset.member = m.member_id || m.cups;
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: head }),
      cell(pct1(m.current.self_consumption_ratio), { "data-field": "ratio-current" }),
      cell(pct1(m.optimised.self_consumption_ratio), { "data-field": "ratio-optimised" }),
      cell(fmtEur(m.current.savings_eur), { "data-field": "savings-current" }),
      cell(fmtEur(m.optimised.savings_eur), { "data-field": "savings-optimised" }),
      cell(signed(m.gain_savings_eur, fmtEur), { "data-field": "gain" }));
    return tr;
  };
  $("coef-table").tBodies[0].replaceChildren(...c.members.map((m) => line(m, m.name)),
    line({ ...k, member_id: "community" }, t("coefCommunity")));
  renderCoefficientHours();
}

// per hour of the day: the optimised file's mean β against the member's annual share now
const hourSeries = () => [
  { key: "current", label: t("coefHoursCurrent"), color: COLORS.grid },
  { key: "optimised", label: t("coefHoursOptimised"), color: COLORS.self },
];

function renderCoefficientHours() {
  const profiles = state.coef?.hour_profiles || [];
  $("coef-hours-block").hidden = !profiles.length;
  if (!profiles.length) return;
  const select = $("coef-member");
  const wanted = select.value || profiles[0].member_id || profiles[0].cups;
  select.replaceChildren(...profiles.map((p) => {
    const id = p.member_id || p.cups;
    return new Option(p.member_id ? memberName(p.member_id) : p.cups, id, false, id === wanted);
  }));
  const profile = profiles.find((p) => (p.member_id || p.cups) === select.value) || profiles[0];
  const rows = profile.optimised.map((beta, hour) => ({ label: `${hour}`, current: profile.current_share,
    optimised: beta }));
  pairedBars($("coef-hours"), rows, hourSeries(), { height: 200, format: (v, axis) => (axis ? fmtPct(v) : pct1(v)), unit: "β" });
  legend($("coef-hours-legend"), hourSeries());
}

async function loadCoefficients(token) {
  try {
    state.coef = await api(`/api/communities/${state.cid}/coefficients/comparison`, token);
  } catch (error) {
    console.warn("coefficients", error.message);
  }
  renderCoefficients();
}

// -- the command log (REST /commands): who asked, why, what was written and read back -----------
const fmtValue = (v) => (v === null || v === undefined ? t("cmdNoValue") : typeof v === "number" ? fmtNumber(v, Number.isInteger(v) ? 0 : 2) : String(v));
const fmtWritten = (written) => written.map((w) => (typeof w === "string" ? w : JSON.stringify(w))).join("; ");

function renderCommands() {
  const body = $("commands-table").tBodies[0];
  if (!state.commands.length) {
    const tr = document.createElement("tr");
    tr.className = "none";
    tr.append(cell(t("cmdNone"), { colspan: 8 }));
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...state.commands.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.command = c.command_id;
    const why = c.refusal || c.detail;
    const stateCell = cell(t(`cmd_${c.state}`, {}, c.state), { "data-field": "state", class: `cmd-${c.state}` });
    if (why) stateCell.title = why;
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: fmtDateTime(c.issued_at_ms) }),
      cell(c.device_id, { "data-field": "device" }),
      cell(`${c.key} = ${fmtValue(c.value)}`, { "data-field": "setting" }),
      cell(c.requested_by, { "data-field": "who" }),
      cell(why ? `${c.reason} (${why})` : c.reason, { "data-field": "why", class: "why" }),
      cell(fmtWritten(c.written), { "data-field": "written", class: "written" }),
      cell(c.result ? fmtValue(c.readback) : "—", { "data-field": "readback" }),
      stateCell);
    return tr;
  }));
}

// -- device controls (REST /controls): what each device holds, and a confirmed manual override -----
function renderDeviceControls() {
  renderControls($("controls-table"), state.controls, async (device, value, expiresS) => {
    const sent = await applyOverride({ cid: state.cid, token: state.token, dialog: confirmDialog($("controls-table").closest("section")),
      status: $("ctl-status"), reason: t("ctlReason") }, device, value, expiresS);
    if (sent) await refreshControls();
  });
}

async function refreshControls() {
  const [controls, commands] = await Promise.allSettled([
    api(`/api/communities/${state.cid}/controls`, state.token),
    api(`/api/communities/${state.cid}/commands`, state.token),
  ]);
  if (controls.status === "fulfilled") state.controls = controls.value.devices;
  if (commands.status === "fulfilled") state.commands = commands.value.commands;
  renderDeviceControls();
  renderCommands();
}

async function refresh(token) {
  const cid = state.cid;
  const [overview, devices, alarms, deadLetters, fleet, actions, commands, controls, edges] = await Promise.allSettled([
    api(`/api/communities/${cid}/overview`, token),
    api(`/api/communities/${cid}/devices`, token),
    api(`/api/communities/${cid}/alarms`, token),
    api(`/api/communities/${cid}/deadletters`, token),
    api("/api/fleet", token),
    api(`/api/communities/${cid}/alarm-actions`, token),
    api(`/api/communities/${cid}/commands`, token),
    api(`/api/communities/${cid}/controls`, token),
    api(`/api/communities/${cid}/edges`, token),
  ]);
  if (actions.status === "fulfilled") state.actions = actions.value.actions;
  if (commands.status === "fulfilled") state.commands = commands.value.commands;
  if (controls.status === "fulfilled") state.controls = controls.value.devices;
  if (edges.status === "fulfilled") state.edges = edges.value.edges;
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
  renderEdges();
  renderDeadLetters();
  renderFleet();
  renderRecent();
  renderReconciliation();
  renderDeviceControls();
  renderCommands();
  renderCoefficients();
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
  state.token = token;
  setupAssignForm();
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
  for (const b of $("coef-metric").querySelectorAll("button")) {
    b.addEventListener("click", () => { state.coefMetric = b.dataset.metric; renderCoefficients(); });
  }
  $("coef-member").addEventListener("change", renderCoefficientHours);
  loadCoefficients(token);
  setInterval(() => refresh(token), 30 * 1000);
  setInterval(refreshControls, 10 * 1000);  // a command's state changes within seconds
  setInterval(() => { loadReconciliation(token); loadCoefficients(token); }, 10 * 60 * 1000);
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
