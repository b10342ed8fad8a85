"""What `dev` prints once it is up."""

from __future__ import annotations

from app.routes.dev import DEMO_PROJECT_ID
from app.settings import Settings


def print_banner(settings: Settings, host: str, port: int) -> None:
    base = f"http://localhost:{port}"
    print(
        f"""
preview orchestrator is up at {base}
  API document   {base}/api/openapi.json
  readiness      {base}/readyz
  try it:
    TOKEN=$(curl -s -X POST {base}/api/dev/token \\
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
    curl -s -X POST {base}/api/preview/sessions -H "Authorization: Bearer $TOKEN" \\
         -H 'content-type: application/json' -d '{{"projectId": "{DEMO_PROJECT_ID}"}}'
  operator CLI (another terminal): {_cli_prefix(settings)}preview-orchestrator pool status
  provider: {settings.preview_provider}; data in {settings.preview_data_dir.resolve()}
  Ctrl-C to stop

open the demo editor: {base}/
""",
        flush=True,
    )


def _cli_prefix(settings: Settings) -> str:
    """How a command in another terminal finds this `dev` (app.dev_beacon): from the same
    directory with no variables, when the data directory is the default one."""
    if settings.preview_data_dir == Settings.model_fields["preview_data_dir"].default:
        return ""
    return f"PREVIEW_DATA_DIR={settings.preview_data_dir.resolve()} "
