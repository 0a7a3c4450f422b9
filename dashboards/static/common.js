// Shared by the three clients: i18n (es/en), formatting (W/kW, kWh, €, Europe/Madrid times),
// the token, the REST helper, the websocket client with automatic reconnect, and tiny SVG charts.
// Plain ES module: no build step, no dependencies.

export const TZ = "Europe/Madrid";

const STRINGS = {
  es: {
    appName: "IoE Comunidades",
    live: "En directo", connecting: "Conectando…", reconnecting: "Reconectando…",
    offline: "Sin conexión", authError: "Acceso denegado",
    updated: "actualizado {age}", ago: "hace {n}", never: "sin datos",
    assigned: "Tu producción asignada", consumption: "Tu consumo",
    selfNow: "Autoconsumo ahora", surplus: "Excedente", import: "De la red",
    coefficient: "Tu coeficiente β", communityGeneration: "Producción de la comunidad",
    today: "Hoy", todaySplit: "Energía de hoy", selfConsumed: "Autoconsumida",
    savings: "Ahorro", dayCurve: "Curva del día (kWh por hora)",
    monthBars: "Este mes (kWh por día)", weekBars: "Esta semana (kWh por día)",
    week: "Semana", month: "Mes", totals: "Totales", exportCsv: "Descargar CSV del mes",
    generation: "Generación", coverage: "Cobertura", selfRatio: "Autoconsumo",
    members: "Socios", member: "Socio", plants: "Plantas", plant: "Planta",
    power: "Potencia", devices: "Dispositivos", device: "Dispositivo", role: "Tipo",
    status: "Estado", lastReading: "Última lectura", alarms: "Alarmas abiertas",
    noAlarms: "Ninguna alarma abierta", schedule: "Coeficientes en vigor",
    scheduleKind: "Tipo", effectiveFrom: "Desde", sum: "Suma", reporting: "Socios reportando",
    community: "Comunidad", controlCentre: "Centro de control", memberView: "Mi energía",
    tabletView: "Mi energía (tableta)", tokenLabel: "Token de acceso",
    open: "Abrir", language: "English", languageLabel: "Cambiar idioma a inglés",
    needToken: "Necesitas un token de acceso (pídelo a la gestora de tu comunidad).",
    status_ok: "correcto", status_late: "con retraso", status_offline: "desconectado",
    status_no_data: "sin datos",
    consumption_role: "consumo", generation_role: "generación", grid_role: "red",
    storage_role: "batería", kind: "Tipo", severity: "Gravedad", since: "Desde",
    info: "info", warning: "aviso", critical: "crítica", staleValue: "dato antiguo",
    now: "Ahora", kwhUnit: "kWh", chartEmpty: "Sin datos todavía",
    colAssigned: "Asignada", colConsumption: "Consumo", colSelf: "Autoconsumo",
    colImport: "Red", communityConsumption: "Consumo", selfConsumedTotal: "Autoconsumida",
    deadLetters: "Fuentes sin identificar",
    deadLettersHelp: "Mensajes que llegan y no se pueden usar: dalos de alta en el registro "
      + "(dispositivo desconocido) o configura su decodificador.",
    dlOrigin: "Origen", dlReason: "Motivo", dlCount: "Veces", dlLastSeen: "Última vez",
    dlSample: "Muestra", noDeadLetters: "Ninguna fuente pendiente",
    reason_no_decoder: "sin decodificador", reason_unknown_device: "dispositivo desconocido",
    reason_decode_error: "error al decodificar",
  },
  en: {
    appName: "IoE Communities",
    live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…",
    offline: "Offline", authError: "Access denied",
    updated: "updated {age}", ago: "{n} ago", never: "no data",
    assigned: "Your assigned production", consumption: "Your consumption",
    selfNow: "Self-consumption now", surplus: "Surplus", import: "From the grid",
    coefficient: "Your coefficient β", communityGeneration: "Community production",
    today: "Today", todaySplit: "Today's energy", selfConsumed: "Self-consumed",
    savings: "Savings", dayCurve: "Today's curve (kWh per hour)",
    monthBars: "This month (kWh per day)", weekBars: "This week (kWh per day)",
    week: "Week", month: "Month", totals: "Totals", exportCsv: "Download this month's CSV",
    generation: "Generation", coverage: "Coverage", selfRatio: "Self-consumption",
    members: "Members", member: "Member", plants: "Plants", plant: "Plant",
    power: "Power", devices: "Devices", device: "Device", role: "Role",
    status: "Status", lastReading: "Last reading", alarms: "Open alarms",
    noAlarms: "No open alarms", schedule: "Coefficients in force",
    scheduleKind: "Kind", effectiveFrom: "From", sum: "Sum", reporting: "Members reporting",
    community: "Community", controlCentre: "Control centre", memberView: "My energy",
    tabletView: "My energy (tablet)", tokenLabel: "Access token",
    open: "Open", language: "Español", languageLabel: "Switch language to Spanish",
    needToken: "You need an access token (ask your community's manager).",
    status_ok: "ok", status_late: "late", status_offline: "offline", status_no_data: "no data",
    consumption_role: "consumption", generation_role: "generation", grid_role: "grid",
    storage_role: "storage", kind: "Kind", severity: "Severity", since: "Since",
    info: "info", warning: "warning", critical: "critical", staleValue: "stale value",
    now: "Now", kwhUnit: "kWh", chartEmpty: "No data yet",
    colAssigned: "Assigned", colConsumption: "Consumption", colSelf: "Self-consumption",
    colImport: "Grid", communityConsumption: "Consumption", selfConsumedTotal: "Self-consumed",
    deadLetters: "Unidentified sources",
    deadLettersHelp: "Messages that arrive and cannot be used: add them to the registry "
      + "(unknown device) or configure their decoder.",
    dlOrigin: "Origin", dlReason: "Reason", dlCount: "Count", dlLastSeen: "Last seen",
    dlSample: "Sample", noDeadLetters: "No pending sources",
    reason_no_decoder: "no decoder", reason_unknown_device: "unknown device",
    reason_decode_error: "decode error",
  },
};

let lang = localStorage.getItem("ioe.lang") === "en" ? "en" : "es";
const listeners = [];

export function getLang() { return lang; }

export function t(key, vars = {}) {
  let text = STRINGS[lang][key] ?? STRINGS.es[key] ?? key;
  for (const [name, value] of Object.entries(vars)) text = text.replace(`{${name}}`, value);
  return text;
}

export function applyI18n(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-aria]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAria));
  }
}

export function onLangChange(fn) { listeners.push(fn); }

export function setupLangToggle(button) {
  const render = () => {
    button.textContent = t("language");
    button.setAttribute("aria-label", t("languageLabel"));
  };
  button.addEventListener("click", () => {
    lang = lang === "es" ? "en" : "es";
    localStorage.setItem("ioe.lang", lang);
    applyI18n();
    render();
    for (const fn of listeners) fn();
  });
  applyI18n();
  render();
}

// -- formatting ----------------------------------------------------------------------------
const locale = () => (lang === "es" ? "es-ES" : "en-GB");
const number = (value, digits) => new Intl.NumberFormat(locale(), {
  minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: true,
}).format(value);

export function fmtPower(watts) {
  if (watts === null || watts === undefined || Number.isNaN(watts)) return "—";
  if (Math.abs(watts) < 1000) return `${number(Math.round(watts), 0)} W`;
  return `${number(watts / 1000, 2)} kW`;
}

export function fmtEnergy(kwh, digits = 2) {
  if (kwh === null || kwh === undefined) return "—";
  return `${number(kwh, digits)} kWh`;
}

export function fmtEur(eur) {
  if (eur === null || eur === undefined) return "—";
  return new Intl.NumberFormat(locale(), { style: "currency", currency: "EUR" }).format(eur);
}

export function fmtPct(ratio) {
  if (ratio === null || ratio === undefined) return "—";
  return `${number(ratio * 100, 0)} %`;
}

export function fmtBeta(beta) {
  return beta === null || beta === undefined ? "—" : number(beta, 6);
}

export function fmtTime(ms) {
  if (!ms) return "—";
  return new Intl.DateTimeFormat(locale(), {
    timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).format(new Date(ms));
}

export function fmtDateTime(ms) {
  if (!ms) return "—";
  return new Intl.DateTimeFormat(locale(), {
    timeZone: TZ, day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit",
  }).format(new Date(ms));
}

export function fmtAge(ms, now = Date.now()) {
  if (!ms) return t("never");
  const s = Math.max(0, Math.round((now - ms) / 1000));
  const n = s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min`
    : s < 129600 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return t("ago", { n });
}

export function todayIso() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: TZ }).format(new Date());
}

// -- token and REST ----------------------------------------------------------------------------
export function getToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    localStorage.setItem("ioe.token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem("ioe.token");
}

export async function api(path, token) {
  const response = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error(body.message || response.statusText);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

export async function download(path, token, filename) {
  const response = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(response.statusText);
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}

// -- last values kept for offline use -------------------------------------------------------
export function remember(key, value) {
  try { localStorage.setItem(`ioe.last.${key}`, JSON.stringify(value)); } catch { /* full */ }
}

export function recall(key) {
  try { return JSON.parse(localStorage.getItem(`ioe.last.${key}`)); } catch { return null; }
}

// -- the websocket client ------------------------------------------------------------------------
// Sends the token in the first frame (never in the URL), subscribes, and reconnects with
// backoff; a silent connection (no frame for 3 heartbeats) is treated as dead.
export class LiveClient {
  constructor({ token, channels, onMessage, onState, onHello }) {
    Object.assign(this, { token, channels, onMessage, onState, onHello });
    this.delay = 1000;
    this.heartbeatMs = 15000;
    this.stopped = false;
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.setState(this.everConnected ? "reconnecting" : "connecting");
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ op: "auth", token: this.token }));
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      clearTimeout(this.watchdog);
      if (this.stopped) return;
      if (event.code === 4401) { this.setState("authError"); return; }
      this.setState("offline");
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 30000);
    };
  }

  receive(frame) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.ws.close(), 3 * this.heartbeatMs);
    if (frame.op === "hello") {
      this.everConnected = true;
      this.delay = 1000;
      this.heartbeatMs = (frame.heartbeat_s || 15) * 1000;
      const channels = this.channels || frame.channels;
      this.ws.send(JSON.stringify({ op: "subscribe", channels }));
      this.setState("live");
      this.onHello?.(frame);
    } else if (frame.op === "snapshot") {
      for (const message of frame.data) this.onMessage(frame.channel, message, true);
    } else if (frame.op === "delta") {
      this.onMessage(frame.channel, frame.data, false);
    } else if (frame.op === "error") {
      console.warn("server refused:", frame.code, frame.message, frame.channel || "");
    }
  }

  subscribe(channels) {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ op: "subscribe", channels }));
    }
  }

  setState(state) {
    this.state = state;
    this.onState?.(state);
  }
}

export function renderState(el, state) {
  el.dataset.state = state;
  el.textContent = t(state);
}

// -- SVG charts (hand-drawn, accessible: role="img" + a text summary) ---------------------------
const SVG_NS = "http://www.w3.org/2000/svg";

function node(name, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

function size(svg, { height = 200 } = {}) {
  // drawn in CSS pixels so the labels keep their size on a phone and on a wall screen
  return { width: Math.max(240, Math.round(svg.clientWidth || 640)), height };
}

function empty(svg, width, height) {
  svg.append(node("text", { x: width / 2, y: height / 2, "text-anchor": "middle",
    class: "empty" }, t("chartEmpty")));
}

function frame(svg, width, height) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
}

// Stacked bars: series = [{key, label, color}], rows = [{label, short, [key]: value}]
export function barChart(svg, rows, series, options = {}) {
  const { width, height } = size(svg, options);
  frame(svg, width, height);
  const pad = { l: 36, r: 8, t: 10, b: 22 };
  const totals = rows.map((r) => series.reduce((sum, s) => sum + (r[s.key] || 0), 0));
  const max = Math.max(0.001, ...totals);
  const w = (width - pad.l - pad.r) / Math.max(1, rows.length);
  const y = (v) => pad.t + (height - pad.t - pad.b) * (1 - v / max);
  svg.append(node("line", { x1: pad.l, x2: width - pad.r, y1: y(0), y2: y(0), class: "axis" }));
  svg.append(node("text", { x: 2, y: y(max) + 4, class: "tick" }, number(max, 1)));
  rows.forEach((row, i) => {
    let base = 0;
    for (const s of series) {
      const v = row[s.key] || 0;
      if (v > 0) {
        const rect = node("rect", { x: pad.l + i * w + 1, width: Math.max(1, w - 2),
          y: y(base + v), height: y(base) - y(base + v), fill: s.color });
        rect.append(node("title", {}, `${row.label}: ${s.label} ${fmtEnergy(v)}`));
        svg.append(rect);
      }
      base += v;
    }
    if (rows.length <= 12 || i % Math.ceil(rows.length / 10) === 0) {
      svg.append(node("text", { x: pad.l + i * w + w / 2, y: height - 6, class: "tick",
        "text-anchor": "middle" }, row.short ?? row.label));
    }
  });
  const total = totals.reduce((a, b) => a + b, 0);
  if (total === 0) empty(svg, width, height);
  svg.setAttribute("aria-label", `${series.map((s) => s.label).join(", ")}: ${fmtEnergy(total)}`);
}

// Lines: series = [{key, label, color}], rows as above
// Rows with ``has === false`` (no data yet) leave a gap in the lines.
export function lineChart(svg, rows, series, options = {}) {
  const { width, height } = size(svg, options);
  frame(svg, width, height);
  const pad = { l: 36, r: 8, t: 10, b: 22 };
  const max = Math.max(0.001, ...rows.flatMap((r) => series.map((s) => r[s.key] || 0)));
  const x = (i) => pad.l + (width - pad.l - pad.r) * (i / Math.max(1, rows.length - 1));
  const y = (v) => pad.t + (height - pad.t - pad.b) * (1 - v / max);
  svg.append(node("line", { x1: pad.l, x2: width - pad.r, y1: y(0), y2: y(0), class: "axis" }));
  svg.append(node("text", { x: 2, y: y(max) + 4, class: "tick" }, number(max, 1)));
  for (const s of series) {
    let run = [];
    const flush = () => {
      if (run.length === 1) svg.append(node("circle", { cx: run[0][0], cy: run[0][1], r: 3,
        fill: s.color }));
      if (run.length > 1) svg.append(node("polyline", { fill: "none", stroke: s.color,
        points: run.map((p) => p.join(",")).join(" "), "stroke-width": 2.5,
        "stroke-linejoin": "round" }));
      run = [];
    };
    rows.forEach((r, i) => {
      if (r.has === false) flush();
      else run.push([x(i).toFixed(1), y(r[s.key] || 0).toFixed(1)]);
    });
    flush();
  }
  rows.forEach((row, i) => {
    if (i % Math.ceil(rows.length / 8) === 0) {
      svg.append(node("text", { x: x(i), y: height - 6, class: "tick", "text-anchor": "middle" },
        row.short ?? row.label));
    }
  });
  if (!rows.some((r) => r.has !== false && series.some((s) => r[s.key]))) {
    empty(svg, width, height);
  }
  svg.setAttribute("aria-label", series.map((s) =>
    `${s.label}: ${fmtEnergy(rows.reduce((a, r) => a + (r[s.key] || 0), 0))}`).join("; "));
}

export const COLORS = {
  assigned: "#b45309", consumption: "#1d4ed8", self: "#047857", surplus: "#a16207",
  import: "#6b7280",
};

export function legend(el, series) {
  el.replaceChildren(...series.map((s) => {
    const item = document.createElement("li");
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.background = s.color;
    item.append(swatch, document.createTextNode(s.label));
    return item;
  }));
}
