/** Session search (GET /api/admin/sessions?q=) and one session's timeline
 * (GET /api/admin/sessions/{id}/timeline). */
import { ApiFailure, call, isObject, list, num, str } from "./api.js";
import { byId, make, ms, note, table, tableRow, when } from "./dom.js";
function failure(error, route) {
    if (error instanceof ApiFailure) {
        return note(error.missing && error.code !== "not_found"
            ? `No data: this deployment does not serve ${route}.`
            : error.message);
    }
    throw error;
}
export async function searchSessions(token, query) {
    const host = byId("search-results");
    let answer;
    try {
        answer = await call(token, "GET", `/api/admin/sessions?q=${encodeURIComponent(query)}&limit=50`);
    }
    catch (error) {
        host.replaceChildren(failure(error, "/api/admin/sessions"));
        return "The search failed.";
    }
    const sessions = list(answer.sessions);
    if (!sessions.length) {
        host.replaceChildren(note(`No session matches “${query}”.`));
        return "No session found.";
    }
    host.replaceChildren(table(`Sessions matching “${query}”, newest first`, ["Session", "Status", "Template", "Region", "User", "Project", "Requested", "Timeline"], sessions.map((session) => {
        const id = str(session.sessionId);
        const open = make("button", "Open timeline");
        open.type = "button";
        open.setAttribute("aria-label", `Open timeline of session ${id}`);
        open.addEventListener("click", () => void showTimeline(token, id));
        return tableRow([
            make("code", id),
            str(session.status),
            str(session.template),
            str(session.region),
            make("code", str(session.userId)),
            make("code", str(session.projectId)),
            when(str(session.createdAt)),
            open,
        ], true);
    })));
    return `${sessions.length} session${sessions.length === 1 ? "" : "s"} found.`;
}
export async function showTimeline(token, sessionId) {
    const section = byId("timeline");
    const body = byId("timeline-body");
    byId("timeline-heading").textContent = `Timeline of session ${sessionId}`;
    section.hidden = false;
    let answer;
    try {
        answer = await call(token, "GET", `/api/admin/sessions/${encodeURIComponent(sessionId)}/timeline`);
    }
    catch (error) {
        body.replaceChildren(failure(error, "/api/admin/sessions/{id}/timeline"));
        section.focus();
        return;
    }
    const facts = make("dl", undefined, "facts");
    const fact = (term, value) => facts.append(make("dt", term), make("dd", value || "—"));
    fact("Status", str(answer.status));
    fact("Template / region", `${str(answer.template)} / ${str(answer.region)}`);
    fact("Lease kind", str(answer.leaseKind));
    fact("End reason", str(answer.endReason));
    fact("User", str(answer.userId));
    fact("Project", str(answer.projectId));
    const stages = list(answer.stages);
    const edits = isObject(answer.edits) ? answer.edits : {};
    body.replaceChildren(facts, stages.length
        ? table("Stages in order, in milliseconds since the session was requested", ["Stage", "At", "Since requested", "Detail"], stages.map((s) => tableRow([
            str(s.stage),
            when(str(s.at)),
            ms(num(s.sinceRequestedMs)),
            isObject(s.detail) && Object.keys(s.detail).length ? JSON.stringify(s.detail) : "",
        ], true)))
        : note("No stage recorded."), table("Edits", ["Edits", "Ack p50", "Ack p95", "Ack max", "Applied p50", "Applied p95", "Applied max"], [
        tableRow([
            String(num(edits.count) ?? 0),
            ms(num(edits.ackP50Ms)),
            ms(num(edits.ackP95Ms)),
            ms(num(edits.ackMaxMs)),
            ms(num(edits.appliedP50Ms)),
            ms(num(edits.appliedP95Ms)),
            ms(num(edits.appliedMaxMs)),
        ]),
    ]));
    section.focus();
}
