"""One door per operation (issue 10): the CLI's `pool set` and the admin API's
`PUT /api/admin/pool/{template}/{region}` take a pool's bounds under the same rules
(app/pool_admin.py). Each bad input is refused by both with the same code and words, and neither
stores anything; good input stores the same bounds through either door."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from app import cli
from app.server import create_app
from app.settings import Settings
from tests.conftest import JWT_SECRET, TOKEN_SECRET, make_user

REGION = "ams"  # the configured default region is "local"; this one is listed too

# (case, CLI arguments after `pool set`, the API's path and body, the code both answer)
REFUSED = [
    (
        "unknown region",
        ["react-web", "mars", "--min=1", "--max=2"],
        ("react-web/mars", {"min": 1, "max": 2}),
        "unknown_region",
    ),
    (
        "unknown template",
        ["vue-web", REGION, "--min=1", "--max=2"],
        ("vue-web/ams", {"min": 1, "max": 2}),
        "unknown_template",
    ),
    (
        "a name that is not a lowercase name",
        ["React", REGION, "--min=1", "--max=2"],
        ("React/ams", {"min": 1, "max": 2}),
        "invalid_pool",
    ),
    (
        "min over max",
        ["react-web", REGION, "--min=3", "--max=2"],
        ("react-web/ams", {"min": 3, "max": 2}),
        "invalid_body",
    ),
    (
        "a max beyond the limit",
        ["react-web", REGION, "--min=1", "--max=5000"],
        ("react-web/ams", {"min": 1, "max": 5000}),
        "invalid_body",
    ),
    (
        "a negative min",
        ["react-web", REGION, "--min=-1", "--max=2"],
        ("react-web/ams", {"min": -1, "max": 2}),
        "invalid_body",
    ),
    (
        "a lower tier's min over its max",
        ["react-web", REGION, "--min=1", "--max=2", "--stopped", "4", "1"],
        ("react-web/ams", {"min": 1, "max": 2, "stopped": {"min": 4, "max": 1}}),
        "invalid_body",
    ),
    (
        "a guest too large",
        ["react-web", REGION, "--min=1", "--max=2", "--guest", "64", "1024"],
        ("react-web/ams", {"min": 1, "max": 2, "guest": {"cpus": 64, "memoryMb": 1024}}),
        "invalid_body",
    ),
    (
        "a guest too small",
        ["react-web", REGION, "--min=1", "--max=2", "--guest", "1", "128"],
        ("react-web/ams", {"min": 1, "max": 2, "guest": {"cpus": 1, "memoryMb": 128}}),
        "invalid_body",
    ),
]


@pytest.fixture
def tuned(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings, with a second region, as the API sees them and as the CLI loads them
    from its environment."""
    for name, value in {
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(settings.preview_data_dir),
        "PREVIEW_REGIONS": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    return settings.model_copy(update={"preview_regions": REGION})


@pytest.fixture
def client(tuned: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(tuned)) as test_client:
        yield test_client


def _targets(settings: Settings) -> list[tuple[object, ...]]:
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        return conn.execute(
            "SELECT template, region, min_size, max_size, suspended_min, suspended_max,"
            " stopped_min, stopped_max, guest_cpus, guest_memory_mb"
            " FROM pool_targets ORDER BY template, region"
        ).fetchall()


@pytest.mark.parametrize(("case", "args", "api", "code"), REFUSED, ids=[c[0] for c in REFUSED])
def test_both_doors_refuse_bad_bounds_with_the_same_words_and_store_nothing(
    tuned: Settings,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    case: str,
    args: list[str],
    api: tuple[str, dict[str, object]],
    code: str,
) -> None:
    admin = make_user(tuned.database_url or "", admin=True)
    before = _targets(tuned)

    answer = client.put(f"/api/admin/pool/{api[0]}", json=api[1], headers=admin.headers)
    exit_code = cli.main(["pool", "set", *args])

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == code
    assert exit_code == 2
    said = capsys.readouterr().err.strip()
    assert said == f"preview-orchestrator: refused ({code}): {answer.json()['message']}"
    assert _targets(tuned) == before


def test_both_doors_store_the_same_bounds(
    tuned: Settings, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = make_user(tuned.database_url or "", admin=True)
    # Hot bounds and a guest size: the lower tiers are Fly's, and the CLI refuses them on the
    # local provider (tests/integration/test_cli_operator.py).
    bounds = {"min": 1, "max": 3, "guest": {"cpus": 2, "memoryMb": 2048}}
    answer = client.put(f"/api/admin/pool/react-web/{REGION}", json=bounds, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    through_api = _targets(tuned)

    client.delete(f"/api/admin/pool/react-web/{REGION}", headers=admin.headers)
    args = ["--min=1", "--max=3", "--guest", "2", "2048"]
    assert cli.main(["pool", "set", "react-web", REGION, *args]) == 0
    through_cli = _targets(tuned)

    assert "react-web/ams: hot 1-3" in capsys.readouterr().out
    assert through_cli == through_api == [("react-web", REGION, 1, 3, 0, 0, 0, 0, 2, 2048)]
