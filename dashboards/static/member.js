// Member view, phone (/member) and household tablet (/tablet, the same page laid out for a wall
// screen): live now with a 15-minute trend, today's energy flow, history by day / week / month
// / year with previous / next and a date picker, € saved, my devices' health and my alarms, and
// my controllable devices (what they hold, the last commands, a confirmed manual command).
// The member's own channel and the community aggregate only: the server refuses the rest.
import { chartTable, flowDiagram, liveTrend, stackedBars } from "./charts.js";
import {
  COLORS, LiveClient, api, applyI18n, download, fmtAge, fmtBeta, fmtDateTime, fmtDay, fmtDuration, fmtEnergy,
  fmtEur, fmtHM, fmtPct, fmtPower, getToken, legend, onLangChange, recall, registerServiceWorker,
  remember, renderState, setupLangSelect, t, todayIso,
} from "./common.js";
import { applyOverride, confirmDialog, fmtHeld, renderControls } from "./controls.js";
import { ALARM, ALARM_STATE, COMMUNITY, LIVE, LIVE_ALARM, MEMBER, TYPE, channel as channelOf } from "./messages.js";

const $ = (id) => document.getElementById(id);
const tablet = document.body.dataset.layout === "tablet";
const TREND_MS = 15 * 60 * 1000;
const state = {
  cid: null, mid: null, token: null, member: null, community: null, lastTs: null,
  conn: "connecting", offlineSince: null, trend: [], today: null,
  view: { period: "day", date: todayIso() }, history: null, devices: [], alarms: new Map(),
  controls: [], commands: [],
};

// -- live now ---------------------------------------------------------------------------------
function showMember(m, fromSnapshot = false) {
  state.member = m;
  state.lastTs = m[MEMBER.tsMs];
  const assigned = m[MEMBER.assignedW], consumption = m[MEMBER.consumptionW];
  const self = m[MEMBER.selfConsumptionW] || 0;
  $("live-assigned").textContent = fmtPower(assigned);
  $("live-consumption").textContent = fmtPower(consumption);
  $("live-self").textContent = fmtPower(self);
  $("live-surplus").textContent = fmtPower(m[MEMBER.surplusW]);
  $("live-import").textContent = fmtPower(m[MEMBER.importW]);
  $("live-coefficient").textContent = fmtBeta(m[MEMBER.coefficient]);
  $("live-stale").hidden = !m[MEMBER.stale];
  const coverage = consumption > 0 ? Math.min(1, self / consumption) : null;
  $("live-coverage").textContent = fmtPct(coverage);
  $("live-selfratio").textContent = assigned > 0 ? fmtPct(Math.min(1, self / assigned)) : "—";
  $("meter-self").style.width = `${Math.round((coverage || 0) * 100)}%`;
  $("meter").setAttribute("aria-valuenow", String(Math.round((coverage || 0) * 100)));
  addTrendPoint(m, fromSnapshot);
  tick();
}

function addTrendPoint(m, quiet) {
  const ts = m[MEMBER.tsMs];
  const last = state.trend.at(-1);
  if (last && ts <= last.ts) return;
  state.trend.push({ ts, assigned: m[MEMBER.assignedW], consumption: m[MEMBER.consumptionW] });
  const cut = Date.now() - TREND_MS;
  while (state.trend.length && state.trend[0].ts < cut) state.trend.shift();
  if (!quiet || state.trend.length < 3) drawTrend();
}

let trendDrawn = 0;
function drawTrend(force = false) {
  // redraw at most every 2 s (a phone at 1 Hz updates does not need 1 Hz canvas work)
  if (!force && Date.now() - trendDrawn < 2000) { trendPending ||= setTimeout(flushTrend, 2000); return; }
  trendDrawn = Date.now();
  liveTrend($("trend-chart"), state.trend, trendSeries(), { height: tablet ? 220 : 170 });
}
let trendPending = null;
function flushTrend() { trendPending = null; drawTrend(true); }

const trendSeries = () => [
  { key: "assigned", label: t("assigned"), color: COLORS.assigned },
  { key: "consumption", label: t("consumption"), color: COLORS.consumption },
];

function showCommunity(c) {
  state.community = c;
  $("live-generation").textContent = fmtPower(c[COMMUNITY.generationW]);
}

function showAlarm(liveAlarm) {
  const alarm = liveAlarm[LIVE_ALARM.alarm];
  if (!alarm || alarm[ALARM.memberId] !== state.mid) return;
  if (alarm[ALARM.state] === ALARM_STATE.open) state.alarms.set(alarm[ALARM.alarmId], alarm);
  else state.alarms.delete(alarm[ALARM.alarmId]);
  renderHealth();
}

function tick() {
  $("live-age").textContent = state.lastTs ? t("updated", { age: fmtAge(state.lastTs) }) : "";
}

// -- today's flow --------------------------------------------------------------------------------
function renderToday() {
  const day = state.today;
  if (!day) return;
  const tot = day.totals;
  $("today-consumption").textContent = fmtEnergy(tot.consumption_kwh);
  $("today-self").textContent = fmtEnergy(tot.self_consumed_kwh);
  $("today-surplus").textContent = fmtEnergy(tot.surplus_kwh);
  $("today-import").textContent = fmtEnergy(tot.import_kwh);
  $("today-savings").textContent = fmtEur(day.savings.total_eur);
  // sun = self-consumed + to the grid; home = from the sun + from the grid
  flowDiagram($("flow"), {
    sun: tot.self_consumed_kwh + tot.surplus_kwh, self: tot.self_consumed_kwh,
    surplus: tot.surplus_kwh, import: tot.import_kwh,
    home: tot.self_consumed_kwh + tot.import_kwh,
  });
}

// -- history ------------------------------------------------------------------------------------------
const histSeries = () => [
  { key: "self", label: t("selfConsumed"), color: COLORS.self },
  { key: "surplus", label: t("surplus"), color: COLORS.surplus },
  { key: "import", label: t("import"), color: COLORS.import },
];

function bucketNames(label, bucket, period) {
  if (bucket === "hour") {
    const hh = label.slice(11, 13);
    const next = String((Number(hh) + 1) % 24).padStart(2, "0");
    return { short: hh, label: `${hh}:00–${next}:00` };
  }
  if (bucket === "day") {
    const short = period === "week" ? fmtDay(label, { weekday: "short", day: "numeric" })
      : String(Number(label.slice(8, 10)));
    return { short, label: fmtDay(label) };
  }
  return { short: fmtDay(label, { month: "short" }), label: fmtDay(label, { month: "long", year: "numeric" }) };
}

function historyRows(h) {
  return h.buckets.map((b) => ({
    ...bucketNames(b.label, h.bucket, h.period), self: b.self_consumed_kwh,
    surplus: b.surplus_kwh, import: b.import_kwh, consumption: b.consumption_kwh, hours: b.hours,
  }));
}

function addDays(iso, n) {
  const d = new Date(`${iso}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

function addMonths(iso, n) {
  const [y, m] = iso.split("-").map(Number);
  const index = y * 12 + (m - 1) + n;
  return `${Math.floor(index / 12)}-${String((index % 12) + 1).padStart(2, "0")}-01`;
}

function step(iso, period, n) {
  if (period === "day") return addDays(iso, n);
  if (period === "week") return addDays(iso, 7 * n);
  if (period === "month") return addMonths(iso, n);
  return `${Number(iso.slice(0, 4)) + n}-01-01`;
}

function periodTitle(h) {
  if (h.period === "day") return fmtDay(h.from);
  if (h.period === "week") {
    return t("weekOf", { from: fmtDay(h.from, { day: "numeric", month: "short" }),
      to: fmtDay(addDays(h.to, -1), { day: "numeric", month: "short", year: "numeric" }) });
  }
  if (h.period === "month") return fmtDay(h.from, { month: "long", year: "numeric" });
  return h.from.slice(0, 4);
}

function renderHistory() {
  const h = state.history;
  for (const button of document.querySelectorAll("[data-period]")) {
    button.setAttribute("aria-pressed", String(button.dataset.period === state.view.period));
  }
  $("hist-date").value = state.view.date;
  $("hist-date").max = todayIso();
  $("hist-next").disabled = step(state.view.date, state.view.period, 1) > todayIso()
    && periodStart(state.view.date, state.view.period) >= periodStart(todayIso(), state.view.period);
  if (!h) return;
  const rows = historyRows(h);
  const series = histSeries();
  $("hist-title").textContent = periodTitle(h);
  $("hist-title").dataset.from = h.from;
  stackedBars($("hist-chart"), rows, series, { height: tablet ? 260 : 220 });
  legend($("hist-legend"), series);
  chartTable($("hist-table"), rows, series, { first: t(h.bucket === "hour" ? "hour" : h.bucket === "day" ? "dayCol" : "monthCol") });
  const tot = h.totals;
  $("hist-consumption").textContent = fmtEnergy(tot.consumption_kwh);
  $("hist-self").textContent = fmtEnergy(tot.self_consumed_kwh);
  $("hist-surplus").textContent = fmtEnergy(tot.surplus_kwh);
  $("hist-import").textContent = fmtEnergy(tot.import_kwh);
  $("hist-saved-self").textContent = fmtEur(h.savings.self_consumption_eur);
  $("hist-saved-surplus").textContent = fmtEur(h.savings.surplus_compensation_eur);
  $("hist-savings").textContent = fmtEur(h.savings.total_eur);
}

function periodStart(iso, period) {
  if (period === "day") return iso;
  if (period === "week") {
    const d = new Date(`${iso}T12:00:00Z`);
    return addDays(iso, -((d.getUTCDay() + 6) % 7));
  }
  if (period === "month") return `${iso.slice(0, 7)}-01`;
  return `${iso.slice(0, 4)}-01-01`;
}

const historyUrl = (period, date) =>
  `/api/communities/${state.cid}/members/${state.mid}/history?period=${period}&date=${date}`;

async function loadHistory() {
  const { period, date } = state.view;
  const key = `history.${state.mid}.${period}.${date}`;
  renderHistory();
  try {
    const h = await api(historyUrl(period, date), state.token);
    if (period !== state.view.period || date !== state.view.date) return; // moved on meanwhile
    state.history = h;
    remember(key, h);
  } catch (error) {
    state.history = recall(key) ?? state.history;
    console.warn("history", error.message);
  }
  renderHistory();
}

async function loadToday() {
  const key = `history.${state.mid}.today`;
  try {
    state.today = await api(historyUrl("day", todayIso()), state.token);
    remember(key, state.today);
  } catch (error) {
    state.today ??= recall(key);
  }
  renderToday();
}

function go(view) {
  state.view = { ...state.view, ...view };
  if (state.view.date > todayIso()) state.view.date = todayIso();
  loadHistory();
}

// -- my devices and my alarms, in plain words ------------------------------------------------------
function deviceName(d) {
  if (d.protocol === "datadis") return t("my_datadis");
  return t(`my_${d.role}`, {}, t("myDevice"));
}

function alarmText(a) {
  const evidence = a[ALARM.evidence] || {};
  const since = a[ALARM.openedAtMs];
  const vars = { device: a[ALARM.deviceId], time: fmtHM(since), ago: fmtAge(since),
    silence: fmtDuration(evidence.silence_s ?? (Date.now() - since) / 1000) };
  return t(`alarm_${a[ALARM.kind]}`, vars, t("alarm_other", { ...vars, kind: a[ALARM.kind] }));
}

function renderHealth() {
  const alarms = [...state.alarms.values()].sort((a, b) => b[ALARM.openedAtMs] - a[ALARM.openedAtMs]);
  $("my-alarms").replaceChildren(...(alarms.length ? alarms.map((a) => {
    const li = document.createElement("li");
    li.className = `sev-${a[ALARM.severity]}`;
    li.dataset.alarm = a[ALARM.alarmId];
    li.dataset.kind = a[ALARM.kind];
    li.textContent = alarmText(a);
    return li;
  }) : [Object.assign(document.createElement("li"), { className: "none", textContent: t("noMyAlarms") })]));
  $("my-devices").replaceChildren(...state.devices.map((d) => {
    const li = document.createElement("li");
    li.dataset.device = d.device_id;
    li.dataset.status = d.status;
    const name = Object.assign(document.createElement("span"), { className: "dev-name", textContent: deviceName(d) });
    // the distributor's meter delivers a day or two late: no data yet is normal, not an alarm
    const official = d.protocol === "datadis";
    const has = d.status === "ok" || d.status === "late";
    const status = Object.assign(document.createElement("span"), {
      className: official ? (has ? "status-ok" : "muted") : `status-${d.status}`,
      textContent: official ? t(has ? "health_datadis_ok" : "health_datadis_none", { ago: fmtAge(d.last_ts_ms) })
        : t(`health_${d.status}`, { ago: fmtAge(d.last_ts_ms) }),
    });
    li.append(name, document.createTextNode(" "), status);
    return li;
  }));
}

async function loadHealth() {
  const [devices, alarms] = await Promise.allSettled([
    api(`/api/communities/${state.cid}/devices`, state.token),
    api(`/api/communities/${state.cid}/alarms`, state.token)]);
  if (devices.status === "fulfilled") state.devices = devices.value.devices;
  if (alarms.status === "fulfilled") {
    const open = new Map(alarms.value.open.map((a) => [a[ALARM.alarmId], a]));
    // keep alarms the websocket opened that the REST store has not seen yet
    for (const [id, a] of state.alarms) if (!open.has(id) && Date.now() - a[ALARM.openedAtMs] < 120000) open.set(id, a);
    state.alarms = open;
  }
  renderHealth();
}

// -- my controllable devices (REST /controls: only my own, the server sees to it) ---------------
function renderMyControls() {
  $("my-controls").hidden = !state.controls.length;
  if (!state.controls.length) return;
  renderControls($("controls-table"), state.controls, async (device, value, expiresS) => {
    const sent = await applyOverride({ cid: state.cid, token: state.token, dialog: confirmDialog($("controls-table").closest("section")),
      status: $("ctl-status"), reason: t("ctlReason") }, device, value, expiresS);
    if (sent) await loadControls();
  });
  const byId = new Map(state.controls.map((d) => [d.device_id, d]));
  $("my-commands").replaceChildren(...state.commands.slice(0, 10).map((c) => {
    const li = document.createElement("li");
    li.dataset.command = c.command_id;
    const device = byId.get(c.device_id) || { unit: "", last_state: null };
    li.textContent = `${fmtDateTime(c.issued_at_ms)} · ${c.device_id}: ${c.key} = ${fmtHeld(device, c.value)} · ${c.requested_by} · ${t(`cmd_${c.state}`, {}, c.state)}`;
    return li;
  }));
}

async function loadControls() {
  try {
    const answer = await api(`/api/communities/${state.cid}/controls`, state.token);
    state.controls = answer.devices;
    state.commands = answer.commands;
  } catch (error) {
    console.warn("controls", error.message);
  }
  renderMyControls();
}

// -- start -------------------------------------------------------------------------------------------
async function main() {
  registerServiceWorker();
  setupLangSelect($("lang"));
  const token = getToken();
  if (!token) { $("need-token").hidden = false; return; }
  let me;
  try {
    me = await api("/api/me", token);
    remember("me", me);
  } catch (error) {
    me = error.status === 401 ? null : recall("me");
    if (!me) { renderState($("conn-state"), "authError"); $("need-token").hidden = false; return; }
  }
  Object.assign(state, { token, cid: me.communities[0], mid: me.member_id });
  const detail = me.community_details?.[0];
  $("member-name").textContent = detail?.member?.name ? `· ${detail.member.name}` : "";
  const memberChannel = channelOf.member(state.cid, state.mid);
  const communityChannel = channelOf.community(state.cid);
  state.trend = (recall(`trend.${state.mid}`) || []).filter((p) => p.ts > Date.now() - TREND_MS);
  const cached = recall(memberChannel);
  if (cached) showMember(cached, true);
  drawTrend(true);
  const cachedCommunity = recall(communityChannel);
  if (cachedCommunity) showCommunity(cachedCommunity);
  legend($("trend-legend"), trendSeries());
  new LiveClient({
    token,
    channels: [memberChannel, communityChannel],
    onState: (s, since) => { state.conn = s; state.offlineSince = since; renderState($("conn-state"), s, since); },
    onMessage: (channel, message, snapshot) => {
      const type = message[LIVE.type];
      if (type === TYPE.member) { showMember(message, snapshot); remember(channel, message); }
      else if (type === TYPE.community) { showCommunity(message); remember(channel, message); }
      else if (type === TYPE.alarm) showAlarm(message);
    },
  });
  for (const button of document.querySelectorAll("[data-period]")) {
    button.addEventListener("click", () => go({ period: button.dataset.period }));
  }
  $("hist-prev").addEventListener("click", () => go({ date: step(state.view.date, state.view.period, -1) }));
  $("hist-next").addEventListener("click", () => go({ date: step(state.view.date, state.view.period, 1) }));
  $("hist-today").addEventListener("click", () => go({ date: todayIso() }));
  $("hist-date").addEventListener("change", (e) => { if (e.target.value) go({ date: e.target.value }); });
  $("export").addEventListener("click", () => {
    const h = state.history;
    if (!h) return;
    const last = addDays(h.to, -1) > todayIso() ? todayIso() : addDays(h.to, -1);
    download(`/api/communities/${state.cid}/members/${state.mid}/export.csv?from=${h.from}&to=${last}`,
      token, `${state.cid}_${state.mid}_${h.from}_${last}.csv`);
  });
  loadToday();
  loadHistory();
  loadHealth();
  loadControls();
  // auto-refresh: today's energy and the shown period every 5 min (the tablet on the wall
  // stays current), health every minute; the trend is saved for a reload
  let day = todayIso();
  setInterval(() => {
    if (todayIso() !== day) { if (state.view.date === day) state.view.date = todayIso(); day = todayIso(); }
    loadToday(); loadHistory();
  }, 5 * 60 * 1000);
  setInterval(loadHealth, 60 * 1000);
  setInterval(loadControls, 15 * 1000);
  setInterval(() => { tick(); if (state.conn !== "live") renderState($("conn-state"), state.conn, state.offlineSince); }, 1000);
  setInterval(() => remember(`trend.${state.mid}`, state.trend), 10 * 1000);
  addEventListener("pagehide", () => remember(`trend.${state.mid}`, state.trend));
  if (tablet && navigator.wakeLock) navigator.wakeLock.request("screen").catch(() => {});
  onLangChange(() => {
    applyI18n();
    renderState($("conn-state"), state.conn, state.offlineSince);
    if (state.member) showMember(state.member, true);
    if (state.community) showCommunity(state.community);
    legend($("trend-legend"), trendSeries());
    drawTrend(true);
    renderToday();
    renderHistory();
    renderHealth();
    renderMyControls();
  });
}

main();
