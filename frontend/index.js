// The Plateau tab. TensorBoard loads this ES module in an iframe whose page
// sets <base href="plugin/plateau/">, so every URL here is relative ("./runs")
// and works under --path_prefix. No inline script, no CDN: the chart library
// is vendored next to this file.
//
// Every run, tag, layer and function name reaches the DOM through
// textContent, never as markup; chart tooltips escape what they show.

import * as echarts from "./vendor/echarts.esm.min.js";

const POLL_INTERVAL_MS = 15000; // how often the tab asks for new data
const PENDING_POLL_MS = 1500; // how often while runs are being diagnosed in the background
const SEVERITY_ORDER = { critical: 0, warning: 1, incomplete: 2, info: 3, healthy: 4, error: 5 };
const ACCENT = "#f57c00";
const COLORS = {
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
const RATIO_BAND = [1e-4, 1e-2];
const RATIO_TARGET = 1e-3;
const HEATMAP_RAMP = ["#0d0887", "#6a00a8", "#b12a90", "#e16462", "#fca636", "#f0f921"];

const state = {
  runs: [],
  selected: null,
  filter: "",
  shownStamp: null,
  charts: [],
  seriesCache: new Map(),
  refreshing: false,
  dom: {},
};

// -- small helpers ----------------------------------------------------------

function el(tag, options = {}, children = []) {
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
function escapeRich(value) {
  return String(value).replace(/\{/g, "{\u200b");
}

// An axis label: the layer name as text, in the "hot" style when the finding names it.
function richLabel(name, hot, marker) {
  const text = escapeRich(name);
  return hot.has(name) && !/[{}|]/.test(name) ? `{hot|${marker}${text}}` : text;
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

// http_util.Respond writes NaN and ±Inf as strings.
function num(value) {
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  if (value === null || value === undefined) return NaN;
  return Number(value);
}

function fmt(value) {
  const v = num(value);
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "Inf" : "-Inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace(".0e", "e").replace("e+", "e");
  if (a >= 100) return Math.round(v).toLocaleString("en-US");
  return String(Number(v.toPrecision(3)));
}

async function fetchJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

function runStamp(entry) {
  if (!entry || entry.pending) return null;
  return [entry.max_step, entry.last_wall_time, entry.verdict, entry.findings_count, problemsOf(entry).length].join("|");
}

function shortName(tag) {
  return tag.startsWith("plateau/") ? tag.slice("plateau/".length) : null;
}

// -- IPC with the TensorBoard page: answer its "data reloaded" ----------------

function connectToHost(onReload) {
  if (window.parent === window) return;
  try {
    const channel = new MessageChannel();
    channel.port1.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (!message || message.isReply) return;
      if (message.type === "experimental.DataReloaded") onReload();
      channel.port1.postMessage(JSON.stringify({
        type: message.type, id: message.id, payload: null, error: null, isReply: true,
      }));
    };
    window.parent.postMessage("experimental.bootstrap", "*", [channel.port2]);
  } catch (e) {
    // Not embedded in TensorBoard (or a browser without MessageChannel): polling still works.
  }
}

// -- layout -------------------------------------------------------------------

function buildLayout() {
  const link = el("link", { attrs: { rel: "stylesheet", href: "./style.css" } });
  document.head.appendChild(link);
  const meta = el("meta", { attrs: { name: "viewport", content: "width=device-width, initial-scale=1" } });
  document.head.appendChild(meta);

  const filter = el("input", {
    className: "pl-filter",
    attrs: { type: "search", placeholder: "Filter runs", "aria-label": "Filter runs", id: "pl-filter" },
  });
  filter.addEventListener("input", () => {
    state.filter = filter.value;
    renderRunList();
  });
  const counts = el("div", { className: "pl-counts", attrs: { id: "pl-counts" } });
  const list = el("ul", { className: "pl-run-list", attrs: { role: "listbox", id: "pl-run-list" } });
  const sidebar = el("nav", { className: "pl-sidebar" }, [
    el("div", { className: "pl-sidebar-head" }, [
      el("h2", { className: "pl-sidebar-title", text: "Runs" }),
      filter,
      counts,
    ]),
    list,
  ]);
  const main = el("main", { className: "pl-main", attrs: { id: "pl-main" } });
  const app = el("div", { className: "pl-app" }, [sidebar, main]);
  document.body.appendChild(app);
  state.dom = { filter, counts, list, main };
}

// A run that could not be fully read is never shown as "healthy".
function shownVerdict(entry) {
  if (!entry) return null;
  if (entry.error && !entry.verdict) return "error";
  // The report's display status, computed once by the diagnosis for the CLI and the tab.
  if (entry.status) return entry.status;
  if (entry.incomplete && !entry.verdict) return "incomplete";
  return entry.verdict;
}

function badge(verdict) {
  if (verdict === "incomplete") return el("span", { className: "pl-badge pl-badge-incomplete", text: "not fully read" });
  const kind = verdict || "pending";
  const label = verdict || "diagnosing…";
  return el("span", { className: `pl-badge pl-badge-${kind}`, text: label });
}

function sortedRuns() {
  return [...state.runs].sort((a, b) => {
    const sa = SEVERITY_ORDER[shownVerdict(a)] ?? 5;
    const sb = SEVERITY_ORDER[shownVerdict(b)] ?? 5;
    return sa - sb || a.run.localeCompare(b.run);
  });
}

function renderRunList() {
  const { list, counts } = state.dom;
  const needle = state.filter.trim().toLowerCase();
  list.replaceChildren();
  const shown = sortedRuns().filter((entry) => !needle || entry.run.toLowerCase().includes(needle));
  for (const entry of shown) {
    const button = el("button", {
      className: "pl-run",
      attrs: {
        type: "button",
        role: "option",
        "aria-selected": String(entry.run === state.selected),
        "data-run": entry.run,
        title: entry.run,
      },
    }, [
      el("div", { className: "pl-run-line" }, [
        el("span", { className: "pl-run-name", text: entry.run }),
        entry.incomplete && shownVerdict(entry) !== "incomplete" ? badge("incomplete") : null,
        badge(shownVerdict(entry)),
      ]),
      el("div", {
        className: problemsOf(entry).length ? "pl-run-sub pl-run-sub-problem" : "pl-run-sub",
        text: runSubtitle(entry),
      }),
    ]);
    button.addEventListener("click", () => selectRun(entry.run));
    list.appendChild(el("li", {}, [button]));
  }
  if (!shown.length) {
    list.appendChild(el("li", {
      className: "pl-empty-list",
      text: state.runs.length ? "No run matches the filter." : "No runs yet.",
    }));
  }
  const tally = { critical: 0, warning: 0, incomplete: 0, healthy: 0 };
  for (const entry of state.runs) if (shownVerdict(entry) in tally) tally[shownVerdict(entry)] += 1;
  counts.replaceChildren(
    ...Object.entries(tally)
      .filter(([, n]) => n > 0)
      .map(([verdict, n]) => el("span", {
        className: `pl-badge pl-badge-${verdict}`,
        text: `${n} ${verdict === "incomplete" ? "not fully read" : verdict}`,
      })),
  );
}

// What could not be read or checked in a run (never a finding).
function problemsOf(entry) {
  return entry && Array.isArray(entry.problems) ? entry.problems : [];
}

// One line under a run's name: never "No problems found" for a run that
// could not be fully read.
function runSubtitle(entry) {
  if (entry.error && !entry.verdict) return entry.error;
  if (entry.pending && !entry.verdict && !entry.error) return "Diagnosing in the background…";
  const problems = problemsOf(entry);
  if (entry.top_finding) return entry.incomplete ? `${entry.top_finding.title} (not fully read)` : entry.top_finding.title;
  if (entry.incomplete) return `Not fully read: ${problems[0] || "part of this run could not be read"}`;
  if (problems.length) return `Note: ${problems[0]}`;
  return "No problems found";
}

function selectRun(run) {
  if (state.selected === run) return;
  state.selected = run;
  state.shownStamp = null;
  renderRunList();
  renderSelected();
}

// -- refresh ------------------------------------------------------------------

async function refresh() {
  if (state.refreshing) return;
  state.refreshing = true;
  try {
    const body = await fetchJson("./runs");
    state.runs = body.runs || [];
    const names = new Set(state.runs.map((r) => r.run));
    if (!state.selected || !names.has(state.selected)) {
      const first = sortedRuns()[0];
      state.selected = first ? first.run : null;
      state.shownStamp = null;
    }
    renderRunList();
    const entry = state.runs.find((r) => r.run === state.selected);
    if (runStamp(entry) !== state.shownStamp) await renderSelected();
    if (!state.runs.length) renderNoRuns();
    // Runs still being diagnosed in the background: ask again soon.
    if (state.runs.some((r) => r.pending)) setTimeout(refresh, PENDING_POLL_MS);
  } catch (error) {
    state.dom.main.replaceChildren(el("div", { className: "pl-error", text: `Could not load runs: ${error.message}` }));
  } finally {
    state.refreshing = false;
  }
}

function renderNoRuns() {
  state.dom.main.replaceChildren(el("div", { className: "pl-placeholder" }, [
    el("h2", { text: "No runs to diagnose yet" }),
    el("p", { text: "Record a training with tb_plateau's PlateauCallback, or log a loss scalar, into this logdir." }),
  ]));
}

function disposeCharts() {
  for (const { chart, observer } of state.charts) {
    observer.disconnect();
    chart.dispose();
  }
  state.charts = [];
}

async function renderSelected() {
  const run = state.selected;
  const entry = state.runs.find((r) => r.run === run);
  if (!entry) return;
  const { main } = state.dom;
  const scrollTop = main.scrollTop;
  const stamp = runStamp(entry);
  let report = null;
  let error = entry.error || null;
  // A pending run is diagnosed on request: the user need not wait for the queue.
  if (entry.verdict || entry.pending) {
    try {
      report = await fetchJson(`./diagnosis?run=${encodeURIComponent(run)}`);
    } catch (e) {
      error = e.message;
    }
  }
  if (state.selected !== run) return; // the user moved on meanwhile
  disposeCharts();
  state.seriesCache.clear();
  const content = el("div", { attrs: { "data-run": run } });
  content.appendChild(runHeader(entry, report));
  if (error) content.appendChild(el("div", { className: "pl-error", attrs: { role: "alert" }, text: error }));
  // What could not be read comes first and stands out; other notes follow.
  const problems = problemsOf(entry).filter((p) => p !== error);
  const incomplete = Boolean(entry.incomplete || (report && report.incomplete));
  if (problems.length || incomplete) {
    content.appendChild(el("section", { className: "pl-problems", attrs: { role: "alert" } }, [
      el("h3", {
        className: "pl-problems-title",
        text: incomplete ? "Part of this run could not be read: the diagnosis covers only what was read" : "Read with problems",
      }),
      el("ul", {}, problems.map((problem) => el("li", { text: problem }))),
    ]));
  }
  // From /runs: the report's notes less the problems above and their summary line.
  const notes = Array.isArray(entry.notes) ? entry.notes : [];
  if (notes.length) {
    content.appendChild(el("ul", { className: "pl-notes" }, notes.map((note) => el("li", { text: note }))));
  }
  const drawn = new Set();
  const pending = [];
  if (report) {
    const findings = report.findings || [];
    content.appendChild(el("h3", { className: "pl-section-title", text: findings.length ? "Findings, most likely cause first" : "Findings" }));
    if (!findings.length) content.appendChild(incomplete || error ? partialCard() : healthyCard());
    findings.forEach((finding, index) => {
      const card = findingCard(finding, index, (report.drawing || {})[finding.cause] || {});
      content.appendChild(card.node);
      for (const kind of card.kinds) drawn.add(kind);
      pending.push(...card.charts.map((spec) => ({ ...spec, finding })));
    });
  }
  const overview = overviewCharts(entry, drawn);
  if (overview.length) {
    content.appendChild(el("h3", { className: "pl-section-title", text: "Run overview" }));
    for (const spec of overview) {
      const card = el("section", { className: "pl-card" }, [el("h4", { className: "pl-card-title", text: spec.title })]);
      spec.container = el("div", { className: spec.tall ? "pl-chart pl-chart-tall" : "pl-chart" });
      spec.caption = el("p", { className: "pl-chart-caption" });
      card.append(spec.container, spec.caption);
      content.appendChild(card);
      pending.push({ ...spec, finding: null });
    }
  }
  main.replaceChildren(content);
  main.scrollTop = scrollTop;
  state.shownStamp = stamp;
  // Charts draw the loss curves the diagnosis read (the report names them).
  const drawnEntry = { ...entry, loss_series: report ? report.loss_series || null : null };
  await Promise.all(pending.map((spec) => drawChart(drawnEntry, spec)));
}

function runHeader(entry, report) {
  const meta = [];
  if (entry.max_step !== null && entry.max_step !== undefined) meta.push(`last step ${entry.max_step}`);
  if (entry.last_wall_time) meta.push(`updated ${new Date(entry.last_wall_time * 1000).toLocaleString()}`);
  if (entry.validation_run) meta.push(`validation: ${entry.validation_run}`);
  return el("header", { className: "pl-run-header" }, [
    el("h2", { className: "pl-run-title", text: entry.run }),
    badge(shownVerdict(report ? { ...entry, ...report, incomplete: entry.incomplete || report.incomplete } : entry)),
    el("span", { className: "pl-run-meta", text: meta.join(" · ") }),
  ]);
}

function healthyCard() {
  return el("section", { className: "pl-card pl-card-healthy" }, [
    el("div", { className: "pl-healthy-card" }, [
      badge("healthy"),
      el("span", { text: "No problem found: the loss is going down and the recorded statistics look normal." }),
    ]),
  ]);
}

function partialCard() {
  return el("section", { className: "pl-card pl-card-partial" }, [
    el("div", { className: "pl-healthy-card" }, [
      el("span", { className: "pl-badge pl-badge-incomplete", text: "not fully read" }),
      el("span", { text: "No problem found in the part of this run that could be read. That is not a clean bill of health: see above for what is missing." }),
    ]),
  ]);
}

// -- finding cards ------------------------------------------------------------

// Which chart draws each series; the evidence names series by tag.
function chartKind(tag) {
  const name = shortName(tag);
  if (name === "grad_norm") return "grad";
  if (name === "act_dead_fraction" || name === "act_saturated_fraction") return "activations";
  if (name === "update_ratio") return "ratio";
  if (name === "config") return "config";
  if (name === "learning_rate") return "lr";
  if (tag.toLowerCase().includes("loss")) return "loss";
  if (name && name !== "batch_loss") return `vector:${tag}`;
  return `scalar:${tag}`;
}

const KIND_TITLES = {
  loss: "Training and validation loss",
  grad: "Gradient norm per layer (log scale)",
  activations: "Dead and saturated units per layer",
  ratio: "Update/weight ratio per layer",
  config: "Configuration record",
  lr: "Learning rate",
};

// Titles of per-layer (or per-statistic) series drawn at their last record.
const VECTOR_TITLES = {
  output_stats: "The model's output (last recorded batch)",
  grad_zero_count: "Gradient entries exactly zero, per layer",
  grad_missing: "Variables without a gradient, per layer",
  act_std: "Spread of each layer's outputs",
  weight_norm: "Weight norm per layer",
};

function chartTitle(kind) {
  if (KIND_TITLES[kind]) return KIND_TITLES[kind];
  if (kind.startsWith("vector:")) {
    const name = shortName(kind.slice(7)) || kind.slice(7);
    return VECTOR_TITLES[name] || `${name} per layer (last record)`;
  }
  if (kind.startsWith("scalar:")) return kind.slice(7);
  return kind;
}

function findingKinds(finding, drawing) {
  const evidence = finding.evidence || {};
  const tags = Array.isArray(evidence.series) ? evidence.series.filter((t) => typeof t === "string") : [];
  const kinds = [];
  for (const tag of tags) {
    const kind = chartKind(tag);
    if (!kinds.includes(kind)) kinds.push(kind);
  }
  if (!kinds.length) kinds.push(...(drawing.charts || []));
  return { kinds, tags };
}

function findingCard(finding, index, drawing) {
  const severity = finding.severity || "info";
  const node = el("section", { className: `pl-card pl-card-${severity}`, attrs: { "data-cause": finding.cause || "" } });
  const confidence = Math.round(100 * (num(finding.confidence) || 0));
  node.appendChild(el("div", { className: "pl-card-head" }, [
    el("span", { className: "pl-rank", text: `#${index + 1}` }),
    el("h3", { className: "pl-card-title", text: finding.title || finding.cause }),
    badge(severity),
    el("span", { className: "pl-confidence", attrs: { title: "How sure the diagnosis is" } }, [
      el("span", { className: "pl-confidence-bar" }, [
        el("span", { className: "pl-confidence-fill", attrs: { style: `display:block;width:${confidence}%` } }),
      ]),
      el("span", { text: `${confidence}% confident` }),
    ]),
  ]));
  node.appendChild(el("p", { className: "pl-explanation", text: finding.explanation || "" }));
  const facts = [el("span", { className: "pl-fact pl-cause-id", text: finding.cause })];
  if (finding.first_step !== null && finding.first_step !== undefined) {
    facts.push(el("span", { className: "pl-fact", text: `from step ${finding.first_step}` }));
  }
  const layers = finding.layers || [];
  if (layers.length) {
    const shown = layers.slice(0, 6).join(", ") + (layers.length > 6 ? ` and ${layers.length - 6} more` : "");
    facts.push(el("span", { className: "pl-fact", text: `layers: ${shown}` }));
  }
  node.appendChild(el("div", { className: "pl-facts" }, facts));

  const { kinds, tags } = findingKinds(finding, drawing);
  const charts = [];
  for (const kind of kinds) {
    const container = el("div", { className: kind === "grad" ? "pl-chart pl-chart-tall" : "pl-chart" });
    const caption = el("p", { className: "pl-chart-caption" });
    if (kind === "config") container.className = "pl-config-wrap";
    const title = chartTitle(kind);
    node.append(el("h4", { className: "pl-chart-title", text: title }), container, caption);
    charts.push({ kind, tags, container, caption, title, drawing });
  }

  const fixes = finding.fixes || [];
  if (fixes.length) {
    node.appendChild(el("h4", { className: "pl-fixes-title", text: fixes.length > 1 ? "Fixes to try" : "Fix to try" }));
    for (const fix of fixes) node.appendChild(fixBlock(fix));
  }
  return { node, kinds, charts };
}

function fixBlock(text) {
  const code = el("code", { text });
  const pre = el("pre", {}, [code]);
  const button = el("button", { className: "pl-copy", text: "Copy", attrs: { type: "button", "aria-label": "Copy fix" } });
  button.addEventListener("click", async () => {
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (e) {
      // The iframe may lack clipboard permission: fall back to a selection.
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try {
        copied = document.execCommand("copy");
      } catch (e2) {
        copied = false;
      }
    }
    button.textContent = copied ? "Copied" : "Select + Ctrl+C";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  return el("div", { className: "pl-fix" }, [pre, button]);
}

function overviewCharts(entry, drawn) {
  const available = new Set(entry.series || []);
  const specs = [];
  const add = (kind, tall) => {
    if (!drawn.has(kind)) specs.push({ kind, tags: [], title: KIND_TITLES[kind], tall });
  };
  if ((entry.series || []).some((t) => t.toLowerCase().includes("loss"))) add("loss");
  if (available.has("plateau/grad_norm")) add("grad", true);
  if (available.has("plateau/act_dead_fraction") || available.has("plateau/act_saturated_fraction")) add("activations");
  if (available.has("plateau/update_ratio")) add("ratio");
  if (available.has("plateau/learning_rate")) add("lr");
  if (available.has("plateau/config")) {
    // Always once, below: folded when a finding card already showed part of it.
    specs.push({ kind: "config", tags: [], title: KIND_TITLES.config, folded: drawn.has("config") });
  }
  return specs;
}

// -- data ---------------------------------------------------------------------

async function series(run, tag) {
  const key = `${run}\u0000${tag}`;
  if (!state.seriesCache.has(key)) {
    state.seriesCache.set(key, fetchJson(`./series?run=${encodeURIComponent(run)}&tag=${encodeURIComponent(tag)}`));
  }
  return state.seriesCache.get(key);
}

function lossTags(entry) {
  const tags = entry.series || [];
  const lower = (t) => t.toLowerCase();
  const isVal = (t) => /(^|[/_.])val(idation)?([/_.]|$)|val_loss|validation/.test(lower(t));
  const line = (run, tag, name, color, width, symbols) => ({ run, tag, name, color, width, symbols });
  const lines = [];
  const diagnosed = entry.loss_series;
  if (diagnosed && diagnosed.train) {
    // The curves the diagnosis read, and tb_plateau's epoch means beside its batch losses.
    const train = diagnosed.train;
    const perBatch = train.tag === "plateau/batch_loss";
    const trainName = perBatch ? "train (batch)" : train.tag === "plateau/epoch/loss" ? "train (epoch)" : "train";
    lines.push(line(train.run, train.tag, trainName, COLORS.train, perBatch ? 1.2 : 2, !perBatch));
    if (perBatch && tags.includes("plateau/epoch/loss")) {
      lines.push(line(entry.run, "plateau/epoch/loss", "train (epoch)", COLORS.trainEpoch, 2.2, true));
    }
    if (diagnosed.validation) {
      lines.push(line(diagnosed.validation.run, diagnosed.validation.tag, "validation", COLORS.validation, 2.2, true));
    }
    return lines;
  }
  // tb_plateau's own losses share one axis: the global training step.
  if (tags.some((t) => t.startsWith("plateau/") && lower(t).includes("loss"))) {
    if (tags.includes("plateau/batch_loss")) lines.push(line(entry.run, "plateau/batch_loss", "train (batch)", COLORS.train, 1.2, false));
    if (tags.includes("plateau/epoch/loss")) lines.push(line(entry.run, "plateau/epoch/loss", "train (epoch)", COLORS.trainEpoch, 2.2, true));
    if (tags.includes("plateau/epoch/val_loss")) lines.push(line(entry.run, "plateau/epoch/val_loss", "validation", COLORS.validation, 2.2, true));
    return lines;
  }
  // Otherwise the run's own loss scalars (Keras' TensorBoard callback writes
  // "epoch_loss" into …/train and …/validation, stepped by epoch).
  const train = tags.find((t) => t === "epoch_loss") || tags.find((t) => lower(t).includes("loss") && !isVal(t));
  if (train) lines.push(line(entry.run, train, "train", COLORS.train, 2, true));
  const val = tags.find((t) => lower(t).includes("loss") && isVal(t));
  if (val) lines.push(line(entry.run, val, "validation", COLORS.validation, 2, true));
  else if (entry.validation_run && train) lines.push(line(entry.validation_run, train, "validation", COLORS.validation, 2, true));
  return lines;
}

// Regions and steps a finding points at: explicit [start, end] pairs under
// keys naming a region, step lists under "*_steps", and otherwise the span
// from first_step (or best_val_step) to the last recorded step.
function evidenceMarks(finding, lastStep, drawing = {}) {
  const regions = [];
  const points = [];
  if (!finding) return { regions, points };
  const evidence = finding.evidence || {};
  const isPair = (v) => Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === "number");
  for (const [key, value] of Object.entries(evidence)) {
    const k = key.toLowerCase();
    const regionKey = /(region|range|window|plateau|interval|span)/.test(k);
    if (regionKey && isPair(value)) regions.push({ name: key.replace(/_/g, " "), from: value[0], to: value[1] });
    else if (regionKey && Array.isArray(value) && value.every(isPair)) {
      for (const pair of value.slice(0, 20)) regions.push({ name: key.replace(/_/g, " "), from: pair[0], to: pair[1] });
    } else if (/steps$/.test(k) && Array.isArray(value) && value.every((v) => typeof v === "number")) {
      for (const step of value.slice(0, 50)) points.push({ name: key.replace(/_/g, " "), step });
    }
  }
  const start = typeof evidence.best_val_step === "number" ? evidence.best_val_step : finding.first_step;
  const label = drawing.region;
  if (!regions.length && label && typeof start === "number" && typeof lastStep === "number" && lastStep > start) {
    regions.push({ name: label, from: start, to: lastStep });
  }
  return { regions, points };
}

// -- charts -------------------------------------------------------------------

function makeChart(container) {
  const chart = echarts.init(container, null, { renderer: "canvas" });
  const observer = new ResizeObserver(() => chart.resize());
  observer.observe(container);
  state.charts.push({ chart, observer });
  return chart;
}

const TEXT_STYLE = { fontFamily: "Roboto, Helvetica Neue, Arial, sans-serif", color: "#424242" };

async function drawChart(entry, spec) {
  try {
    if (spec.kind === "loss") await drawLoss(entry, spec);
    else if (spec.kind === "grad") await drawGradHeatmap(entry, spec, "plateau/grad_norm");
    else if (spec.kind === "activations") await drawActivations(entry, spec);
    else if (spec.kind === "ratio") await drawRatio(entry, spec);
    else if (spec.kind === "config") await drawConfig(entry, spec);
    else if (spec.kind === "lr") await drawScalar(entry, spec, "plateau/learning_rate", "learning rate");
    else if (spec.kind.startsWith("vector:")) await drawLatestVector(entry, spec, spec.kind.slice(7));
    else if (spec.kind.startsWith("scalar:")) await drawScalar(entry, spec, spec.kind.slice(7), spec.kind.slice(7));
  } catch (error) {
    spec.container.replaceChildren();
    spec.container.className = "";
    spec.caption.textContent = `Chart unavailable: ${error.message}`;
  }
}

function baseOption(extra) {
  return {
    animation: false,
    textStyle: TEXT_STYLE,
    grid: { left: 64, right: 24, top: 36, bottom: 48, containLabel: false },
    ...extra,
  };
}

function toPoints(body) {
  const pts = [];
  const nonfinite = [];
  body.steps.forEach((step, i) => {
    const v = num(body.values[i]);
    if (Number.isFinite(v)) pts.push([step, v]);
    else {
      pts.push([step, null]);
      nonfinite.push(step);
    }
  });
  return { pts, nonfinite };
}

async function drawLoss(entry, spec) {
  const lines = lossTags(entry);
  if (!lines.length) throw new Error("this run records no loss");
  // Which curves this chart shows, for a reader (and the browser tests).
  spec.container.dataset.series = JSON.stringify(lines.map((l) => [l.run, l.tag]));
  const bodies = await Promise.all(lines.map((line) => series(line.run, line.tag).catch(() => null)));
  const firstStep = spec.finding ? spec.finding.first_step : null;
  const chartSeries = [];
  const nonfiniteSteps = [];
  let positive = true;
  lines.forEach((line, i) => {
    const body = bodies[i];
    if (!body || body.kind !== "scalar") return;
    const { pts, nonfinite } = toPoints(body);
    nonfiniteSteps.push(...nonfinite);
    for (const [, v] of pts) if (v !== null && v <= 0) positive = false;
    chartSeries.push({
      type: "line",
      name: line.name,
      data: pts,
      showSymbol: Boolean(line.symbols) && pts.length < 60,
      symbolSize: 5,
      connectNulls: false,
      lineStyle: { width: line.width, color: line.color },
      itemStyle: { color: line.color },
      emphasis: { disabled: true },
    });
  });
  if (!chartSeries.length) throw new Error("the loss series could not be read");
  const lastStep = Math.max(...chartSeries.map((s) => (s.data.length ? s.data[s.data.length - 1][0] : -Infinity)), ...nonfiniteSteps);
  const { regions, points } = evidenceMarks(spec.finding, lastStep, spec.drawing);
  const marks = { silent: false };
  const markLines = [];
  if (firstStep !== null && firstStep !== undefined) {
    markLines.push({ xAxis: firstStep, name: "cause begins", lineStyle: { color: COLORS.critical, type: "dashed", width: 1.5 },
      label: { formatter: `cause begins: step ${firstStep}`, color: COLORS.critical, position: "insideStartBottom" } });
  }
  for (const p of points.slice(0, 30)) {
    markLines.push({ xAxis: p.step, lineStyle: { color: COLORS.warning, type: "dotted" }, label: { show: false } });
  }
  const evidence = (spec.finding && spec.finding.evidence) || {};
  if (typeof evidence.best_val_step === "number") {
    markLines.push({ xAxis: evidence.best_val_step, lineStyle: { color: COLORS.validation, type: "dashed" },
      label: { formatter: "best validation", color: COLORS.validation, position: "end" } });
  }
  if (nonfiniteSteps.length) {
    // Where the loss became NaN/Inf the curve stops: shade what follows.
    const first = Math.min(...nonfiniteSteps);
    const end = Math.max(...nonfiniteSteps);
    if (!regions.some((r) => r.from <= first && r.to >= first)) {
      regions.push({ name: "NaN/Inf", from: first, to: Math.max(end, lastStep) });
    }
    markLines.push({ xAxis: first, lineStyle: { color: COLORS.critical, width: 2 },
      label: { formatter: `loss NaN/Inf from step ${first}`, color: COLORS.critical, position: "insideEndTop" } });
  }
  chartSeries[0].markLine = { ...marks, symbol: "none", data: markLines };
  chartSeries[0].markArea = {
    silent: true,
    itemStyle: { color: COLORS.region },
    label: { color: COLORS.critical, fontSize: 11 },
    data: regions.map((r) => [{ xAxis: r.from, name: r.name }, { xAxis: r.to }]),
  };
  // A log axis helps when the loss spans decades; on a narrow range it only
  // squashes the curve.
  const finite = chartSeries.flatMap((s) => s.data.map((p) => p[1]).filter((v) => v !== null));
  const logScale = positive && finite.length > 0 && Math.max(...finite) / Math.min(...finite) > 30;
  const chart = makeChart(spec.container);
  chart.setOption(baseOption({
    legend: { top: 4, right: 8, textStyle: TEXT_STYLE },
    tooltip: { trigger: "axis", valueFormatter: (v) => fmt(v) },
    xAxis: { type: "value", name: "step", nameLocation: "middle", nameGap: 28, min: "dataMin", max: "dataMax", axisLabel: { hideOverlap: true } },
    yAxis: { type: logScale ? "log" : "value", scale: true, axisLabel: { formatter: (v) => fmt(v) } },
    dataZoom: [{ type: "inside" }],
    series: chartSeries,
  }));
  const notes = [];
  if (regions.length) notes.push(`shaded: ${regions.map((r) => `${r.name} (steps ${r.from}–${r.to})`).slice(0, 3).join(", ")}`);
  if (points.length) notes.push(`dotted: ${points[0].name}`);
  if (firstStep !== null && firstStep !== undefined) notes.push(`dashed line: the cause begins at step ${firstStep}`);
  if (logScale) notes.push("log scale");
  spec.caption.textContent = notes.join(" · ");
}

async function drawGradHeatmap(entry, spec, tag) {
  const body = await series(entry.run, tag);
  if (body.kind !== "vector") throw new Error(`${tag} is not a per-layer series`);
  const layers = body.labels;
  const hot = new Set(spec.finding ? spec.finding.layers || [] : []);
  const cells = [];
  const zeros = [];
  let lo = Infinity;
  let hi = -Infinity;
  body.values.forEach((row, i) => {
    row.forEach((raw, j) => {
      const v = num(raw);
      if (v > 0 && Number.isFinite(v)) {
        const lv = Math.log10(v);
        cells.push([i, j, lv]);
        lo = Math.min(lo, lv);
        hi = Math.max(hi, lv);
      } else if (v === 0) {
        zeros.push([i, j, 0]);
      } else if (!Number.isFinite(v)) {
        zeros.push([i, j, NaN]);
      }
    });
  });
  if (!Number.isFinite(lo)) {
    lo = -1;
    hi = 0;
  }
  if (hi - lo < 1) hi = lo + 1;
  const steps = body.steps.map(String);
  const tooltip = {
    formatter: (p) => {
      const [i, j, v] = p.data;
      const value = p.seriesIndex === 1 ? (Number.isNaN(v) ? "NaN/Inf" : "exactly 0") : fmt(10 ** v);
      return `${escapeHtml(layers[j])}<br/>step ${escapeHtml(steps[i])}: <b>${escapeHtml(value)}</b>`;
    },
  };
  const chart = makeChart(spec.container);
  const labelWidth = Math.min(200, 30 + 7 * Math.max(...layers.map((l) => l.length), 4));
  chart.setOption(baseOption({
    grid: { left: labelWidth, right: 90, top: 16, bottom: 48 },
    tooltip,
    xAxis: { type: "category", data: steps, name: "step", nameLocation: "middle", nameGap: 28, splitArea: { show: false }, axisLabel: { hideOverlap: true } },
    yAxis: {
      type: "category",
      data: layers,
      inverse: true, // model order, input layer on top
      axisLabel: {
        interval: layers.length > 30 ? "auto" : 0,
        width: labelWidth - 12,
        overflow: "truncate",
        formatter: (name) => richLabel(name, hot, "▶ "),
        rich: { hot: { color: COLORS.critical, fontWeight: "bold" } },
      },
    },
    visualMap: {
      seriesIndex: 0,
      min: lo,
      max: hi,
      calculable: true,
      orient: "vertical",
      right: 4,
      top: "middle",
      itemHeight: 160,
      text: [`1e${Math.ceil(hi)}`, `1e${Math.floor(lo)}`],
      formatter: (v) => fmt(10 ** v),
      inRange: { color: HEATMAP_RAMP },
      textStyle: TEXT_STYLE,
    },
    series: [
      { type: "heatmap", data: cells, progressive: 0, emphasis: { itemStyle: { borderColor: "#000", borderWidth: 1 } } },
      { type: "heatmap", data: zeros, itemStyle: { color: COLORS.zero }, progressive: 0 },
    ],
  }));
  const notes = [`colour: log10 of ${shortName(tag) || tag}`, "layers top to bottom in model order"];
  if (zeros.length) notes.push("grey: exactly zero or non-finite");
  if (hot.size) notes.push("▶ red: layers named by the finding");
  spec.caption.textContent = notes.join(" · ");
}

function lastFiniteRow(body) {
  for (let i = body.values.length - 1; i >= 0; i--) {
    const row = body.values[i].map(num);
    if (row.some(Number.isFinite)) return { row, step: body.steps[i] };
  }
  return null;
}

// A category axis of layer names in model order; the finding's layers in red.
function layerAxis(labels, hot) {
  return {
    type: "category",
    data: labels,
    axisLabel: {
      rotate: labels.length > 6 ? 30 : 0,
      interval: 0,
      width: 110,
      overflow: "truncate",
      formatter: (name) => richLabel(name, hot, ""),
      rich: { hot: { color: COLORS.critical, fontWeight: "bold" } },
    },
  };
}

async function drawActivations(entry, spec) {
  const available = new Set(entry.series || []);
  const wanted = [
    ["plateau/act_dead_fraction", "dead (never active)", COLORS.critical],
    ["plateau/act_saturated_fraction", "saturated", COLORS.warning],
  ].filter(([tag]) => available.has(tag));
  if (!wanted.length) throw new Error("this run records no activation statistics");
  const bodies = await Promise.all(wanted.map(([tag]) => series(entry.run, tag)));
  const layers = [];
  for (const body of bodies) for (const l of body.labels) if (!layers.includes(l)) layers.push(l);
  const hot = new Set(spec.finding ? spec.finding.layers || [] : []);
  let step = null;
  let activationNames = {};
  const chartSeries = bodies.map((body, k) => {
    const last = lastFiniteRow(body);
    if (last) step = last.step;
    const fns = body.header && Array.isArray(body.header.activations) ? body.header.activations : [];
    body.labels.forEach((l, i) => { if (fns[i]) activationNames[l] = String(fns[i]); });
    const byLayer = new Map(body.labels.map((l, i) => [l, last ? last.row[i] : NaN]));
    return {
      type: "bar",
      name: wanted[k][1],
      barMaxWidth: 28,
      itemStyle: { color: wanted[k][2] },
      data: layers.map((l) => {
        const v = byLayer.has(l) ? byLayer.get(l) : NaN;
        return Number.isFinite(v) ? v : null;
      }),
    };
  });
  const chart = makeChart(spec.container);
  chart.setOption(baseOption({
    legend: { top: 4, right: 8, textStyle: TEXT_STYLE },
    grid: { left: 56, right: 24, top: 36, bottom: layers.length > 6 ? 72 : 40 },
    tooltip: {
      trigger: "axis",
      formatter: (items) => {
        const layer = items[0].name;
        const fn = activationNames[layer] ? ` (${activationNames[layer]})` : "";
        const lines = items.map((it) => `${escapeHtml(it.seriesName)}: <b>${it.value === null ? "n/a" : escapeHtml((100 * it.value).toFixed(1))}%</b>`);
        return `${escapeHtml(layer + fn)}<br/>${lines.join("<br/>")}`;
      },
    },
    xAxis: layerAxis(layers, hot),
    yAxis: { type: "value", min: 0, max: 1, name: "fraction of units", axisLabel: { formatter: (v) => `${Math.round(v * 100)}%` } },
    series: chartSeries,
  }));
  spec.caption.textContent = `At step ${step === null ? "n/a" : step}; layers in model order` +
    (hot.size ? "; red labels: layers named by the finding" : "");
}

async function drawRatio(entry, spec) {
  const body = await series(entry.run, "plateau/update_ratio");
  if (body.kind !== "vector") throw new Error("plateau/update_ratio is not a per-layer series");
  const hot = new Set(spec.finding ? spec.finding.layers || [] : []);
  // The median over the last quarter of the recorded steps: what the
  // optimizer does now, not during warm-up.
  const data = body.labels.map((layer, j) => {
    const usable = body.values.map((row) => num(row[j])).filter((v) => Number.isFinite(v) && v > 0);
    const recent = usable.slice(Math.floor(usable.length * 0.75)).sort((a, b) => a - b);
    const median = recent.length ? recent[Math.floor(recent.length / 2)] : null;
    let color = COLORS.healthy;
    if (median !== null && median > RATIO_BAND[1]) color = COLORS.critical;
    else if (median !== null && median < RATIO_BAND[0]) color = COLORS.info;
    return {
      value: [layer, median],
      itemStyle: { color, borderColor: hot.has(layer) ? "#000" : color, borderWidth: hot.has(layer) ? 2 : 0 },
    };
  }).filter((d) => d.value[1] !== null);
  if (!data.length) throw new Error("no positive update/weight ratio recorded");
  const values = data.map((d) => d.value[1]);
  const lo = Math.min(RATIO_BAND[0] / 10, ...values);
  const hi = Math.max(RATIO_BAND[1] * 10, ...values);
  const chart = makeChart(spec.container);
  chart.setOption(baseOption({
    grid: { left: 64, right: 24, top: 24, bottom: body.labels.length > 6 ? 72 : 40 },
    tooltip: {
      formatter: (p) => `${escapeHtml(p.value[0])}<br/>update/weight ratio: <b>${escapeHtml(fmt(p.value[1]))}</b>`,
    },
    xAxis: layerAxis(body.labels, hot),
    yAxis: {
      type: "log",
      min: 10 ** Math.floor(Math.log10(lo)),
      max: 10 ** Math.ceil(Math.log10(hi)),
      name: "‖ΔW‖ / ‖W‖ per step",
      axisLabel: { formatter: (v) => fmt(v) },
    },
    series: [{
      type: "scatter",
      symbolSize: 14,
      data,
      markArea: {
        silent: true,
        itemStyle: { color: COLORS.band },
        label: { show: true, position: "insideTopLeft", color: COLORS.healthy, formatter: "healthy band" },
        data: [[{ yAxis: RATIO_BAND[0] }, { yAxis: RATIO_BAND[1] }]],
      },
      markLine: {
        silent: true,
        symbol: "none",
        lineStyle: { color: COLORS.healthy, type: "dashed" },
        label: { formatter: "1e-3", color: COLORS.healthy },
        data: [{ yAxis: RATIO_TARGET }],
      },
    }],
  }));
  spec.caption.textContent = "Median over the last quarter of the steps with a finite ratio. Green band: 1e-4 to 1e-2 " +
    "(about 1e-3 is healthy); red: steps too large; blue: steps too small.";
}

// Any other per-layer statistic: its latest recorded values, one bar per entry.
async function drawLatestVector(entry, spec, tag) {
  const body = await series(entry.run, tag);
  if (body.kind !== "vector") throw new Error(`${tag} is not a per-layer series`);
  const last = lastFiniteRow(body);
  if (!last) throw new Error(`${tag} has no finite values`);
  const hot = new Set(spec.finding ? spec.finding.layers || [] : []);
  const chart = makeChart(spec.container);
  chart.setOption(baseOption({
    grid: { left: 64, right: 24, top: 24, bottom: body.labels.length > 6 ? 72 : 40 },
    tooltip: {
      trigger: "axis",
      formatter: (items) => `${escapeHtml(items[0].name)}<br/>${escapeHtml(shortName(tag) || tag)}: <b>${escapeHtml(fmt(items[0].value))}</b>`,
    },
    xAxis: layerAxis(body.labels, hot),
    yAxis: { type: "value", axisLabel: { formatter: (v) => fmt(v) } },
    series: [{
      type: "bar",
      barMaxWidth: 36,
      data: last.row.map((v, i) => ({
        value: Number.isFinite(v) ? v : null,
        itemStyle: { color: hot.has(body.labels[i]) ? COLORS.critical : ACCENT },
      })),
    }],
  }));
  const byLayer = !isStatisticVector(tag);
  spec.caption.textContent = byLayer
    ? `${shortName(tag) || tag} at step ${last.step}` + (hot.size ? "; red: layers named by the finding" : "")
    : `At step ${last.step}, over the recorded batch: the output's smallest, largest and mean value, and its row sums`;
}

// Vectors whose entries are statistics of one thing (the model's output), not layers.
function isStatisticVector(tag) {
  return shortName(tag) === "output_stats";
}

async function drawScalar(entry, spec, tag, label) {
  const body = await series(entry.run, tag);
  if (body.kind !== "scalar") throw new Error(`${tag} is not a scalar series`);
  const { pts } = toPoints(body);
  const chart = makeChart(spec.container);
  chart.setOption(baseOption({
    tooltip: { trigger: "axis", valueFormatter: (v) => fmt(v) },
    xAxis: { type: "value", name: "step", nameLocation: "middle", nameGap: 28, min: "dataMin", max: "dataMax", axisLabel: { hideOverlap: true } },
    yAxis: { type: "value", name: label, scale: true, axisLabel: { formatter: (v) => fmt(v) } },
    series: [{ type: "line", name: label, data: pts, showSymbol: false, lineStyle: { color: ACCENT, width: 1.8 }, itemStyle: { color: ACCENT } }],
  }));
  spec.caption.textContent = `${tag} over ${body.total_points} recorded points`;
}

// -- the configuration record ---------------------------------------------------

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function cellText(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string") return value;
  if (typeof value === "number") return fmt(value);
  if (Array.isArray(value) && value.length > 6 && value.every((v) => typeof v === "number" || typeof v === "string")) {
    const nums = value.map(num).filter(Number.isFinite);
    if (nums.length === value.length) {
      return `${value.length} values, ${fmt(Math.min(...nums))} … ${fmt(Math.max(...nums))}`;
    }
  }
  let text = JSON.stringify(value);
  if (text === undefined) text = String(value);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

function keyValueRows(value, prefix, rows) {
  for (const [key, item] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isPlainObject(item)) keyValueRows(item, path, rows);
    else if (item !== null && item !== undefined) rows.push([path, item]);
  }
  return rows;
}

// A key shown as text that may wrap only after "." and "_" (never mid-word).
function breakableKey(key) {
  const parts = String(key).split(/(?<=[._])/);
  const nodes = [];
  parts.forEach((part, i) => {
    nodes.push(document.createTextNode(part));
    if (i < parts.length - 1) nodes.push(document.createElement("wbr"));
  });
  return nodes;
}

function kvTable(rows, hotPaths) {
  const tbody = el("tbody");
  for (const [key, value] of rows) {
    tbody.appendChild(el("tr", { className: hotPaths.has(key) ? "pl-row-hot" : "" }, [
      el("th", { attrs: { scope: "row" } }, breakableKey(key)),
      el("td", { text: cellText(value) }),
    ]));
  }
  return el("table", { className: "pl-table" }, [tbody]);
}

// A list of records (layers, inputs) as one table, a column per field.
function recordsTable(records, hotRows) {
  const columns = [];
  for (const record of records) {
    for (const key of Object.keys(record)) {
      if (!columns.includes(key) && !(key === "path" && records.every((r) => r.path === r.name)) &&
          !(key === "nested" && records.every((r) => !r.nested))) {
        columns.push(key);
      }
    }
  }
  const head = el("tr", {}, columns.map((c) => el("th", { attrs: { scope: "col" } }, breakableKey(c))));
  const tbody = el("tbody");
  records.forEach((record, i) => {
    tbody.appendChild(el("tr", { className: hotRows.has(i) ? "pl-row-hot" : "" },
      columns.map((c) => el("td", { text: cellText(record[c]) }))));
  });
  return el("table", { className: "pl-table pl-table-records" }, [el("thead", {}, [head]), tbody]);
}

// For a finding: the sections its check looked at (the whole record is shown
// once, in the run overview). Without one: the whole record.
function configView(config, finding, drawing = {}) {
  const focus = {
    sections: finding ? drawing.config_sections || [] : [],
    lastLayer: Boolean(finding && drawing.output_layer),
  };
  const focused = Boolean(finding) && focus.sections.some((key) => key in config);
  const evidence = (finding && finding.evidence) || {};
  const hotPaths = new Set();
  for (const [key, value] of Object.entries(evidence)) {
    hotPaths.add(key);
    if (typeof value === "string") hotPaths.add(value);
  }
  const hotLayers = new Set(finding ? finding.layers || [] : []);
  const general = [];
  const sections = [];
  const redundant = Array.isArray(config.layers) ? new Set(["trainable_layers", "activation_layers"]) : new Set();
  for (const [key, value] of Object.entries(config)) {
    if (redundant.has(key)) continue;
    if (isPlainObject(value) || (Array.isArray(value) && value.length && value.every(isPlainObject))) {
      sections.push([key, value]);
    } else {
      general.push([key, value]);
    }
  }
  const wrap = el("div", { className: "pl-config" });
  const addSection = (title, body, hot) => {
    const classes = ["pl-config-section"];
    if (hot) classes.push("pl-config-hot");
    if (body.classList.contains("pl-table-records")) classes.push("pl-config-wide");
    wrap.appendChild(el("section", { className: classes.join(" ") }, [
      el("h5", { className: "pl-config-title", text: title }),
      el("div", { className: "pl-table-wrap" }, [body]),
    ]));
  };
  const generalHot = general.some(([k]) => focus.sections.includes(k));
  if (general.length && (!focused || generalHot)) {
    const shown = focused ? general.filter(([k]) => focus.sections.includes(k)) : general;
    addSection("run", kvTable(shown, hotPaths), generalHot);
  }
  for (const [key, value] of sections) {
    const hot = focus.sections.includes(key);
    if (focused && !hot) continue;
    if (Array.isArray(value)) {
      const hotRows = new Set();
      value.forEach((record, i) => {
        if (hotLayers.has(record.name) || hotLayers.has(record.layer)) hotRows.add(i);
        if (key === "layers" && focus.lastLayer && i === value.length - 1) hotRows.add(i);
      });
      addSection(key, recordsTable(value, hotRows), hot);
    } else {
      const nested = Object.entries(value).filter(([, v]) => Array.isArray(v) && v.length && v.every(isPlainObject));
      const flat = Object.fromEntries(Object.entries(value).filter(([, v]) => !(Array.isArray(v) && v.length && v.every(isPlainObject))));
      const rows = keyValueRows(flat, "", []);
      if (rows.length) addSection(key, kvTable(rows, hotPaths), hot);
      for (const [sub, records] of nested) addSection(`${key}.${sub}`, recordsTable(records, new Set()), hot);
    }
  }
  return wrap;
}

async function drawConfig(entry, spec) {
  const body = await series(entry.run, "plateau/config");
  spec.container.className = "pl-config-wrap";
  const view = configView(body.config || {}, spec.finding, spec.drawing);
  if (spec.folded) {
    // A finding card already shows the part it checked: the whole record, folded.
    const details = el("details", { className: "pl-config-whole" }, [
      el("summary", { text: "Show the whole configuration record" }),
      view,
    ]);
    spec.container.replaceChildren(details);
  } else {
    spec.container.replaceChildren(view);
  }
  spec.caption.textContent = spec.finding
    ? "The part of the configuration record this check looked at (highlighted)."
    : "What the recorder saw about the model, loss, optimizer and data.";
}

// -- entry point --------------------------------------------------------------

export async function render() {
  buildLayout();
  connectToHost(() => refresh());
  await refresh();
  setInterval(() => {
    if (document.visibilityState !== "hidden") refresh();
  }, POLL_INTERVAL_MS);
}
