// Finding cards: title, explanation, facts, the charts each finding wants, fixes.

import { el, num, shortName } from "./common.js";
import { badge, shownVerdict } from "./runlist.js";

export function runHeader(entry, report) {
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

export function healthyCard() {
  return el("section", { className: "pl-card pl-card-healthy" }, [
    el("div", { className: "pl-healthy-card" }, [
      badge("healthy"),
      el("span", { text: "No problem found: the loss is going down and the recorded statistics look normal." }),
    ]),
  ]);
}

export function partialCard() {
  return el("section", { className: "pl-card pl-card-partial" }, [
    el("div", { className: "pl-healthy-card" }, [
      el("span", { className: "pl-badge pl-badge-incomplete", text: "not fully read" }),
      el("span", { text: "No problem found in the part of this run that could be read. That is not a clean bill of health: see above for what is missing." }),
    ]),
  ]);
}

// -- finding cards ------------------------------------------------------------

// Which chart draws each series; the evidence names series by tag.
export function chartKind(tag) {
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

export const KIND_TITLES = {
  loss: "Training and validation loss",
  grad: "Gradient norm per layer (log scale)",
  activations: "Dead and saturated units per layer",
  ratio: "Update/weight ratio per layer",
  config: "Configuration record",
  lr: "Learning rate",
};

// Titles of per-layer (or per-statistic) series drawn at their last record.
export const VECTOR_TITLES = {
  output_stats: "The model's output (last recorded batch)",
  grad_zero_count: "Gradient entries exactly zero, per layer",
  grad_missing: "Variables without a gradient, per layer",
  act_std: "Spread of each layer's outputs",
  weight_norm: "Weight norm per layer",
};

export function chartTitle(kind) {
  if (KIND_TITLES[kind]) return KIND_TITLES[kind];
  if (kind.startsWith("vector:")) {
    const name = shortName(kind.slice(7)) || kind.slice(7);
    return VECTOR_TITLES[name] || `${name} per layer (last record)`;
  }
  if (kind.startsWith("scalar:")) return kind.slice(7);
  return kind;
}

export function findingKinds(finding, drawing) {
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

export function findingCard(finding, index, drawing) {
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
  if (typeof finding.first_named_step === "number") {
    // When the recorder's live verdict first named it, while the run trained.
    facts.push(el("span", { className: "pl-fact pl-named", text: `named live since step ${finding.first_named_step}${
      typeof finding.first_named_elapsed_s === "number" ? `, ${formatElapsed(finding.first_named_elapsed_s)} into training` : ""}` }));
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

export function fixBlock(text) {
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

export function overviewCharts(entry, drawn) {
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


function formatElapsed(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
