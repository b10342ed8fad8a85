/**
 * The rollout's A/B report (GET /api/admin/rollout/report): per metric, one inline SVG bar
 * chart (no chart library) with a bar per arm, its 95 % confidence interval drawn as a whisker,
 * and a caption saying the sample sizes, the difference and whether it is significant. A table
 * under the charts holds the same figures in words for screen readers and for copying.
 */

import { ApiFailure, isObject, num, str, type Json } from "./api.js";
import { byId, make, ms, note, percent, table, tableRow } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 420;
const HEIGHT = 104;
const PAD = { left: 76, right: 16, top: 8, bottom: 20 };
const ARMS: Array<[string, string, string]> = [
  ["new", "New system", "series-0"],
  ["appetize", "Appetize", "series-1"],
];

interface Metric {
  key: string;
  title: string;
  kind: "time" | "rate";
}

const METRICS: Metric[] = [
  { key: "timeToFirstPreview", title: "Time to first preview (median)", kind: "time" },
  { key: "editToVisible", title: "Edit to visible change (median per session)", kind: "time" },
  { key: "sessionLength", title: "Session length (median)", kind: "time" },
  { key: "errorRate", title: "Error rate", kind: "rate" },
  { key: "fallbackRate", title: "Fallback rate", kind: "rate" },
];

interface Bar {
  label: string;
  cls: string;
  value: number | null;
  low: number | null;
  high: number | null;
  n: number;
}

function obj(value: unknown): Json {
  return isObject(value) ? value : {};
}

function el<K extends keyof SVGElementTagNameMap>(
  name: K,
  attrs: Record<string, string | number>,
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function bars(report: Json, metric: Metric): Bar[] {
  const arms = obj(report.arms);
  return ARMS.map(([key, label, cls]) => {
    const figure = obj(obj(arms[key])[metric.key]);
    const ci = obj(metric.kind === "time" ? figure.p50Ci : figure.ci);
    return {
      label,
      cls,
      value: num(metric.kind === "time" ? figure.p50Ms : figure.rate),
      low: num(ci.low),
      high: num(ci.high),
      n: num(figure.n) ?? 0,
    };
  });
}

function format(metric: Metric, value: number | null): string {
  return metric.kind === "time" ? ms(value) : percent(value);
}

function verdict(report: Json, metric: Metric): string {
  const compared = obj(report.comparisons)[metric.key];
  if (metric.key === "fallbackRate") return "Not compared: the arms' fallback rates answer different questions.";
  const result = metric.kind === "time" ? obj(compared).medians : compared;
  if (!isObject(result)) return "Not enough sessions in both arms to compare.";
  const difference = num(result.difference);
  const p = num(result.pValue);
  const ci = obj(result.ci);
  const shown =
    metric.kind === "time"
      ? `${ms(difference)} (95% CI ${ms(num(ci.low))} to ${ms(num(ci.high))})`
      : `${((difference ?? 0) * 100).toFixed(1)} points (95% CI ${((num(ci.low) ?? 0) * 100).toFixed(1)} to ${((num(ci.high) ?? 0) * 100).toFixed(1)})`;
  const significance = result.significant === true ? "significant" : "not significant";
  return `New − Appetize: ${shown}; p = ${p === null ? "—" : p.toPrecision(2)}, ${significance} (${str(result.test)}).`;
}

function barChart(report: Json, metric: Metric): HTMLElement {
  const data = bars(report, metric);
  const top = Math.max(
    metric.kind === "rate" ? 0.01 : 1,
    ...data.flatMap((b) => [b.value ?? 0, b.high ?? 0]),
  );
  const x = (value: number) => PAD.left + (value / top) * (WIDTH - PAD.left - PAD.right);
  const band = (HEIGHT - PAD.top - PAD.bottom) / data.length;
  const figure = make("figure", undefined, "chart rollout-chart");
  figure.dataset.metric = metric.key;
  figure.append(make("figcaption", metric.title));
  const words = data
    .map((b) => {
      const ci = b.low === null || b.high === null ? "" : `, 95% CI ${format(metric, b.low)} to ${format(metric, b.high)}`;
      return `${b.label}: ${format(metric, b.value)}${ci}, ${b.n} sessions`;
    })
    .join("; ");
  const svg = el("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": `${metric.title}. ${words}.`,
  });
  svg.append(el("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: HEIGHT - PAD.bottom, class: "grid" }));
  for (const fraction of [0.5, 1]) {
    svg.append(
      el("line", { x1: x(top * fraction), x2: x(top * fraction), y1: PAD.top, y2: HEIGHT - PAD.bottom, class: "grid" }),
    );
    const label = el("text", { x: x(top * fraction), y: HEIGHT - 6, class: "axis", "text-anchor": "end" });
    label.textContent = format(metric, top * fraction);
    svg.append(label);
  }
  data.forEach((b, i) => {
    const middle = PAD.top + band * i + band / 2;
    const name = el("text", { x: PAD.left - 6, y: middle + 4, class: "axis", "text-anchor": "end" });
    name.textContent = b.label;
    svg.append(name);
    if (b.value === null) {
      const none = el("text", { x: PAD.left + 6, y: middle + 4, class: "axis" });
      none.textContent = "no data";
      svg.append(none);
      return;
    }
    svg.append(
      el("rect", {
        x: PAD.left,
        y: middle - band * 0.3,
        width: Math.max(1, x(b.value) - PAD.left),
        height: band * 0.6,
        class: `bar ${b.cls}`,
        "data-arm": b.label,
      }),
    );
    if (b.low !== null && b.high !== null) {
      const whisker = el("g", { class: "whisker", "data-arm": b.label });
      whisker.append(
        el("line", { x1: x(b.low), x2: x(b.high), y1: middle, y2: middle }),
        el("line", { x1: x(b.low), x2: x(b.low), y1: middle - 6, y2: middle + 6 }),
        el("line", { x1: x(b.high), x2: x(b.high), y1: middle - 6, y2: middle + 6 }),
      );
      svg.append(whisker);
    }
  });
  figure.append(svg, make("p", verdict(report, metric), "verdict"));
  return figure;
}

function figuresTable(report: Json): HTMLTableElement {
  const arms = obj(report.arms);
  const rows: HTMLTableRowElement[] = [];
  for (const metric of METRICS) {
    for (const [key, label] of ARMS) {
      const figure = obj(obj(arms[key])[metric.key]);
      if (metric.kind === "time") {
        const p50 = obj(figure.p50Ci);
        const mean = obj(figure.meanCi);
        rows.push(
          tableRow(
            [
              `${metric.title}: ${label}`,
              String(num(figure.n) ?? 0),
              `${ms(num(figure.p50Ms))} [${ms(num(p50.low))}, ${ms(num(p50.high))}]`,
              `${ms(num(figure.meanMs))} [${ms(num(mean.low))}, ${ms(num(mean.high))}]`,
            ],
            true,
          ),
        );
      } else {
        const ci = obj(figure.ci);
        rows.push(
          tableRow(
            [
              `${metric.title}: ${label}`,
              `${num(figure.count) ?? 0} of ${num(figure.n) ?? 0}`,
              `${percent(num(figure.rate))} [${percent(num(ci.low))}, ${percent(num(ci.high))}]`,
              "—",
            ],
            true,
          ),
        );
      }
    }
  }
  return table(
    "The same figures: sample size, median or rate with its 95% CI, mean with its 95% CI",
    ["Metric and arm", "n", "Median or rate [95% CI]", "Mean [95% CI]"],
    rows,
  );
}

export function renderRollout(answer: Json | ApiFailure): void {
  const host = byId("rollout");
  if (answer instanceof ApiFailure) {
    host.replaceChildren(
      note(
        answer.missing
          ? "No data: this deployment does not serve /api/admin/rollout/report."
          : `No data: the A/B report failed (${answer.message}).`,
      ),
    );
    return;
  }
  const arms = obj(answer.arms);
  const summary = make(
    "p",
    `Sessions since ${new Date(str(answer.since)).toLocaleString()}: new system ${num(obj(arms.new).sessions) ?? 0}, Appetize ${num(obj(arms.appetize).sessions) ?? 0}. Bars are medians (times) or rates, whiskers their 95% confidence intervals; significant means p < 0.05.`,
  );
  summary.id = "rollout-summary";
  const charts = make("div", undefined, "rollout-charts");
  charts.append(...METRICS.map((metric) => barChart(answer, metric)));
  host.replaceChildren(summary, charts, figuresTable(answer));
}
