/** Latency (GET /api/admin/stats) and alerts (GET /api/admin/alerts): either may be missing
 * from a deployment, or empty; both then say "no data" instead of failing the page. */
import { ApiFailure, list, num, str } from "./api.js";
import { byId, make, ms, note, table, tableRow, when } from "./dom.js";
function unavailable(answer, route) {
    return note(answer.missing
        ? `No data: this deployment does not serve ${route}.`
        : `No data: ${route} failed (${answer.message}).`);
}
function stage(group, name) {
    const stages = group.stages;
    const entry = stages && typeof stages === "object" ? stages[name] : undefined;
    return entry && typeof entry === "object" ? entry : {};
}
export function renderLatency(answer) {
    const body = byId("latency").querySelector("tbody");
    const empty = (text) => {
        const row = make("tr");
        const cell = make("td", text, "no-data");
        cell.colSpan = 10;
        row.append(cell);
        body.replaceChildren(row);
    };
    if (answer instanceof ApiFailure) {
        empty(answer.missing
            ? "No data: this deployment does not serve /api/admin/stats."
            : `No data: ${answer.message}`);
        return;
    }
    const groups = list(answer.groups);
    if (!groups.length) {
        empty("No data: no session in the last hour.");
        return;
    }
    body.replaceChildren(...groups.map((group) => {
        const lease = stage(group, "leased");
        const render = stage(group, "first_render");
        return tableRow([
            str(group.template),
            str(group.region),
            str(group.leaseKind) || "—",
            String(num(group.sessions) ?? 0),
            ms(num(lease.p50Ms)),
            ms(num(lease.p95Ms)),
            ms(num(lease.p99Ms)),
            ms(num(render.p50Ms)),
            ms(num(render.p95Ms)),
            ms(num(render.p99Ms)),
        ], true);
    }));
}
export function renderAlerts(answer, poolErrors) {
    const host = byId("alerts");
    const parts = [make("h3", "Firing")];
    if (answer instanceof ApiFailure) {
        parts.push(unavailable(answer, "/api/admin/alerts"));
    }
    else {
        const firing = list(answer.firing);
        parts.push(firing.length
            ? table("Alerts firing now", ["Alert", "Severity", "Summary", "Since"], firing.map((a) => tableRow([str(a.name), str(a.severity), str(a.summary), when(str(a.since))], true)))
            : note("No alert is firing."));
        const recent = list(answer.recent);
        parts.push(make("h3", "Recent"));
        parts.push(recent.length
            ? table("Alerts that fired recently", ["Alert", "Severity", "Summary", "Fired", "Resolved"], recent.map((a) => tableRow([
                str(a.name),
                str(a.severity),
                str(a.summary),
                when(str(a.firedAt)),
                a.resolvedAt ? when(str(a.resolvedAt)) : "not yet",
            ], true)))
            : note("No alert fired recently."));
    }
    parts.push(make("h3", "Pool errors"), poolErrors);
    host.replaceChildren(...parts);
}
