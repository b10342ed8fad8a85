"""Dependency changes in Chromium: a package added to package.json and imported in the same
patch renders in the open preview (the dev server restarts onto the new node_modules and the
page reloads); a package that does not exist is a `buildError` on package.json, and the next
edit still renders.

The stack's machines are sandboxed with no route out (docs/deploy.md, "Local machines"), so
the package added is one of the image's common packages: installed from the lockfile and npm
cache that `sandbox.templates.install` seeded, with no registry request. The missing package's
error is then npm's "cannot reach the registry" (test_dependency_install has the 404).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import PageLog, open_preview, wait_text
from tests.e2e.deps_app import CLSX, MISSING, adding, app_using, package_json
from tests.e2e.editor import Editor
from tests.e2e.stack import Session, Stack, app_source

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INSTALL_TIMEOUT = 90.0


def test_an_added_dependency_renders_and_a_missing_one_is_a_build_error(
    stack: Stack, session: Session, page: Page, page_log: PageLog
) -> None:
    name, spec, import_line, expression, rendered = CLSX
    with Editor(session.editor_url(stack.base_url)) as editor:
        editor.hello()
        editor.wait_applied(editor.write("src/App.jsx", app_source("Before the package")))
        open_preview(page, page_log, session, "Before the package")

        mark = editor.mark()
        seq = editor.patch(adding(CLSX, "With clsx"))
        building = editor.wait("status", lambda f: f["state"] == "building", after=mark)
        assert f"+{name}@{spec}" in building["detail"]
        editor.wait_applied(seq, after=mark, timeout=INSTALL_TIMEOUT)
        # The restarted dev server reloads the open page, which now imports the package.
        wait_text(page, "#title", "With clsx", timeout=30)
        wait_text(page, "#dep", rendered)
        editor.wait("status", lambda f: f["state"] == "ready", after=mark)
        assert not editor.of("buildError", after=mark)
        assert not (stack.workspace(session.machine_id) / "node_modules").is_symlink()

        mark = editor.mark()
        missing = package_json(**{name: spec, MISSING: "^1.0.0"})
        seq = editor.write("package.json", missing)
        error = editor.wait("buildError", after=mark, timeout=INSTALL_TIMEOUT)
        assert error["file"] == "package.json" and MISSING in error["message"]
        assert error["line"] > 0
        editor.wait_applied(seq, after=mark)

        # The session keeps working: the package installed before is still there, and the next
        # edit hot-updates the page.
        mark = editor.mark()
        seq = editor.write("src/App.jsx", app_using("Still working", import_line, expression))
        wait_text(page, "#title", "Still working")
        assert page.text_content("#dep") == rendered
        editor.wait_applied(seq, after=mark)
