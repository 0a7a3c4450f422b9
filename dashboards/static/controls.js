// Device controls, shared by the control centre and the member's app
// (GET/POST /api/communities/{cid}/controls): what each controllable device holds now — as the
// device read it back —, who asked it and why, until when it holds, the rule that last acted,
// and a manual override. An override is confirmed in a dialog before it is sent, and expires by
// itself: an inverter drops the limit then, and the rules on that point wait until it ends.
import { apiPost, fmtDateTime, fmtNumber, t } from "./common.js";

// how long a manual override holds (seconds), the choices offered
export const EXPIRIES_S = Object.freeze([900, 3600, 4 * 3600]);
const NONE = "";  // the value field left empty: remove the limit (nullable keys)

function cell(text, attrs = {}) {
  const td = document.createElement("td");
  td.textContent = text;
  for (const [k, v] of Object.entries(attrs)) td.setAttribute(k, v);
  return td;
}

// what a device holds, in words: "50 %", "encendido", "sin límite"
export function fmtHeld(device, value = device.value) {
  if (value === null || value === undefined) return device.last_state ? t("ctlNoLimit") : "—";
  if (typeof value === "number") return `${fmtNumber(value, Number.isInteger(value) ? 0 : 1)}${device.unit ? ` ${device.unit}` : ""}`;
  return t(`ctlWord_${value}`, {}, String(value));
}

function valueInput(device) {
  const label = t("ctlValueFor", { device: device.device_id });
  if (device.words.length) {
    const select = Object.assign(document.createElement("select"), { name: "value" });
    select.setAttribute("aria-label", label);
    for (const word of device.words) {
      select.append(Object.assign(document.createElement("option"), { value: word, textContent: t(`ctlWord_${word}`, {}, word) }));
    }
    return select;
  }
  const input = Object.assign(document.createElement("input"), {
    name: "value", type: "number", inputMode: "decimal", step: "any", placeholder: t("ctlNoLimit"),
  });
  if (device.minimum !== null) input.min = device.minimum;
  if (device.maximum !== null) input.max = device.maximum;
  input.setAttribute("aria-label", label);
  return input;
}

function expirySelect(device) {
  const select = Object.assign(document.createElement("select"), { name: "expires_s" });
  select.setAttribute("aria-label", t("ctlExpiryFor", { device: device.device_id }));
  for (const s of EXPIRIES_S) {
    select.append(Object.assign(document.createElement("option"), { value: String(s), textContent: t("ctlFor", { n: s < 3600 ? `${s / 60} min` : `${s / 3600} h` }) }));
  }
  return select;
}

function overrideForm(device, onApply) {
  const form = document.createElement("form");
  form.className = "ctl-form";
  form.dataset.field = "override-form";
  const value = valueInput(device);
  const expires = expirySelect(device);
  const button = Object.assign(document.createElement("button"), { type: "submit", textContent: t("ctlApply") });
  form.append(value, expires, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const raw = value.value.trim();
    const wanted = raw === NONE ? null : device.words.length ? raw : Number(raw);
    onApply(device, wanted, Number(expires.value));
  });
  return form;
}

// the columns of the controls table, the same on both pages (the header is made from this)
const COLUMNS = Object.freeze(["ctlDevice", "ctlNow", "ctlBy", "ctlUntil", "ctlRule", "ctlOverride", "ctlAction"]);

function ensureHead(table) {
  if (table.tHead) return;
  const row = table.createTHead().insertRow();
  for (const key of COLUMNS) {
    const th = Object.assign(document.createElement("th"), { scope: "col", textContent: t(key) });
    th.dataset.i18n = key;
    row.append(th);
  }
}

// the table: one row per device, data-field cells (the tests read them)
export function renderControls(table, devices, onApply) {
  ensureHead(table);
  const body = table.tBodies[0];
  if (!devices.length) {
    const tr = document.createElement("tr");
    tr.className = "none";
    tr.append(cell(t("ctlNone"), { colspan: COLUMNS.length }));
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...devices.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.device = d.device_id;
    const who = d.requested_by ? `${d.requested_by} · ${d.reason}` : "—";
    const since = d.since_ms ? ` (${t("ctlSince", { time: fmtDateTime(d.since_ms) })})` : "";
    const override = d.override_by ? t("ctlOverrideBy", { who: d.override_by, time: fmtDateTime(d.override_until_ms) }) : "";
    const pending = d.last_state && d.last_state !== "acknowledged" ? ` · ${t(`cmd_${d.last_state}`, {}, d.last_state)}` : "";
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: `${d.device_id} · ${d.key}` }),
      cell(`${fmtHeld(d)}${since}${pending}`, { "data-field": "held" }),
      cell(who, { "data-field": "who", class: "why" }),
      cell(d.expires_at_ms ? fmtDateTime(d.expires_at_ms) : "—", { "data-field": "until" }),
      cell(d.last_rule_id ? `${d.last_rule_id}: ${d.last_rule_reason}` : "—", { "data-field": "rule", class: "why" }),
      cell(override, { "data-field": "override" }));
    const action = document.createElement("td");
    action.append(overrideForm(d, onApply));
    tr.append(action);
    return tr;
  }));
}

// the confirmation dialog, made once inside ``container`` (both pages use the same one)
export function confirmDialog(container) {
  const found = document.getElementById("ctl-confirm");
  if (found) return found;
  const el = (tag, attrs = {}, key = null) => {
    const node = Object.assign(document.createElement(tag), attrs);
    if (key) { node.dataset.i18n = key; node.textContent = t(key); }
    return node;
  };
  const dialog = el("dialog", { id: "ctl-confirm" });
  dialog.setAttribute("aria-labelledby", "ctl-confirm-title");
  const form = el("form", { method: "dialog", className: "action-form" });
  const text = el("p");
  text.dataset.field = "confirm-text";
  const buttons = el("div", { className: "buttons" });
  buttons.append(el("button", { value: "send", id: "ctl-confirm-send" }, "ctlSend"),
    el("button", { value: "cancel", id: "ctl-confirm-cancel", className: "secondary" }, "ctlCancel"));
  form.append(el("h3", { id: "ctl-confirm-title" }, "ctlConfirmTitle"), text, buttons);
  dialog.append(form);
  container.append(dialog);
  return dialog;
}

// the confirmation: a modal dialog naming the device, the value and how long; true to send
export function confirmOverride(dialog, device, value, expiresS) {
  dialog.querySelector("[data-field=confirm-text]").textContent = t("ctlConfirmText", {
    device: device.device_id, key: device.key, value: fmtHeld(device, value),
    n: expiresS < 3600 ? `${expiresS / 60} min` : `${expiresS / 3600} h`,
  });
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "send"), { once: true });
    dialog.showModal();
  });
}

// ask, then send; the status line says what happened (sent: pending until the device answers)
export async function applyOverride({ cid, token, dialog, status, reason }, device, value, expiresS) {
  if (!(await confirmOverride(dialog, device, value, expiresS))) {
    status.textContent = t("ctlCancelled");
    return null;
  }
  try {
    const sent = await apiPost(`/api/communities/${cid}/controls`, token, {
      device_id: device.device_id, key: device.key, value, expires_s: expiresS, reason, confirm: true,
    });
    status.textContent = t("ctlSent", { device: device.device_id, time: fmtDateTime(sent.expires_at_ms) });
    return sent;
  } catch (error) {
    status.textContent = t("ctlRefused", { error: error.message });
    return null;
  }
}
