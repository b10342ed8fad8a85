"""The committed `dist/` of a TypeScript project under app/ui is exactly what tsc makes of its
`src/` (the page serves `dist/`; a stale one would ship code nobody reviewed)."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

from app.ui_assets import UI_DIR


def assert_dist_is_fresh(project: str, scratch: Path) -> None:
    """`project` is the folder under app/ui (`client`, `admin`)."""
    tsc = UI_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    assert tsc.is_file(), "app/ui's npm packages are not installed (tests/run.sh installs them)"
    source = UI_DIR / project
    out = scratch / "dist"
    done = subprocess.run(
        ["node", str(tsc), "-p", str(source), "--outDir", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    compared = filecmp.dircmp(out, source / "dist")
    assert not compared.left_only and not compared.right_only, (
        compared.left_only,
        compared.right_only,
    )
    stale = [
        name
        for name in compared.common_files
        if not filecmp.cmp(out / name, source / "dist" / name, shallow=False)
    ]
    assert not stale, (
        f"rebuild dist (cd app/ui && node node_modules/typescript/bin/tsc -p {project}): {stale}"
    )
    shutil.rmtree(out)
