"""Dev login: in `dev` mode only, a demo page can get an access token for the demo user.
The route does not exist in production (it is not mounted unless PREVIEW_DEV_MODE is set)."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.auth import mint_hs256_token
from app.errors import ApiError
from app.openapi import Answer, ApiRoute, Operation
from app.routes.common import resources
from app.schemas import DevTokenQuery, DevTokenView, parse_query

DEMO_USER_ID = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
DEMO_PROJECT_ID = uuid.UUID("00000000-0000-4000-8000-0000000050a0")
DEMO_EMAIL = "demo@preview.localhost"


async def dev_token(request: Request) -> Response:
    res = resources(request)
    secret = res.settings.supabase_jwt_secret
    if secret is None:
        raise ApiError(404, "not_found", "dev login is not available")
    admin = parse_query(DevTokenQuery, request).admin == "1"
    token = mint_hs256_token(
        secret.get_secret_value(), user_id=DEMO_USER_ID, email=DEMO_EMAIL, admin=admin
    )
    return JSONResponse(
        {"accessToken": token, "userId": str(DEMO_USER_ID), "projectId": str(DEMO_PROJECT_ID)}
    )


ROUTES = [
    ApiRoute(
        "/api/dev/token",
        POST=Operation(
            dev_token,
            "An access token for the demo user (`dev` only; admin=1 for an operator's)",
            {200: Answer("the token, the demo user and its project", DevTokenView)},
            errors=(404,),
            query=DevTokenQuery,
            public=True,
        ),
    )
]
