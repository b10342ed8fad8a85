#!/usr/bin/env bash
# The test command: creates .venv if needed, installs the project with its dev tools, runs the
# static checks (ruff, mypy strict, import-linter layer contracts, tests/lint_deploy.sh) and the
# whole test suite against the real Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379) of
# this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

# The browser side's npm packages (app/ui/package-lock.json): once per lockfile.
.venv/bin/python -c 'from app.ui_assets import install_ui; install_ui()'

echo "== ruff";          .venv/bin/ruff check .
echo "== ruff format";   .venv/bin/ruff format --check .
echo "== mypy (strict)"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== deploy lint";   bash tests/lint_deploy.sh
echo "== tsc (client, panel, React wrapper)"
(cd app/ui && node node_modules/typescript/bin/tsc -p client --noEmit)
echo "== pytest";        .venv/bin/pytest "$@"
