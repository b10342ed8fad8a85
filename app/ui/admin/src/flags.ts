/**
 * The rollout flags (GET /api/admin/flags, PUT /api/admin/flags/global) and their audit
 * (GET /api/admin/flags/audit): the kill switch as one button that says what it will do, the
 * percentage as a form, every override, and who changed what. Each change is audited by the
 * API; the page only shows the audit it reads back.
 */

import { ApiFailure, call, list, num, str, type Json } from "./api.js";
import { byId, make, note, table, tableRow, when } from "./dom.js";

let killSwitch: boolean | null = null;
let cacheSeconds = 5;

function value(v: unknown): string {
  return v === null || v === undefined ? "none" : JSON.stringify(v);
}

export function renderFlags(flags: Json | ApiFailure, audit: Json | ApiFailure): void {
  const state = byId("flags-state");
  const button = byId<HTMLButtonElement>("kill-switch");
  if (flags instanceof ApiFailure) {
    killSwitch = null;
    button.disabled = true;
    state.textContent = flags.missing
      ? "No data: this deployment does not serve /api/admin/flags."
      : `No data: the flags could not be read (${flags.message}).`;
  } else {
    const rollout = flags.rollout && typeof flags.rollout === "object" ? (flags.rollout as Json) : {};
    killSwitch = rollout.killSwitch === true;
    cacheSeconds = num(flags.cacheSeconds) ?? cacheSeconds;
    const percentage = num(rollout.percentage) ?? 0;
    state.textContent = killSwitch
      ? `Kill switch ON: every editor is on Appetize (the percentage, ${percentage}%, applies again once it is off).`
      : `Kill switch off. ${percentage}% of users on the new system, by a stable hash of their id.`;
    button.disabled = false;
    button.textContent = killSwitch ? "Turn the kill switch off" : "Turn the kill switch on";
    button.classList.toggle("danger", !killSwitch);
    const input = byId<HTMLInputElement>("percentage");
    if (document.activeElement !== input && input.dataset.edited !== "true") {
      input.value = String(percentage);
    }
    const overrides = list(flags.overrides);
    byId("flags-overrides").replaceChildren(
      overrides.length
        ? table(
            "Users, projects and plans always on one system (before the percentage applies)",
            ["Scope", "Subject", "Backend", "Since"],
            overrides.map((o) =>
              tableRow([str(o.scope), str(o.subject), str(o.backend), when(str(o.updatedAt))], true),
            ),
          )
        : note("No overrides."),
    );
  }
  const host = byId("flags-audit");
  if (audit instanceof ApiFailure) {
    host.replaceChildren(note(`No data: the audit could not be read (${audit.message}).`));
    return;
  }
  const changes = list(audit.changes);
  host.replaceChildren(
    changes.length
      ? table(
          "The latest flag changes: who, when, old and new value",
          ["When", "Who", "Flag", "Old", "New"],
          changes.map((c) =>
            tableRow([when(str(c.at)), str(c.actor), str(c.flag), value(c.old), value(c.new)], true),
          ),
        )
      : note("No flag was ever changed."),
  );
}

/** Flip the kill switch; the sentence for the status line. */
export async function flipKillSwitch(token: string): Promise<string> {
  if (killSwitch === null) throw new ApiFailure(0, "no_flags", "The flags are not loaded yet.");
  const stored = await call(token, "PUT", "/api/admin/flags/global", { killSwitch: !killSwitch });
  killSwitch = stored.killSwitch === true;
  return killSwitch
    ? `Kill switch on: every editor is sent to Appetize (every web process within ${cacheSeconds} s).`
    : `Kill switch off: the percentage and the overrides decide again (within ${cacheSeconds} s).`;
}

/** Save the percentage as typed (the API says what is wrong with a bad one). */
export async function savePercentage(token: string): Promise<string> {
  const input = byId<HTMLInputElement>("percentage");
  const text = input.value.trim();
  const percentage = /^\d+(\.\d+)?$/.test(text) ? Number(text) : text;
  const stored = await call(token, "PUT", "/api/admin/flags/global", { percentage });
  input.dataset.edited = "false";
  return `Saved: ${num(stored.percentage) ?? percentage}% of users on the new system.`;
}

export function markPercentageEdited(): void {
  byId<HTMLInputElement>("percentage").dataset.edited = "true";
}
