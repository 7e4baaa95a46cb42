// Charts of the evidence (ECharts): the loss curves the diagnosis read, gradients,
// dead and saturated units, update/weight ratios, the last record of a vector.

import * as echarts from "./vendor/echarts.esm.min.js";
import {
  ACCENT,
  COLORS,
  HEATMAP_RAMP,
  RATIO_BAND,
  RATIO_TARGET,
  escapeHtml,
  fmt,
  num,
  richLabel,
  shortName,
  state,
} from "./common.js";
import { series } from "./api.js";
import { drawConfig } from "./config.js";

export function lossTags(entry) {
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
export function evidenceMarks(finding, lastStep, drawing = {}) {
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

export function makeChart(container) {
  const chart = echarts.init(container, null, { renderer: "canvas" });
  const observer = new ResizeObserver(() => chart.resize());
  observer.observe(container);
  state.charts.push({ chart, observer });
  return chart;
}

export const TEXT_STYLE = { fontFamily: "Roboto, Helvetica Neue, Arial, sans-serif", color: "#424242" };

export async function drawChart(entry, spec) {
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

export function baseOption(extra) {
  return {
    animation: false,
    textStyle: TEXT_STYLE,
    grid: { left: 64, right: 24, top: 36, bottom: 48, containLabel: false },
    ...extra,
  };
}

export function toPoints(body) {
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

export async function drawLoss(entry, spec) {
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

export async function drawGradHeatmap(entry, spec, tag) {
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

export function lastFiniteRow(body) {
  for (let i = body.values.length - 1; i >= 0; i--) {
    const row = body.values[i].map(num);
    if (row.some(Number.isFinite)) return { row, step: body.steps[i] };
  }
  return null;
}

// A category axis of layer names in model order; the finding's layers in red.
export function layerAxis(labels, hot) {
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

export async function drawActivations(entry, spec) {
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

export async function drawRatio(entry, spec) {
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
export async function drawLatestVector(entry, spec, tag) {
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
export function isStatisticVector(tag) {
  return shortName(tag) === "output_stats";
}

export async function drawScalar(entry, spec, tag, label) {
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
