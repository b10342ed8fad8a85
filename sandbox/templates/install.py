"""Install each template's npm dependencies once, from its committed lockfile.

    python -m sandbox.templates.install [--templates-dir DIR] [TEMPLATE ...]

`npm ci` into the template directory, skipped when node_modules already matches: a stamp file
in node_modules records the lockfile's hash and the Node major version it was installed for
(native optional dependencies differ between them). An exclusive lock on the templates
directory makes concurrent callers (CI workers, the web and worker processes of a dev setup)
install once and the rest wait. Used by CI, the machine image and the local provider.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent
STAMP = ".preview-install.json"
LOCK = ".install.lock"


class InstallError(RuntimeError):
    pass


def templates(root: Path) -> list[str]:
    return sorted(entry.parent.name for entry in root.glob("*/package-lock.json"))


def wanted_stamp(template_dir: Path, node_version: str) -> dict[str, str]:
    lock = (template_dir / "package-lock.json").read_bytes()
    return {
        "lockSha256": hashlib.sha256(lock).hexdigest(),
        "node": node_version.split(".")[0],
    }


def is_installed(template_dir: Path, stamp: dict[str, str]) -> bool:
    try:
        found = json.loads((template_dir / "node_modules" / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return bool(found == stamp)


def node_version() -> str:
    node = shutil.which("node")
    if node is None:
        raise InstallError("node is not installed (the templates need Node 20.19 or newer)")
    return subprocess.run(
        [node, "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def npm_ci(template_dir: Path) -> subprocess.Popen[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not installed")
    return subprocess.Popen(
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        cwd=template_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def install_all(root: Path, names: list[str] | None = None) -> dict[str, float]:
    """Install the named templates (all by default) under one lock, in parallel; returns the
    seconds spent on each one that needed it."""
    names = names or templates(root)
    unknown = [name for name in names if not (root / name / "package-lock.json").is_file()]
    if unknown:
        raise InstallError(f"no such template (or no lockfile): {', '.join(unknown)}")
    node = node_version()
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        stamps = {name: wanted_stamp(root / name, node) for name in names}
        todo = [name for name in names if not is_installed(root / name, stamps[name])]
        started = time.monotonic()
        running = {name: npm_ci(root / name) for name in todo}
        spent: dict[str, float] = {}
        failures = []
        for name, process in running.items():
            output, _ = process.communicate()
            spent[name] = time.monotonic() - started
            if process.returncode != 0:
                failures.append(f"npm ci failed in {root / name}:\n{output}")
            else:
                (root / name / "node_modules" / STAMP).write_text(json.dumps(stamps[name]))
    finally:
        os.close(fd)
    if failures:
        raise InstallError("\n".join(failures))
    return spent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sandbox.templates.install", description=__doc__)
    parser.add_argument("--templates-dir", type=Path, default=TEMPLATES_DIR)
    parser.add_argument("names", nargs="*", metavar="TEMPLATE")
    args = parser.parse_args(argv)
    try:
        spent = install_all(args.templates_dir, args.names)
    except (InstallError, OSError, subprocess.CalledProcessError) as exc:
        print(f"template install: {exc}", file=sys.stderr)
        sys.exit(1)
    for name, seconds in spent.items():
        print(f"installed {name} in {seconds:.1f}s")


if __name__ == "__main__":
    main()
