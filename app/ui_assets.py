"""The browser side's files (`app/ui/`): where they are, which npm packages browsers may load
from them, and their one-time install.

`app/ui/package-lock.json` pins the npm packages the client, the panel and the demo load at
run time (served from `app/ui/node_modules` by app.routes.ui) and the dev tools that check them
(TypeScript). `dev` installs them on its first start, like the preview templates, with the same
installer (`sandbox.templates.install`, run as a process: `npm ci` from the lockfile, once per
lockfile, under a lock). The production image installs the runtime packages at build time.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

UI_DIR = Path(__file__).resolve().parent / "ui"


class UiInstallError(RuntimeError):
    pass


@functools.cache
def runtime_packages(ui_dir: Path = UI_DIR) -> frozenset[str]:
    """npm packages of the lockfile that are not dev-only: what browsers may load."""
    try:
        lock = json.loads((ui_dir / "package-lock.json").read_text())
    except (OSError, ValueError):
        return frozenset()
    return frozenset(
        path.removeprefix("node_modules/")
        for path, entry in lock.get("packages", {}).items()
        if path.startswith("node_modules/")
        and not entry.get("dev")
        and "/node_modules/" not in path.removeprefix("node_modules/")
    )


def install_ui(ui_dir: Path = UI_DIR) -> None:
    """`npm ci` in `ui_dir` unless node_modules already matches its lockfile."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.templates.install",
            "--templates-dir",
            str(ui_dir.parent),
            ui_dir.name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise UiInstallError(f"npm install of {ui_dir} failed:\n{done.stdout}{done.stderr}")
