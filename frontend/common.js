// Shared state, constants and small helpers of the Plateau tab.

export const POLL_INTERVAL_MS = 15000; // how often the tab asks for new data
export const PENDING_POLL_MS = 1500; // how often while runs are being diagnosed in the background
export const SEVERITY_ORDER = { critical: 0, warning: 1, incomplete: 2, info: 3, healthy: 4, error: 5 };
export const ACCENT = "#f57c00";
export const COLORS = {
  critical: "#c62828",
  warning: "#e65100",
  info: "#1565c0",
  healthy: "#2e7d32",
  train: "#f57c00",
  trainEpoch: "#6a1b9a",
  validation: "#1565c0",
  band: "rgba(46, 125, 50, 0.10)",
  region: "rgba(198, 40, 40, 0.10)",
  zero: "#bdbdbd",
};
// Healthy update/weight ratio: ~1e-3 per step (Karpathy's rule of thumb),
// with an order of magnitude either way still fine.
export const RATIO_BAND = [1e-4, 1e-2];
export const RATIO_TARGET = 1e-3;
export const HEATMAP_RAMP = ["#0d0887", "#6a00a8", "#b12a90", "#e16462", "#fca636", "#f0f921"];

export const state = {
  runs: [],
  selected: null,
  filter: "",
  shownStamp: null,
  charts: [],
  seriesCache: new Map(),
  refreshing: false,
  dom: {},
  onSelect: () => {}, // draws the selected run (set by index.js)
};

// -- small helpers ----------------------------------------------------------

export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
  if (options.attrs) {
    for (const [key, value] of Object.entries(options.attrs)) node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.appendChild(child);
  return node;
}

// ECharts reads "{style|text}" in a label as rich text whatever its origin; a
// zero-width space after each "{" keeps a layer named "{hot|x}" literal.
export function escapeRich(value) {
  return String(value).replace(/\{/g, "{\u200b");
}

// An axis label: the layer name as text, in the "hot" style when the finding names it.
export function richLabel(name, hot, marker) {
  const text = escapeRich(name);
  return hot.has(name) && !/[{}|]/.test(name) ? `{hot|${marker}${text}}` : text;
}

export function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

// http_util.Respond writes NaN and ±Inf as strings.
export function num(value) {
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  if (value === null || value === undefined) return NaN;
  return Number(value);
}

export function fmt(value) {
  const v = num(value);
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "Inf" : "-Inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace(".0e", "e").replace("e+", "e");
  if (a >= 100) return Math.round(v).toLocaleString("en-US");
  return String(Number(v.toPrecision(3)));
}


export function shortName(tag) {
  return tag.startsWith("plateau/") ? tag.slice("plateau/".length) : null;
}
