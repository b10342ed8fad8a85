from __future__ import annotations

import base64
import uuid

import pytest

from app.session_tokens import (
    Grant,
    InvalidSessionToken,
    TokenScope,
    mint_session_token,
    verify_session_token,
)

SECRET = b"s" * 32
SESSION = uuid.UUID("7b0e4c8e-7d9c-4a43-9a55-2f3f1b6f8c01")


def test_a_fresh_token_grants_its_session() -> None:
    token = mint_session_token(SECRET, SESSION, expires_at=2_000)
    verify_session_token(SECRET, token, SESSION, now=1_000)


@pytest.mark.parametrize(
    ("mutate", "session", "now"),
    [
        pytest.param(lambda t: t, uuid.uuid4(), 1_000, id="another session"),
        pytest.param(lambda t: t, SESSION, 2_001, id="expired"),
        pytest.param(lambda t: t[:-2] + "AA", SESSION, 1_000, id="tampered signature"),
        pytest.param(lambda t: "x" + t, SESSION, 1_000, id="tampered payload"),
        pytest.param(lambda t: t.replace(".", ""), SESSION, 1_000, id="no separator"),
        pytest.param(lambda t: t + "." + t, SESSION, 1_000, id="two separators"),
        pytest.param(lambda t: "a" * 600, SESSION, 1_000, id="oversized"),
        pytest.param(lambda t: "!!!.???", SESSION, 1_000, id="not base64"),
    ],
)
def test_bad_tokens_are_refused(mutate, session: uuid.UUID, now: int) -> None:  # type: ignore[no-untyped-def]
    token = mutate(mint_session_token(SECRET, SESSION, expires_at=2_000))
    with pytest.raises(InvalidSessionToken):
        verify_session_token(SECRET, token, session, now=now)


def test_another_secret_is_refused() -> None:
    token = mint_session_token(b"o" * 32, SESSION, expires_at=2_000)
    with pytest.raises(InvalidSessionToken):
        verify_session_token(SECRET, token, SESSION, now=1_000)


ALL = frozenset(TokenScope)


@pytest.mark.parametrize(
    ("scope", "accepted_by"),
    [
        (TokenScope.EDITOR, {"editor socket", "preview cookie", "first load"}),
        (TokenScope.PREVIEW, {"preview cookie", "first load"}),
        (TokenScope.SHARE, {"first load"}),
    ],
)
def test_each_scope_grants_what_it_names_and_no_more(
    scope: TokenScope, accepted_by: set[str]
) -> None:
    token = mint_session_token(SECRET, SESSION, 2_000, scope)
    doors = {
        "editor socket": frozenset({TokenScope.EDITOR}),
        "preview cookie": frozenset({TokenScope.EDITOR, TokenScope.PREVIEW}),
        "first load": ALL,
    }
    for door, scopes in doors.items():
        if door in accepted_by:
            assert verify_session_token(SECRET, token, SESSION, 1_000, scopes) == Grant(
                scope, 2_000
            )
        else:
            with pytest.raises(InvalidSessionToken):
                verify_session_token(SECRET, token, SESSION, 1_000, scopes)


def test_a_scope_cannot_be_forged_onto_a_signed_payload() -> None:
    token = mint_session_token(SECRET, SESSION, 2_000, TokenScope.PREVIEW)
    _, signature = token.split(".")
    widened = base64.urlsafe_b64encode(f"{SESSION}:2000".encode()).rstrip(b"=").decode()
    unknown = base64.urlsafe_b64encode(f"{SESSION}:2000:root".encode()).rstrip(b"=").decode()
    for forged in (f"{widened}.{signature}", f"{unknown}.{signature}"):
        with pytest.raises(InvalidSessionToken):
            verify_session_token(SECRET, forged, SESSION, 1_000, ALL)
