// The configuration record: the part a finding's check read, or the whole record.

import { el, fmt, num } from "./common.js";
import { series } from "./api.js";

// -- the configuration record ---------------------------------------------------

export function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

export function cellText(value) {
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

export function keyValueRows(value, prefix, rows) {
  for (const [key, item] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isPlainObject(item)) keyValueRows(item, path, rows);
    else if (item !== null && item !== undefined) rows.push([path, item]);
  }
  return rows;
}

// A key shown as text that may wrap only after "." and "_" (never mid-word).
export function breakableKey(key) {
  const parts = String(key).split(/(?<=[._])/);
  const nodes = [];
  parts.forEach((part, i) => {
    nodes.push(document.createTextNode(part));
    if (i < parts.length - 1) nodes.push(document.createElement("wbr"));
  });
  return nodes;
}

export function kvTable(rows, hotPaths) {
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
export function recordsTable(records, hotRows) {
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
export function configView(config, finding, drawing = {}) {
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

export async function drawConfig(entry, spec) {
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
