// The Plateau tab. TensorBoard loads this ES module in an iframe whose page
// sets <base href="plugin/plateau/">, so every URL here is relative ("./runs")
// and works under --path_prefix. No inline script, no CDN: the chart library
// is vendored next to this file.
//
// Every run, tag, layer and function name reaches the DOM through
// textContent, never as markup; chart tooltips escape what they show.

import { PENDING_POLL_MS, POLL_INTERVAL_MS, el, state } from "./common.js";
import { connectToHost, fetchJson } from "./api.js";
import { buildLayout, problemsOf, renderRunList, runStamp, sortedRuns } from "./runlist.js";
import { findingCard, healthyCard, overviewCharts, partialCard, runHeader } from "./findings.js";
import { drawChart } from "./charts.js";

// -- refresh ------------------------------------------------------------------

export async function refresh() {
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

export function renderNoRuns() {
  state.dom.main.replaceChildren(el("div", { className: "pl-placeholder" }, [
    el("h2", { text: "No runs to diagnose yet" }),
    el("p", { text: "Record a training with tb_plateau's PlateauCallback, or log a loss scalar, into this logdir." }),
  ]));
}

export function disposeCharts() {
  for (const { chart, observer } of state.charts) {
    observer.disconnect();
    chart.dispose();
  }
  state.charts = [];
}

export async function renderSelected() {
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

// -- entry point --------------------------------------------------------------

export async function render() {
  state.onSelect = renderSelected;
  buildLayout();
  connectToHost(() => refresh());
  await refresh();
  setInterval(() => {
    if (document.visibilityState !== "hidden") refresh();
  }, POLL_INTERVAL_MS);
}
