#!/usr/bin/env bash
# The test command: creates .venv if needed, installs the project with its dev tools, runs the
# static checks (ruff, mypy strict, import-linter layer contracts, tests/lint_deploy.sh) and the
# whole test suite against the real Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379) of
# this machine, or the servers TEST_POSTGRES_URL and TEST_REDIS_SERVER name. Where one refuses
# connections, the embedded one `dev` uses is started for the run under .preview/test-stores
# (tests/embedded_stores.py) and stopped at the end. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

# The browser side's npm packages (app/ui/package-lock.json): once per lockfile.
.venv/bin/python -c 'from app.ui_assets import install_ui; install_ui()'

# Postgres and Redis, started in the background while the static checks run.
stores_dir=.preview/test-stores
stores_env="$stores_dir/env.$$"
mkdir -p "$stores_dir"
rm -f "$stores_env"
.venv/bin/python -m tests.embedded_stores "$stores_dir" "$stores_env" &
stores_pid=$!
stop_stores() {
    kill -TERM "$stores_pid" 2>/dev/null || true
    wait "$stores_pid" 2>/dev/null || true
    rm -f "$stores_env"
}
trap stop_stores EXIT

echo "== ruff";          .venv/bin/ruff check .
echo "== ruff format";   .venv/bin/ruff format --check .
echo "== mypy (strict)"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== deploy lint";   bash tests/lint_deploy.sh
echo "== tsc (client, panel, React wrapper; the operator dashboard)"
(cd app/ui && node node_modules/typescript/bin/tsc -p client --noEmit)
(cd app/ui && node node_modules/typescript/bin/tsc -p admin --noEmit)
echo "== stores"
# Up to 2 minutes: the first run unpacks the Postgres binaries and runs initdb.
for _ in $(seq 1 1200); do
    [ -f "$stores_env" ] && break
    if ! kill -0 "$stores_pid" 2>/dev/null; then
        echo "run.sh: the embedded stores did not start (see above)" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -f "$stores_env" ]; then
    echo "run.sh: the embedded stores were not up within 2 minutes" >&2
    exit 1
fi
while IFS='=' read -r name value; do
    echo "using $name=$value"
    export "$name=$value"
done < "$stores_env"

echo "== pytest";        .venv/bin/pytest "$@"
