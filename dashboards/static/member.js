// Member view (mobile and tablet layouts): live assigned production vs consumption, today's
// energy split, the day curve, the week (tablet) and month charts. Offline-tolerant: the last
// live value is kept and shown with its age until the connection comes back.
import {
  COLORS, LiveClient, api, applyI18n, barChart, download, fmtAge, fmtBeta, fmtEnergy, fmtEur,
  fmtPower, getToken, legend, lineChart, onLangChange, recall, remember, renderState,
  setupLangToggle, t, todayIso,
} from "./common.js";
import { COMMUNITY, LIVE, MEMBER, TYPE, channel as channelOf } from "./messages.js";

const $ = (id) => document.getElementById(id);
const tablet = document.body.dataset.layout === "tablet";
const state = { member: null, community: null, lastTs: null, histories: {}, conn: "connecting" };

function showMember(m) {
  state.member = m;
  state.lastTs = m[MEMBER.tsMs];
  $("live-assigned").textContent = fmtPower(m[MEMBER.assignedW]);
  $("live-consumption").textContent = fmtPower(m[MEMBER.consumptionW]);
  $("live-self").textContent = fmtPower(m[MEMBER.selfConsumptionW]);
  $("live-surplus").textContent = fmtPower(m[MEMBER.surplusW]);
  $("live-import").textContent = fmtPower(m[MEMBER.importW]);
  $("live-coefficient").textContent = fmtBeta(m[MEMBER.coefficient]);
  $("live-stale").hidden = !m[MEMBER.stale];
  const consumption = m[MEMBER.consumptionW];
  const share = consumption
    ? Math.min(1, (m[MEMBER.selfConsumptionW] || 0) / consumption) : 0;
  $("meter-self").style.width = `${Math.round(share * 100)}%`;
  tick();
}

function showCommunity(c) {
  state.community = c;
  $("live-generation").textContent = fmtPower(c[COMMUNITY.generationW]);
}

function tick() {
  const age = state.lastTs ? t("updated", { age: fmtAge(state.lastTs) }) : "";
  $("live-age").textContent = age;
}

function rows(history, short) {
  return history.buckets.map((b) => ({
    label: b.label, short: short(b.label), consumption: b.consumption_kwh,
    assigned: b.assigned_kwh, self: b.self_consumed_kwh, import: b.import_kwh,
    surplus: b.surplus_kwh, has: b.hours > 0,
  }));
}


function renderHistories() {
  const { day, week, month } = state.histories;
  if (day) {
    const tot = day.totals;
    $("today-consumption").textContent = fmtEnergy(tot.consumption_kwh);
    $("today-self").textContent = fmtEnergy(tot.self_consumed_kwh);
    $("today-surplus").textContent = fmtEnergy(tot.surplus_kwh);
    $("today-import").textContent = fmtEnergy(tot.import_kwh);
    $("today-savings").textContent = fmtEur(day.savings.total_eur);
    const parts = [["self", tot.self_consumed_kwh], ["surplus", tot.surplus_kwh],
      ["import", tot.import_kwh]];
    const sum = parts.reduce((a, [, v]) => a + v, 0) || 1;
    $("today-bar").replaceChildren(...parts.map(([key, v]) => {
      const span = document.createElement("span");
      span.style.width = `${(100 * v) / sum}%`;
      span.style.background = COLORS[key];
      span.title = `${t(key === "self" ? "selfConsumed" : key)} ${fmtEnergy(v)}`;
      return span;
    }));
    legend($("today-legend"), [
      { label: t("selfConsumed"), color: COLORS.self },
      { label: t("surplus"), color: COLORS.surplus }, { label: t("import"), color: COLORS.import }]);
    const series = [{ key: "consumption", label: t("consumption"), color: COLORS.consumption },
      { key: "assigned", label: t("assigned"), color: COLORS.assigned }];
    lineChart($("day-chart"), rows(day, (l) => l.slice(11, 13)), series);
    legend($("day-legend"), series);
  }
  const bars = [{ key: "self", label: t("selfConsumed"), color: COLORS.self },
    { key: "import", label: t("import"), color: COLORS.import }];
  if (week && tablet) {
    barChart($("week-chart"), rows(week, (l) => l.slice(8, 10)), bars);
    $("week-totals").textContent = fmtEnergy(week.totals.consumption_kwh);
    $("week-self").textContent = fmtEnergy(week.totals.self_consumed_kwh);
    $("week-savings").textContent = fmtEur(week.savings.total_eur);
  }
  if (month) {
    barChart($("month-chart"), rows(month, (l) => String(Number(l.slice(8, 10)))), bars);
    legend($("month-legend"), bars);
    $("month-totals").textContent = fmtEnergy(month.totals.consumption_kwh);
    $("month-self").textContent = fmtEnergy(month.totals.self_consumed_kwh);
    $("month-savings").textContent = fmtEur(month.savings.total_eur);
  }
}

async function loadHistories(token, cid, mid) {
  const base = `/api/communities/${cid}/members/${mid}/history?date=${todayIso()}&period=`;
  const periods = tablet ? ["day", "week", "month"] : ["day", "month"];
  await Promise.all(periods.map(async (period) => {
    try {
      state.histories[period] = await api(base + period, token);
      remember(`history.${mid}.${period}`, state.histories[period]);
    } catch (error) {
      state.histories[period] ??= recall(`history.${mid}.${period}`);
      console.warn("history", period, error.message);
    }
  }));
  renderHistories();
}

async function main() {
  setupLangToggle($("lang"));
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
  const cid = me.communities[0];
  const mid = me.member_id;
  const detail = me.community_details?.[0];
  $("member-name").textContent = detail?.member?.name ? `· ${detail.member.name}` : "";
  const memberChannel = channelOf.member(cid, mid);
  const communityChannel = channelOf.community(cid);
  const cached = recall(memberChannel);
  if (cached) showMember(cached);
  const cachedCommunity = recall(communityChannel);
  if (cachedCommunity) showCommunity(cachedCommunity);
  const show = { [TYPE.member]: showMember, [TYPE.community]: showCommunity };
  new LiveClient({
    token,
    channels: [memberChannel, communityChannel],
    onState: (s) => { state.conn = s; renderState($("conn-state"), s); },
    onMessage: (channel, message) => {
      const render = show[message[LIVE.type]];
      if (render) { render(message); remember(channel, message); }
    },
  });
  loadHistories(token, cid, mid);
  setInterval(() => loadHistories(token, cid, mid), 5 * 60 * 1000);
  setInterval(tick, 1000);
  $("export").addEventListener("click", () => {
    const today = todayIso();
    const first = `${today.slice(0, 8)}01`;
    download(`/api/communities/${cid}/members/${mid}/export.csv?from=${first}&to=${today}`,
      token, `${cid}_${mid}_${first}_${today}.csv`);
  });
  onLangChange(() => {
    applyI18n();
    renderState($("conn-state"), state.conn);
    if (state.member) showMember(state.member);
    if (state.community) showCommunity(state.community);
    renderHistories();
  });
}

main();
