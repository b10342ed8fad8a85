/** The charts of the last hour, from GET /api/admin/pool/history (a sample per pool every
 * ~10 s, recorded by the worker). */

import { ApiFailure, isObject, list, num, str, type Json } from "./api.js";
import { lineChart, type Series } from "./charts.js";
import { byId, make, note, percent } from "./dom.js";

const HOUR_MS = 3600 * 1000;

function tiers(sample: Json): Json {
  return isObject(sample.ready) ? sample.ready : {};
}

function series(samples: Json[], name: string, cls: string, pick: (s: Json) => number | null): Series {
  return { name, cls, points: samples.map((s) => [Date.parse(str(s.at)), pick(s)]) };
}

export function renderHistory(answer: Json | ApiFailure, now: number): void {
  const host = byId("charts");
  if (answer instanceof ApiFailure) {
    host.replaceChildren(
      note(answer.missing ? "No data: this deployment has no pool history." : `No data: ${answer.message}`),
    );
    return;
  }
  const byPool = new Map<string, Json[]>();
  for (const sample of list(answer.samples)) {
    const name = `${str(sample.template)}/${str(sample.region)}`;
    byPool.set(name, [...(byPool.get(name) ?? []), sample]);
  }
  if (!byPool.size) {
    host.replaceChildren(note("No data yet: the worker records every pool each 10 seconds."));
    return;
  }
  const from = now - HOUR_MS;
  const blocks: HTMLElement[] = [];
  for (const [name, samples] of [...byPool.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const block = make("section", undefined, "pool-charts");
    block.setAttribute("aria-label", `${name}, last hour`);
    block.append(make("h3", name));
    const machines: Series[] = [
      series(samples, "Ready (hot)", "series-0", (s) => num(tiers(s).hot)),
      series(samples, "Leased", "series-1", (s) => num(s.leased)),
      series(samples, "Booting", "series-2", (s) => num(s.booting)),
    ];
    if (samples.some((s) => num(tiers(s).suspended) || num(tiers(s).stopped))) {
      machines.push(
        series(samples, "Suspended", "series-3", (s) => num(tiers(s).suspended)),
        series(samples, "Stopped", "series-4", (s) => num(tiers(s).stopped)),
      );
    }
    block.append(
      lineChart({ title: `${name}: machines`, series: machines, from, to: now, format: (v) => String(Math.round(v)) }),
      lineChart({
        title: `${name}: hit ratio (5-minute window)`,
        series: [series(samples, "Hit ratio", "series-0", (s) => num(s.hitRatio))],
        from,
        to: now,
        max: 1,
        format: percent,
      }),
    );
    blocks.push(block);
  }
  host.replaceChildren(...blocks);
}
