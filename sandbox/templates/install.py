"""Install each template's npm dependencies once, from its committed lockfile.

    python -m sandbox.templates.install [--templates-dir DIR] [TEMPLATE ...]
    python -m sandbox.templates.install --lock-common     # rewrite common-packages.lock.json

`npm ci` into the template directory, skipped when node_modules already matches: a stamp file
in node_modules records the lockfile's hash and the Node major version it was installed for
(native optional dependencies differ between them). An exclusive lock on the templates
directory makes concurrent callers (CI workers, the web and worker processes of a dev setup)
install once and the rest wait. Used by CI, the machine image and the local provider.

It also seeds the npm cache that machines start their dependency installs from
(`.npm-cache` here, read-only in the image; sandbox.agent.installer): the packages of
common-packages.lock.json, fetched by `npm ci` in a scratch directory, so that adding one of
them to a project installs with no registry request. Stamped by that lockfile's hash too.
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
import tempfile
import time
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent
STAMP = ".preview-install.json"
LOCK = ".install.lock"
COMMON_MANIFEST = "common-packages.json"
COMMON_LOCK = "common-packages.lock.json"
NPM_CACHE = ".npm-cache"
SEED_NAME = "common packages"


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


def npm_path() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not installed")
    return npm


def npm_ci(template_dir: Path, cache: Path | None = None) -> subprocess.Popen[str]:
    flags = ["--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
    if cache is not None:
        flags += [f"--cache={cache}", "--logs-max=0"]  # no debug logs in the cache it seeds
    return subprocess.Popen(
        [npm_path(), "ci", *flags],
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
        # Where each install's stamp goes once it succeeded.
        stamp_paths = {name: root / name / "node_modules" / STAMP for name in todo}
        scratch = None
        if (seed := seed_stamp(root)) is not None and not is_seeded(root, seed):
            scratch, running[SEED_NAME] = seed_cache(root)
            stamp_paths[SEED_NAME], stamps[SEED_NAME] = root / NPM_CACHE / STAMP, seed
        spent: dict[str, float] = {}
        failures = []
        for name, process in running.items():
            output, _ = process.communicate()
            spent[name] = time.monotonic() - started
            if process.returncode != 0:
                failures.append(f"npm ci failed for {name}:\n{output}")
            else:
                stamp_paths[name].write_text(json.dumps(stamps[name]))
    finally:
        os.close(fd)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if failures:
        raise InstallError("\n".join(failures))
    return spent


def seed_stamp(root: Path) -> dict[str, str] | None:
    lock = root / COMMON_LOCK
    if not lock.is_file():
        return None
    return {"lockSha256": hashlib.sha256(lock.read_bytes()).hexdigest()}


def is_seeded(root: Path, stamp: dict[str, str]) -> bool:
    try:
        return bool(json.loads((root / NPM_CACHE / STAMP).read_text()) == stamp)
    except (OSError, ValueError):
        return False


def seed_cache(root: Path) -> tuple[Path, subprocess.Popen[str]]:
    """Start filling `.npm-cache` with the common packages, afresh; returns the scratch
    directory (for the caller to remove) and the running `npm ci`."""
    shutil.rmtree(root / NPM_CACHE, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix="preview-common-"))
    shutil.copyfile(root / COMMON_MANIFEST, scratch / "package.json")
    shutil.copyfile(root / COMMON_LOCK, scratch / "package-lock.json")
    return scratch, npm_ci(scratch, cache=root / NPM_CACHE)


def lock_common(root: Path) -> None:
    """Resolve common-packages.json into common-packages.lock.json, with each tarball's URL
    (`resolved`): the installer's fast path then needs no packument, only the tarball."""
    with tempfile.TemporaryDirectory(prefix="preview-common-") as scratch:
        shutil.copyfile(root / COMMON_MANIFEST, Path(scratch) / "package.json")
        flags = ["--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"]
        subprocess.run(
            [npm_path(), "install", *flags, "--omit-lockfile-registry-resolved=false"],
            cwd=scratch,
            check=True,
        )
        shutil.copyfile(Path(scratch) / "package-lock.json", root / COMMON_LOCK)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sandbox.templates.install", description=__doc__)
    parser.add_argument("--templates-dir", type=Path, default=TEMPLATES_DIR)
    parser.add_argument("names", nargs="*", metavar="TEMPLATE")
    parser.add_argument("--lock-common", action="store_true", help=f"rewrite {COMMON_LOCK}")
    args = parser.parse_args(argv)
    try:
        if args.lock_common:
            lock_common(args.templates_dir)
            return
        spent = install_all(args.templates_dir, args.names)
    except (InstallError, OSError, subprocess.CalledProcessError) as exc:
        print(f"template install: {exc}", file=sys.stderr)
        sys.exit(1)
    for name, seconds in spent.items():
        print(f"installed {name} in {seconds:.1f}s")


if __name__ == "__main__":
    main()
