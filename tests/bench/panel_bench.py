"""Panel benchmark (issue 8): time from mounting `<preview-panel>` to the app's first render,
against the raw API path (POST /api/preview/sessions, then an iframe of previewUrl), measured
in the same run, interleaved.

    .venv/bin/python -m tests.bench.panel_bench            # 20 runs per arm
    .venv/bin/python -m tests.bench.panel_bench --runs 5   # smoke run

The stack is the README's (`preview-orchestrator dev`, tests/e2e/stack.py) on this machine's
Postgres (a fresh database) and a Redis database claimed for the run (tests/redis_claim.py;
BENCH_PANEL_REDIS_URL names one instead), the local provider with the react-web template. The
page is an editor's page on another site (127.0.0.1, an allowed origin): a toolbar and a file
list (text and form controls, laid out before either arm starts, as in any editor), with
panel.js already loaded, as an open editor would have; a fresh page per run. Before each run the
warm pool is settled (two ready machines, none booting or recycling), so both arms lease a hot
machine.

  * raw: fetch POST /api/preview/sessions from the page, then append an iframe of previewUrl;
  * panel: append a `<preview-panel>` (it POSTs the session, sets its iframe's src to
    previewUrl, then, once the preview has loaded, opens its editor socket and fetches the
    device catalogue).

First render = the moment `#title` enters the preview's DOM, seen by a MutationObserver that an
init script installs in the preview's frame, on the browser's clock (`performance.timeOrigin +
performance.now()`, comparable across the page's and the frame's processes); the start is the
same clock read in the page right before it begins. Nothing polls the editor's page meanwhile:
Playwright's shadow-piercing locator, used before, forced a style and layout pass of the
panel's page on every poll and so charged the harness's own work to the panel arm. Target:
panel p50 <= 1.2 x raw p50.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from tests.bench.common import machine_description, percentile, verdict
from tests.conftest import free_port
from tests.e2e.browser import chromium
from tests.e2e.sites import static_site
from tests.e2e.stack import Stack, running_stack
from tests.redis_claim import redis_url

REDIS_URL = redis_url("BENCH_PANEL_REDIS_URL", "bench-panel")
TARGET_RATIO = 1.2

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bench</title></head>
<body style="margin:0;font:14px system-ui,sans-serif">
<header><strong>Editor</strong> <button type="button">Run</button>
  <select aria-label="Branch"><option>main</option></select></header>
<nav><ul><li>src/App.jsx</li><li>src/main.jsx</li><li>package.json</li></ul></nav>
<script type="module">
  import "API/ui/client/panel.js";
  const token = "TOKEN";
  window.startRaw = async () => {
    const r = await fetch("API/api/preview/sessions", {
      method: "POST",
      headers: {authorization: `Bearer ${token}`, "content-type": "application/json"},
      body: JSON.stringify({projectId: "PROJECT"}),
    });
    const session = await r.json();
    window.sessionId = session.id;
    const frame = document.createElement("iframe");
    frame.id = "raw";
    frame.style.cssText = "width:1280px;height:800px;border:0";
    frame.src = session.previewUrl;
    document.body.append(frame);
  };
  window.startPanel = () => {
    const panel = document.createElement("preview-panel");
    panel.setAttribute("api", "API");
    panel.setAttribute("project-id", "PROJECT");
    panel.setAttribute("device", "laptop");
    panel.style.cssText = "display:block;width:1300px;height:900px";
    panel.getAccessToken = () => token;
    panel.addEventListener("preview-session", (e) => { window.sessionId = e.detail.session.id; });
    document.body.append(panel);
  };
  window.benchReady = true;
</script></body></html>
"""


# Installed in every frame of the run's context; acts only in the preview's frame.
FIRST_RENDER = """
if (location.hostname.endsWith(".preview.localhost")) {
  const seen = () => {
    if (window.__firstRender || !document.getElementById("title")) return false;
    window.__firstRender = performance.timeOrigin + performance.now();
    return true;
  };
  new MutationObserver((_, observer) => { if (seen()) observer.disconnect(); })
    .observe(document, {childList: true, subtree: true});
}
"""


def one_run(browser: Browser, stack: Stack, url: str, arm: str) -> float:
    stack.wait_ready_machines(2, settled=True)
    context = browser.new_context()
    context.add_init_script(FIRST_RENDER)
    page: Page = context.new_page()
    session_id = None
    try:
        page.goto(url)
        page.wait_for_function("window.benchReady === true")
        start = "window.startRaw()" if arm == "raw" else "window.startPanel()"
        with page.expect_event(
            "framenavigated", predicate=lambda f: ".preview.localhost" in f.url, timeout=60_000
        ) as navigated:
            now = "performance.timeOrigin + performance.now()"
            started = page.evaluate(f"() => {{ const t = {now}; {start}; return t; }}")
        frame = navigated.value
        frame.wait_for_function("window.__firstRender", timeout=60_000)
        elapsed = float(frame.evaluate("window.__firstRender")) - float(started)
        session_id = page.evaluate("window.sessionId")
    finally:
        if arm == "panel":
            # The panel ends its session when removed; the raw arm's is ended below.
            page.evaluate("document.querySelector('preview-panel')?.remove()")
        context.close()
    if session_id:
        stack.http.delete(
            f"{stack.base_url}/api/preview/sessions/{session_id}", headers=stack.headers
        )
    return elapsed


def run(runs: int) -> dict[str, Any]:
    site_port = free_port()
    with (
        tempfile.TemporaryDirectory() as root,
        running_stack(
            Path(root),
            redis_url=REDIS_URL,
            pool_min=2,
            pool_max=4,
            log_level="warning",
            extra_env={"PREVIEW_ALLOWED_ORIGINS": f"http://127.0.0.1:{site_port}"},
        ) as stack,
    ):
        site = Path(root) / "site"
        site.mkdir()
        api = f"http://localhost:{stack.port}"
        (site / "bench.html").write_text(
            PAGE.replace("API", api)
            .replace("TOKEN", stack.admin_token)
            .replace("PROJECT", stack.project_id)
        )
        times: dict[str, list[float]] = {"raw": [], "panel": []}
        with static_site(site, site_port) as origin, chromium() as browser:
            url = f"{origin}/bench.html"
            one_run(browser, stack, url, "panel")  # warm-up: caches, Vite's first transforms
            one_run(browser, stack, url, "raw")
            for index in range(runs):
                for arm in ("raw", "panel") if index % 2 == 0 else ("panel", "raw"):
                    times[arm].append(one_run(browser, stack, url, arm))
                print(
                    f"run {index + 1}/{runs}: raw {times['raw'][-1]:.0f} ms, "
                    f"panel {times['panel'][-1]:.0f} ms",
                    flush=True,
                )
    summary = {
        arm: {"p50": percentile(values, 50), "p99": percentile(values, 99), "runs": values}
        for arm, values in times.items()
    }
    ratio = percentile(times["panel"], 50) / percentile(times["raw"], 50)
    return {"machine": machine_description(), "arms": summary, "ratio_p50": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = run(args.runs)
    for arm in ("raw", "panel"):
        figures = report["arms"][arm]
        print(f"{arm:>6}: p50 {figures['p50']:.0f} ms, p99 {figures['p99']:.0f} ms")
    ratio = report["ratio_p50"]
    print(
        f"panel / raw (p50): {ratio:.2f}x  target <= {TARGET_RATIO}x  "
        f"{verdict(ratio <= TARGET_RATIO)}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
