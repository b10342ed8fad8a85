"""docs/embedding.md's React example, as an editor team would ship it: bundled by Vite (the
react-web template's own install: Vite, the React plugin) with the client's React wrapper from
`app/ui/client/dist`, served from another site, driving a real preview."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.e2e.sites import fenced_file, static_site
from tests.e2e.stack import REPO, TEMPLATES, Stack
from tests.e2e.test_panel import DOCS, PLACEHOLDER, api_base, end_panel_session, preview, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOOLS = TEMPLATES / "react-web" / "node_modules"
UI_MODULES = REPO / "app" / "ui" / "node_modules"

CONFIG = """
import react from 'TOOLS/@vitejs/plugin-react/dist/index.js'
export default {
  root: 'ROOT',
  logLevel: 'error',
  plugins: [react()],
  resolve: {
    alias: [
      {find: '@preview-orchestrator/client/react', replacement: 'CLIENT/react.js'},
      {find: /^react-dom(\\/.*)?$/, replacement: 'UI/react-dom$1'},
      {find: /^react(\\/.*)?$/, replacement: 'UI/react$1'},
    ],
  },
  build: {outDir: 'ROOT/dist', emptyOutDir: true},
}
"""


def build_example(root: Path, api: str) -> Path:
    example = fenced_file(DOCS.read_text(), "embed-react.jsx")
    assert PLACEHOLDER in example
    (root / "main.jsx").write_text(example.replace(PLACEHOLDER, api))
    (root / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>React embed</title>'
        '</head><body><div id="root"></div><script type="module" src="/main.jsx"></script>'
        "</body></html>"
    )
    config = (
        CONFIG.replace("TOOLS", str(TOOLS))
        .replace("ROOT", str(root))
        .replace("CLIENT", str(REPO / "app" / "ui" / "client" / "dist"))
        .replace("UI", str(UI_MODULES))
    )
    (root / "vite.config.mjs").write_text(config)
    built = subprocess.run(
        ["node", str(TOOLS / "vite" / "bin" / "vite.js"), "build", "--config", "vite.config.mjs"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return root / "dist"


def test_the_react_example_drives_a_preview(
    stack: Stack, page: Page, editor_site_port: int, tmp_path: Path
) -> None:
    stack.wait_ready_machines(1)
    dist = build_example(tmp_path, api_base(stack))
    with static_site(dist, editor_site_port) as origin:
        page.goto(f"{origin}/")
        wait_state(page, "ready")
        preview(page).locator("#title").wait_for(timeout=60_000)
        page.get_by_role("button", name="Send App.jsx").click()
        title = preview(page).locator("#title")
        deadline = time.monotonic() + 30
        while title.inner_text() != "Hello from React":
            assert time.monotonic() < deadline, title.inner_text()
            page.wait_for_timeout(50)
        # The wrapper's callbacks reached React state.
        page.wait_for_function(
            "() => document.querySelector('#status')?.textContent === 'ready'", timeout=30_000
        )
        end_panel_session(page, stack)
