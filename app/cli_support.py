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
  provider: {settings.preview_provider}; data in {settings.preview_data_dir.resolve()}
  Ctrl-C to stop

open the demo editor: {base}/
""",
        flush=True,
    )
