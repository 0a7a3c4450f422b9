// Shared by the three clients: formatting (W/kW, kWh, €, Europe/Madrid times, the user's
// locale), the token, the REST helper, the websocket client with automatic reconnect and an
// "offline since" badge, the last values kept for offline use, and the service worker.
// Plain ES module: no build step. Texts are in i18n.js (es, en, ca, eu, gl); charts in charts.js.
import { getLang, langInfo, t } from "./i18n.js";

export { applyI18n, getLang, onLangChange, setupLangSelect, t } from "./i18n.js";

export const TZ = "Europe/Madrid";

// colour-blind-safe palette (Okabe & Ito); text colours are the darker variants in style.css
export const COLORS = {
  sun: "#E69F00", assigned: "#E69F00", consumption: "#0072B2", home: "#0072B2",
  self: "#009E73", surplus: "#56B4E9", import: "#D55E00", grid: "#6B7280",
  generation: "#E69F00",
};

// -- formatting ----------------------------------------------------------------------------
const locale = () => langInfo(getLang()).locale;

export function fmtNumber(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return new Intl.NumberFormat(locale(), {
    minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: true,
  }).format(value);
}
const number = fmtNumber;

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
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "—";
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

export function fmtHM(ms, seconds = false) {
  return new Intl.DateTimeFormat(locale(), {
    timeZone: TZ, hour: "2-digit", minute: "2-digit", ...(seconds ? { second: "2-digit" } : {}),
  }).format(new Date(ms));
}

export function fmtDateTime(ms) {
  if (!ms) return "—";
  return new Intl.DateTimeFormat(locale(), {
    timeZone: TZ, day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit",
  }).format(new Date(ms));
}

// a local calendar day "YYYY-MM-DD" (or month "YYYY-MM") in words, in the user's language
export function fmtDay(iso, options = { weekday: "long", day: "numeric", month: "long", year: "numeric" }) {
  const [y, m, d] = iso.split("-").map(Number);
  return new Intl.DateTimeFormat(locale(), { timeZone: "UTC", ...options })
    .format(new Date(Date.UTC(y, m - 1, d || 1, 12)));
}

export function fmtAge(ms, now = Date.now()) {
  if (!ms) return t("never");
  return t("ago", { n: fmtDuration((now - ms) / 1000) });
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min`
    : s < 129600 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
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

// a JSON body to the API (the control centre's alarm actions); errors as in api()
export async function apiPost(path, token, body) {
  const response = await fetch(path, { method: "POST", body: JSON.stringify(body),
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.message || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
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
    if (state === "live") this.offlineSince = null;
    else if ((state === "offline" || state === "reconnecting") && !this.offlineSince) {
      this.offlineSince = Date.now();
    }
    this.state = state;
    this.onState?.(state, this.offlineSince);
  }
}


export function renderState(el, state, since) {
  el.dataset.state = state;
  el.textContent = since && (state === "offline" || state === "reconnecting")
    ? t("offlineSince", { time: fmtTime(since) }) : t(state);
}

export function legend(el, series) {
  el.replaceChildren(...series.map((s) => {
    const item = document.createElement("li");
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.background = s.color;
    item.append(swatch, document.createTextNode(s.label));
    return item;
  }));
}

// -- service worker: the pages and static files readable offline (the values come from
// localStorage). Registered from the root so it covers /member, /tablet and /control.
export function registerServiceWorker() {
  if ("serviceWorker" in navigator && location.protocol !== "file:") {
    navigator.serviceWorker.register("/sw.js").catch((error) => console.warn("sw", error.message));
  }
}
