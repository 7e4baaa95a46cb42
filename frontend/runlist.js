// The run list: verdict badges, the filter, selection.

import { SEVERITY_ORDER, el, state } from "./common.js";

// -- layout -------------------------------------------------------------------

export function buildLayout() {
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
export function shownVerdict(entry) {
  if (!entry) return null;
  if (entry.error && !entry.verdict) return "error";
  // The report's display status, computed once by the diagnosis for the CLI and the tab.
  if (entry.status) return entry.status;
  if (entry.incomplete && !entry.verdict) return "incomplete";
  return entry.verdict;
}

export function badge(verdict) {
  if (verdict === "incomplete") return el("span", { className: "pl-badge pl-badge-incomplete", text: "not fully read" });
  const kind = verdict || "pending";
  const label = verdict || "diagnosing…";
  return el("span", { className: `pl-badge pl-badge-${kind}`, text: label });
}

export function sortedRuns() {
  return [...state.runs].sort((a, b) => {
    const sa = SEVERITY_ORDER[shownVerdict(a)] ?? 5;
    const sb = SEVERITY_ORDER[shownVerdict(b)] ?? 5;
    return sa - sb || a.run.localeCompare(b.run);
  });
}

export function renderRunList() {
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
        entry.live
          ? el("span", {
            className: "pl-live",
            text: "live",
            attrs: { title: "Still being written: its last record is under two minutes old" },
          })
          : null,
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
export function problemsOf(entry) {
  return entry && Array.isArray(entry.problems) ? entry.problems : [];
}

// One line under a run's name: never "No problems found" for a run that
// could not be fully read.
export function runSubtitle(entry) {
  if (entry.error && !entry.verdict) return entry.error;
  if (entry.pending && !entry.verdict && !entry.error) return "Diagnosing in the background…";
  const problems = problemsOf(entry);
  if (entry.top_finding) return entry.incomplete ? `${entry.top_finding.title} (not fully read)` : entry.top_finding.title;
  if (entry.incomplete) return `Not fully read: ${problems[0] || "part of this run could not be read"}`;
  if (problems.length) return `Note: ${problems[0]}`;
  return "No problems found";
}

export function selectRun(run) {
  if (state.selected === run) return;
  state.selected = run;
  state.shownStamp = null;
  renderRunList();
  state.onSelect(); // the run page (index.js) draws the selected run
}

export function runStamp(entry) {
  if (!entry || entry.pending) return null;
  return [entry.max_step, entry.last_wall_time, entry.live, entry.verdict, entry.findings_count, problemsOf(entry).length].join("|");
}
