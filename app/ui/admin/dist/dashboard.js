/**
 * The operator dashboard at /admin: sign-in, then every REFRESH_MS the pools, their history,
 * latency and alerts, each section on its own (one missing route does not blank the others).
 *
 * Messages: #status (polite live region) says what an action did; #alert and #bounds-error
 * (role=alert) say what went wrong. The periodic refresh announces nothing.
 */
import { ApiFailure, call, list } from "./api.js";
import { demoAdminToken, forgetToken, storeToken, storedToken, supabaseSessionToken } from "./auth.js";
import { byId } from "./dom.js";
import { flipKillSwitch, markPercentageEdited, renderFlags, savePercentage } from "./flags.js";
import { renderHistory } from "./history.js";
import { renderAlerts, renderLatency } from "./panels.js";
import { poolErrors, renderPools, saveBounds } from "./pools.js";
import { renderRollout } from "./rollout.js";
import { searchSessions } from "./sessions.js";
const REFRESH_MS = 10_000;
// The A/B report bootstraps its intervals server-side: read it at most once a minute.
const REPORT_MS = 60_000;
let token = null;
let timer;
let reportAt = 0;
function announce(text) {
    byId("status").textContent = text;
}
function complain(text) {
    byId("alert").textContent = text;
}
function refusal(failure) {
    if (failure.status === 401) {
        return `The token was refused (${failure.message}): it is invalid or expired. Paste a fresh one.`;
    }
    if (failure.status === 403) {
        return "This token is not an operator's: the admin API accepts only tokens whose app_metadata.role is admin.";
    }
    return `The admin API failed: ${failure.message}`;
}
async function load(path) {
    try {
        return await call(token ?? "", "GET", path);
    }
    catch (error) {
        if (error instanceof ApiFailure)
            return error;
        throw error;
    }
}
async function refreshReport() {
    reportAt = Date.now();
    const since = byId("rollout-since").value;
    renderRollout(await load(`/api/admin/rollout/report?since=${encodeURIComponent(since)}`));
}
async function refreshFlags() {
    const [flags, audit] = await Promise.all([
        load("/api/admin/flags"),
        load("/api/admin/flags/audit?limit=10"),
    ]);
    renderFlags(flags, audit);
}
/** Everything the dashboard shows, read again (the A/B report when `report` or when it is a
 * minute old). False when the token no longer works. */
async function refresh(report = true) {
    const [pool, history, stats, alerts] = await Promise.all([
        load("/api/admin/pool"),
        load("/api/admin/pool/history?minutes=60"),
        load("/api/admin/stats?since=3600"),
        load("/api/admin/alerts"),
        refreshFlags(),
        report || Date.now() - reportAt >= REPORT_MS ? refreshReport() : Promise.resolve(),
    ]);
    if (pool instanceof ApiFailure) {
        if (pool.status === 401 || pool.status === 403) {
            signOut(refusal(pool));
            return false;
        }
        complain(refusal(pool));
        return true;
    }
    const pools = list(pool.pools);
    renderPools(pools);
    renderLatency(stats);
    renderHistory(history, Date.now());
    renderAlerts(alerts, poolErrors(pools));
    byId("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    return true;
}
async function signIn(candidate, how) {
    complain("");
    token = candidate.trim();
    if (!token) {
        complain("Paste a token first.");
        return;
    }
    announce("Checking the token…");
    if (!(await refresh()))
        return;
    storeToken(token);
    byId("signin").hidden = true;
    byId("dashboard").hidden = false;
    byId("refresh").hidden = false;
    byId("sign-out").hidden = false;
    byId("token").value = "";
    announce(`Signed in ${how}.`);
    window.clearInterval(timer);
    timer = window.setInterval(() => void refresh(false), REFRESH_MS);
    byId("main").focus();
}
function signOut(reason) {
    token = null;
    forgetToken();
    window.clearInterval(timer);
    byId("dashboard").hidden = true;
    byId("signin").hidden = false;
    byId("refresh").hidden = true;
    byId("sign-out").hidden = true;
    byId("updated").textContent = "";
    if (reason) {
        announce("");
        complain(reason);
    }
    else {
        complain("");
        announce("Signed out.");
    }
    byId("token").focus();
}
function wire() {
    byId("token-form").addEventListener("submit", (event) => {
        event.preventDefault();
        void signIn(byId("token").value, "with the pasted token");
    });
    const supabase = supabaseSessionToken();
    const useSupabase = byId("use-supabase");
    useSupabase.hidden = supabase === null;
    useSupabase.addEventListener("click", () => {
        const current = supabaseSessionToken();
        if (current)
            void signIn(current, "with this browser's Supabase session");
    });
    byId("use-demo").addEventListener("click", async () => {
        complain("");
        try {
            await signIn(await demoAdminToken(), "as the demo admin");
        }
        catch (error) {
            if (!(error instanceof ApiFailure))
                throw error;
            complain(error.missing
                ? "The demo admin exists only in `dev` (POST /api/dev/token is not served here)."
                : `The demo admin could not sign in: ${error.message}`);
        }
    });
    byId("sign-out").addEventListener("click", () => signOut());
    byId("refresh").addEventListener("click", async () => {
        if (await refresh())
            announce("Refreshed.");
    });
    byId("bounds-form").addEventListener("submit", async (event) => {
        event.preventDefault();
        const error = byId("bounds-error");
        error.textContent = "";
        try {
            const saved = await saveBounds(token ?? "");
            announce(saved);
            await refresh();
        }
        catch (failure) {
            if (!(failure instanceof ApiFailure))
                throw failure;
            if (failure.status === 401 || failure.status === 403)
                signOut(refusal(failure));
            else
                error.textContent = `Not saved: ${failure.message}`;
        }
    });
    wireRollout();
    byId("search-form").addEventListener("submit", async (event) => {
        event.preventDefault();
        announce("Searching…");
        announce(await searchSessions(token ?? "", byId("search-q").value.trim()));
    });
}
/** The flags' controls and the report's window. */
function wireRollout() {
    const error = byId("flags-error");
    const change = async (action) => {
        error.textContent = "";
        try {
            announce(await action());
            await refreshFlags();
        }
        catch (failure) {
            if (!(failure instanceof ApiFailure))
                throw failure;
            if (failure.status === 401 || failure.status === 403)
                signOut(refusal(failure));
            else
                error.textContent = `Not changed: ${failure.message}`;
        }
    };
    byId("kill-switch").addEventListener("click", () => void change(() => flipKillSwitch(token ?? "")));
    byId("percentage").addEventListener("input", markPercentageEdited);
    byId("percentage-form").addEventListener("submit", (event) => {
        event.preventDefault();
        void change(() => savePercentage(token ?? ""));
    });
    byId("rollout-form").addEventListener("submit", (event) => event.preventDefault());
    byId("rollout-since").addEventListener("change", () => void refreshReport());
}
wire();
const remembered = storedToken();
if (remembered)
    void signIn(remembered, "with the token kept in this tab");
