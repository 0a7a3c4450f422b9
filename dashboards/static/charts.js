// Charts of the clients: uPlot (vendored from npm: /static/vendor/uplot, loaded as the global
// `uPlot` by a classic <script> before the modules) for every time series, and the energy-flow
// picture as a small hand-drawn SVG with a fixed layout.
//
// Every chart has: axes with ticks and units (numbers in the user's locale), a tooltip that
// follows the mouse and a tap or touch, drag zoom (mouse) and pinch zoom (two fingers) on the
// history, double-click / double-tap to zoom out, and a table alternative for screen readers
// and keyboard users. The uPlot instances are kept on `window.ioeCharts` (by element id) so the
// browser tests can read the ticks the axes drew.
import { COLORS, fmtEnergy, fmtHM, fmtNumber, fmtPower } from "./common.js";
import { t } from "./i18n.js";

const registry = (window.ioeCharts ??= {});

function cssSize(el, height) {
  return { width: Math.max(240, Math.round(el.clientWidth || 320)), height };
}

const AXIS = {
  stroke: "#374151", grid: { stroke: "#e5e7eb", width: 1 }, ticks: { stroke: "#9ca3af", width: 1 },
  font: "12px system-ui, sans-serif", labelFont: "12px system-ui, sans-serif",
};

// -- tooltip: a DOM box inside the plot, filled by `format(u, idx)` ---------------------------------
function tooltipPlugin(format) {
  let box;
  return {
    hooks: {
      init: (u) => {
        box = document.createElement("div");
        box.className = "chart-tip";
        box.setAttribute("role", "status");
        box.hidden = true;
        u.over.append(box);
        u.over.addEventListener("mouseleave", () => { box.hidden = true; });
      },
      setCursor: (u) => {
        const idx = u.cursor.idx;
        if (idx === null || idx === undefined || u.cursor.left < 0) { box.hidden = true; return; }
        const html = format(u, idx);
        if (!html) { box.hidden = true; return; }
        box.replaceChildren(...html);
        box.hidden = false;
        const left = u.cursor.left;
        const right = left > u.over.clientWidth / 2;
        box.style.left = right ? "" : `${left + 12}px`;
        box.style.right = right ? `${u.over.clientWidth - left + 12}px` : "";
        box.style.top = "4px";
      },
    },
  };
}

function tipLine(color, label, value) {
  const row = document.createElement("div");
  const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
  swatch.style.background = color;
  row.append(swatch, document.createTextNode(`${label}: `),
    Object.assign(document.createElement("b"), { textContent: value }));
  return row;
}

function tipTitle(text) {
  return Object.assign(document.createElement("div"), { className: "tip-title", textContent: text });
}

// -- touch: a tap or a drag moves the cursor (tooltip); two fingers pinch-zoom the x scale ---------
function touchPlugin({ zoom }) {
  return {
    hooks: {
      init: (u) => {
        const over = u.over;
        let pinch = null;
        const point = (touch) => {
          const rect = over.getBoundingClientRect();
          return { left: touch.clientX - rect.left, top: touch.clientY - rect.top };
        };
        over.addEventListener("touchstart", (e) => {
          if (e.touches.length === 2 && zoom) {
            const [a, b] = [point(e.touches[0]), point(e.touches[1])];
            const min = u.scales.x.min, max = u.scales.x.max;
            pinch = { a: a.left, b: b.left, min, max };
          } else if (e.touches.length === 1) {
            u.setCursor(point(e.touches[0]));
          }
        }, { passive: true });
        over.addEventListener("touchmove", (e) => {
          if (pinch && e.touches.length === 2) {
            e.preventDefault();
            const [a, b] = [point(e.touches[0]), point(e.touches[1])];
            const width = over.clientWidth;
            const span = pinch.max - pinch.min;
            const before = Math.max(8, Math.abs(pinch.b - pinch.a));
            const after = Math.max(8, Math.abs(b.left - a.left));
            const centre = pinch.min + span * ((pinch.a + pinch.b) / 2 / width);
            const next = span * (before / after);
            u.setScale("x", { min: centre - next / 2, max: centre + next / 2 });
          } else if (e.touches.length === 1) {
            u.setCursor(point(e.touches[0]));
          }
        }, { passive: false });
        over.addEventListener("touchend", (e) => { if (e.touches.length < 2) pinch = null; });
      },
    },
  };
}

// -- keyboard: the chart takes the focus; ← / → walk the points (tooltip), Home / End, Esc -------
function keyboard(el) {
  el.tabIndex = 0;
  el.onkeydown = (e) => {
    const chart = registry[el.id];
    const xs = chart?.data[0] || [];
    if (!xs.length) return;
    if (e.key === "Escape") { chart.setCursor({ left: -10, top: -10 }); return; }
    const last = xs.length - 1;
    const now = chart.cursor.idx ?? (e.key === "ArrowLeft" ? last + 1 : -1);
    const idx = { ArrowRight: Math.min(last, now + 1), ArrowLeft: Math.max(0, now - 1),
      Home: 0, End: last }[e.key];
    if (idx === undefined) return;
    e.preventDefault();
    chart.setCursor({ left: chart.valToPos(xs[idx], "x"), top: chart.over.clientHeight / 2 });
  };
  el.onblur = () => registry[el.id]?.setCursor({ left: -10, top: -10 });
}

function mount(el, opts, data) {
  const previous = registry[el.id];
  if (previous) previous.destroy();
  el.replaceChildren();
  const chart = new uPlot(opts, data, el);
  registry[el.id] = chart;
  keyboard(el);
  if (!el.dataset.resizeObserved) {
    el.dataset.resizeObserved = "1";
    new ResizeObserver(() => {
      const current = registry[el.id];
      const width = Math.max(240, Math.round(el.clientWidth || 320));
      if (current && Math.abs(current.width - width) > 2) {
        current.setSize({ width, height: current.height });
      }
    }).observe(el);
  }
  return chart;
}

// -- the live power trend (W over the last minutes) -------------------------------------------------
// points: [{ts (ms), [key]: watts}], series: [{key, label, color}]
export function liveTrend(el, points, series, { height = 180, minutes = 15 } = {}) {
  const now = Date.now() / 1000;
  const xs = points.map((p) => p.ts / 1000);
  const data = [xs, ...series.map((s) => points.map((p) => p[s.key] ?? null))];
  const opts = {
    ...cssSize(el, height),
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { size: 7 } },
    scales: {
      x: { time: true, range: () => [now - minutes * 60, Math.max(now, xs.at(-1) ?? now)] },
      y: { range: (u, min, max) => [0, Math.max(100, (max || 0) * 1.1)] },
    },
    axes: [
      { ...AXIS, space: 70, values: (u, splits) => splits.map((s) => fmtHM(s * 1000)) },
      { ...AXIS, size: 64, label: "W / kW", values: (u, splits) => splits.map((v) => fmtPower(v)) },
    ],
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2.5,
      fill: `${s.color}1f`, spanGaps: false,
      points: { show: (u, si, i0, i1) => i1 - i0 < 40, size: 6 } }))],
    plugins: [
      tooltipPlugin((u, idx) => [tipTitle(fmtHM(u.data[0][idx] * 1000, true)),
        ...series.map((s, i) => tipLine(s.color, s.label, fmtPower(u.data[i + 1][idx])))]),
      touchPlugin({ zoom: false }),
    ],
  };
  return mount(el, opts, data);
}

// -- history bars: stacked per bucket (kWh) -----------------------------------------------------------
// rows: [{label (long), short (axis), [key]: kWh}], series: [{key, label, color}] bottom → top
export function stackedBars(el, rows, series, { height = 220 } = {}) {
  const n = rows.length;
  const xs = rows.map((_, i) => i);
  // cumulative sums, drawn tallest first so each segment shows on top of the one below
  const cumulative = series.map((_, si) => rows.map((r) =>
    series.slice(0, si + 1).reduce((sum, s) => sum + (r[s.key] || 0), 0)));
  const order = series.map((s, i) => i).reverse();
  const bars = uPlot.paths.bars({ size: [0.7, 48], align: 0 });
  const opts = {
    ...cssSize(el, height),
    legend: { show: false },
    cursor: { drag: { x: true, y: false, setScale: true }, points: { show: false } },
    scales: {
      x: { time: false, range: (u, min, max) => [Math.max(-0.5, min - 0.5), Math.min(n - 0.5, max + 0.5)] },
      y: { range: (u, min, max) => [0, Math.max(0.1, (max || 0) * 1.1)] },
    },
    axes: [
      { ...AXIS, space: 30,
        splits: (u) => {
          const lo = Math.ceil(Math.max(0, u.scales.x.min)), hi = Math.floor(Math.min(n - 1, u.scales.x.max));
          const step = Math.max(1, Math.ceil((hi - lo + 1) / Math.max(4, Math.floor(u.bbox.width / devicePixelRatio / 46))));
          const out = [];
          for (let i = lo; i <= hi; i += step) out.push(i);
          return out.length ? out : [lo];
        },
        values: (u, splits) => splits.map((i) => rows[i]?.short ?? "") },
      { ...AXIS, size: 60, label: "kWh", values: (u, splits) => splits.map((v) => fmtNumber(v, v < 10 ? 1 : 0)) },
    ],
    series: [{}, ...order.map((si) => ({ label: series[si].label, fill: series[si].color,
      stroke: series[si].color, width: 0, paths: bars, points: { show: false } }))],
    plugins: [
      tooltipPlugin((u, idx) => {
        const row = rows[idx];
        if (!row) return null;
        return [tipTitle(row.label), ...series.map((s) => tipLine(s.color, s.label, fmtEnergy(row[s.key] || 0)))];
      }),
      touchPlugin({ zoom: true }),
    ],
  };
  const chart = mount(el, opts, [xs, ...order.map((si) => cumulative[si])]);
  el.setAttribute("role", "img");
  const total = rows.reduce((sum, r) => sum + series.reduce((a, s) => a + (r[s.key] || 0), 0), 0);
  el.setAttribute("aria-label", `${series.map((s) => `${s.label} ${fmtEnergy(
    rows.reduce((a, r) => a + (r[s.key] || 0), 0))}`).join(", ")} (${t("chartTotal")} ${fmtEnergy(total)})`);
  chart.over.addEventListener("dblclick", () => chart.setScale("x", { min: 0, max: n - 1 }));
  return chart;
}

// -- two series side by side per category (the coefficient comparison: current vs optimised) ------
// rows: [{label, [key]: number}], series: exactly two [{key, label, color}], format: value → text
export function pairedBars(el, rows, series, { height = 220, format = fmtNumber, unit = "" } = {}) {
  const n = rows.length;
  const xs = rows.map((_, i) => i);
  const paths = [-1, 1].map((align) => uPlot.paths.bars({ size: [0.4, 64], align, gap: 2 }));
  const opts = {
    ...cssSize(el, height),
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: {
      x: { time: false, range: () => [-0.5, n - 0.5] },
      y: { range: (u, min, max) => [0, Math.max(1e-6, (max || 0) * 1.1)] },
    },
    axes: [
      { ...AXIS, space: 30, splits: () => xs, values: (u, splits) => splits.map((i) => rows[i]?.label ?? "") },
      { ...AXIS, size: 70, label: unit, values: (u, splits) => splits.map((v) => format(v, true)) },
    ],
    series: [{}, ...series.map((s, i) => ({ label: s.label, fill: s.color, stroke: s.color, width: 0,
      paths: paths[i], points: { show: false } }))],
    plugins: [
      tooltipPlugin((u, idx) => {
        const row = rows[idx];
        if (!row) return null;
        return [tipTitle(row.label), ...series.map((s) => tipLine(s.color, s.label, format(row[s.key])))];
      }),
      touchPlugin({ zoom: false }),
    ],
  };
  const chart = mount(el, opts, [xs, ...series.map((s) => rows.map((r) => r[s.key] ?? null))]);
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", rows.map((r) => `${r.label}: ${series.map((s) =>
    `${s.label} ${format(r[s.key])}`).join(", ")}`).join("; "));
  return chart;
}

// -- the same numbers as a table (the alternative to every chart) ---------------------------------
export function chartTable(table, rows, series, { first, unit = "kWh" } = {}) {
  const head = document.createElement("tr");
  head.append(Object.assign(document.createElement("th"), { scope: "col", textContent: first }),
    ...series.map((s) => Object.assign(document.createElement("th"), { scope: "col",
      textContent: `${s.label} (${unit})` })));
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: r.label }),
      ...series.map((s) => Object.assign(document.createElement("td"), {
        textContent: unit === "kWh" ? fmtNumber(r[s.key] || 0, 2) : fmtPower(r[s.key]) })));
    return tr;
  }));
}

// -- energy flow of a period: sun (my share) → home / grid, grid → home ---------------------------
// flows: {sun: assigned kWh, self: self-consumed, surplus: to the grid, import: from the grid,
//         home: consumption}. Fixed layout; band widths ∝ energy; numbers printed on each node.
const SVG_NS = "http://www.w3.org/2000/svg";
function svgNode(name, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

export function flowDiagram(svg, flows) {
  const W = 360, H = 220;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const max = Math.max(0.001, flows.sun, flows.home, flows.surplus + flows.import);
  const band = (kwh) => (kwh > 0 ? Math.max(3, 46 * (kwh / max)) : 0);
  const nodes = {
    sun: { x: 8, y: 20, w: 110, h: 64, color: COLORS.sun, label: t("flowSun"), kwh: flows.sun },
    grid: { x: 8, y: 136, w: 110, h: 64, color: COLORS.grid, label: t("flowGrid"),
      kwh: flows.surplus + flows.import },
    home: { x: 242, y: 78, w: 110, h: 64, color: COLORS.home, label: t("flowHome"), kwh: flows.home },
  };
  const link = (from, to, kwh, color, key, label) => {
    const width = band(kwh);
    if (!width) return;
    const a = nodes[from], b = nodes[to];
    const x1 = a.x + a.w, y1 = a.y + a.h / 2;
    const x2 = b.x, y2 = b.y + b.h / 2;
    const reverse = from === "sun" && to === "grid";
    const d = reverse
      ? `M ${a.x + a.w / 2} ${a.y + a.h} L ${b.x + b.w / 2} ${b.y}`
      : `M ${x1} ${y1} C ${(x1 + x2) / 2} ${y1}, ${(x1 + x2) / 2} ${y2}, ${x2} ${y2}`;
    const path = svgNode("path", { d, stroke: color, "stroke-width": width, fill: "none",
      "stroke-opacity": 0.55, "data-flow": key, "data-kwh": kwh.toFixed(4) });
    path.append(svgNode("title", {}, `${label}: ${fmtEnergy(kwh)}`));
    svg.append(path);
    const mx = reverse ? a.x + a.w / 2 + 8 : (x1 + x2) / 2;
    const my = reverse ? (a.y + a.h + b.y) / 2 + 4 : (y1 + y2) / 2 - width / 2 - 4;
    svg.append(svgNode("text", { x: mx, y: my, class: "flow-value", "text-anchor": reverse ? "start" : "middle",
      "data-flow-label": key }, fmtEnergy(kwh, 1)));
  };
  link("sun", "home", flows.self, COLORS.self, "self", t("selfConsumed"));
  link("sun", "grid", flows.surplus, COLORS.surplus, "surplus", t("surplus"));
  link("grid", "home", flows.import, COLORS.import, "import", t("import"));
  for (const [key, n] of Object.entries(nodes)) {
    const g = svgNode("g", { "data-node": key, "data-kwh": n.kwh.toFixed(4) });
    g.append(svgNode("rect", { x: n.x, y: n.y, width: n.w, height: n.h, rx: 10, fill: "#fff",
      stroke: n.color, "stroke-width": 3 }));
    g.append(svgNode("text", { x: n.x + n.w / 2, y: n.y + (key === "grid" ? 38 : 25),
      "text-anchor": "middle", class: key === "grid" ? "flow-number" : "flow-label" }, n.label));
    // the grid's two numbers are on its links (to it, from it)
    if (key !== "grid") {
      g.append(svgNode("text", { x: n.x + n.w / 2, y: n.y + 48, "text-anchor": "middle",
        class: "flow-number" }, fmtEnergy(n.kwh, 1)));
    }
    svg.append(g);
  }
  svg.setAttribute("aria-label", t("flowSummary", {
    sun: fmtEnergy(flows.sun), self: fmtEnergy(flows.self), surplus: fmtEnergy(flows.surplus),
    import: fmtEnergy(flows.import), home: fmtEnergy(flows.home) }));
}
