/** The pools table (GET /api/admin/pool) and the bounds form (PUT /api/admin/pool/{t}/{r}). */

import { call, list, num, str, type Json } from "./api.js";
import { byId, make, note, percent, tableRow } from "./dom.js";

export function poolName(pool: Json): string {
  return `${str(pool.template)}/${str(pool.region)}`;
}

function count(value: unknown): string {
  const n = num(value);
  return n === null ? "—" : String(n);
}

export function renderPools(pools: Json[]): void {
  const body = byId("pools").querySelector("tbody") as HTMLTableSectionElement;
  body.replaceChildren(
    ...pools.map((pool) =>
      tableRow(
        [
          str(pool.template),
          str(pool.region),
          count(pool.ready),
          count(pool.leased),
          count(pool.booting),
          count(pool.suspended),
          count(pool.stopped),
          percent(num(pool.hitRatio)),
          count(pool.min),
          count(pool.max),
        ],
        true,
      ),
    ),
  );
  for (const [index, pool] of pools.entries()) {
    body.rows[index].dataset.pool = poolName(pool);
  }
  if (!pools.length) {
    const row = make("tr");
    const cell = make("td", "No pools yet.");
    cell.colSpan = 10;
    row.append(cell);
    body.append(row);
  }
  fillBoundsChoices(pools);
}

/** The pool choices; the fields are filled from a pool's bounds only when it is chosen, so a
 * refresh never overwrites what the operator is typing. */
function fillBoundsChoices(pools: Json[]): void {
  const select = byId<HTMLSelectElement>("bounds-pool");
  const chosen = select.value;
  const names = pools.map(poolName);
  const same =
    select.options.length === names.length &&
    names.every((name, i) => select.options[i].value === name);
  if (!same) {
    select.replaceChildren(...names.map((name) => new Option(name, name)));
    select.value = names.includes(chosen) ? chosen : (names[0] ?? "");
  }
  if (!same && select.value !== chosen) fillBounds(pools);
  select.onchange = () => fillBounds(pools);
}

function fillBounds(pools: Json[]): void {
  const select = byId<HTMLSelectElement>("bounds-pool");
  const pool = pools.find((p) => poolName(p) === select.value);
  byId<HTMLInputElement>("bounds-min").value = pool ? count(pool.min) : "";
  byId<HTMLInputElement>("bounds-max").value = pool ? count(pool.max) : "";
}

/** The form's bound as the API takes it: a whole number, or the text as typed (the API then
 * says what is wrong with it, in one place). */
function bound(id: string): number | string {
  const text = byId<HTMLInputElement>(id).value.trim();
  return /^-?\d+$/.test(text) ? Number(text) : text;
}

export async function saveBounds(token: string): Promise<string> {
  const [template, region] = byId<HTMLSelectElement>("bounds-pool").value.split("/");
  const body = { min: bound("bounds-min"), max: bound("bounds-max") };
  const path = `/api/admin/pool/${encodeURIComponent(template)}/${encodeURIComponent(region)}`;
  const stored = await call(token, "PUT", path, body);
  return `Saved ${template}/${region}: min ${count(stored.min)}, max ${count(stored.max)}. A resize is queued.`;
}

/** Pools whose machine creates keep failing: the recent errors the pool report carries. */
export function poolErrors(pools: Json[]): HTMLElement {
  const failing = pools.filter((pool) => pool.createBackoff);
  if (!failing.length) return note("No pool is failing to create machines.");
  const items = make("ul");
  for (const pool of failing) {
    const backoff = list([pool.createBackoff])[0] ?? {};
    items.append(
      make(
        "li",
        `${poolName(pool)}: ${count(backoff.failures)} create runs failed in a row; last error: ${str(backoff.error) || "unknown"}`,
      ),
    );
  }
  return items;
}
