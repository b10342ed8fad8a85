/**
 * The operator's token: pasted, taken from this browser's Supabase session, or (in `dev`) the
 * demo admin's. Kept in sessionStorage (this tab only, gone when it closes), never in a URL.
 */
import { call, isObject, str } from "./api.js";
const STORAGE_KEY = "preview-orchestrator.admin-token";
export function storedToken() {
    try {
        return sessionStorage.getItem(STORAGE_KEY);
    }
    catch {
        return null;
    }
}
export function storeToken(token) {
    sessionStorage.setItem(STORAGE_KEY, token);
}
export function forgetToken() {
    sessionStorage.removeItem(STORAGE_KEY);
}
/**
 * The access token of a Supabase session signed in on this origin (supabase-js keeps it in
 * localStorage under `sb-<project>-auth-token`), or null.
 */
export function supabaseSessionToken() {
    try {
        for (let i = 0; i < localStorage.length; i++) {
            const key = localStorage.key(i);
            if (!key || !/^sb-.+-auth-token$/.test(key))
                continue;
            const session = JSON.parse(localStorage.getItem(key) ?? "null");
            if (isObject(session) && str(session.access_token))
                return str(session.access_token);
        }
    }
    catch {
        // Storage refused or a value that is not ours: no session to offer.
    }
    return null;
}
/** The demo admin's token; the route exists only in `dev` (404 elsewhere). */
export async function demoAdminToken() {
    const answer = await call("", "POST", "/api/dev/token?admin=1");
    return str(answer.accessToken);
}
