from __future__ import annotations

import base64
import uuid

import pytest

from app.session_tokens import (
    DEVICE_CREDENTIAL_LENGTH,
    Grant,
    InvalidSessionToken,
    TokenScope,
    mint_device_credential,
    mint_session_token,
    verify_device_credential,
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


# --- device credentials (a phone's device host) ----------------------------------------------


def test_a_device_credential_fits_one_dns_label_beside_the_session() -> None:
    credential = mint_device_credential(SECRET, SESSION, expires_at=2_000)
    label = f"{SESSION}--{credential}"
    assert len(credential) == DEVICE_CREDENTIAL_LENGTH and len(label) <= 63
    assert set(label) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert verify_device_credential(SECRET, credential, SESSION, now=1_000) == 2_000
    # Still valid at its last second (as session tokens are).
    assert verify_device_credential(SECRET, credential, SESSION, now=2_000) == 2_000


def _flip(credential: str, index: int) -> str:
    swapped = "b" if credential[index] == "a" else "a"
    return credential[:index] + swapped + credential[index + 1 :]


@pytest.mark.parametrize(
    ("mutate", "session", "now"),
    [
        pytest.param(lambda c: c, uuid.uuid4(), 1_000, id="another session"),
        pytest.param(lambda c: c, SESSION, 2_001, id="expired"),
        pytest.param(lambda c: _flip(c, 0), SESSION, 1_000, id="tampered expiry"),
        pytest.param(lambda c: _flip(c, 7), SESSION, 1_000, id="tampered expiry (last byte)"),
        pytest.param(lambda c: _flip(c, -1), SESSION, 1_000, id="tampered mac"),
        pytest.param(lambda c: c.upper(), SESSION, 1_000, id="capitals (not canonical)"),
        pytest.param(lambda c: c[:-1], SESSION, 1_000, id="one short"),
        pytest.param(lambda c: c + "a", SESSION, 1_000, id="one long"),
        pytest.param(lambda c: "", SESSION, 1_000, id="empty"),
        pytest.param(lambda c: c * 40, SESSION, 1_000, id="oversized"),
        pytest.param(lambda c: c[:-1] + "1", SESSION, 1_000, id="not base32 (1)"),
        pytest.param(lambda c: c[:-1] + "=", SESSION, 1_000, id="padding"),
        pytest.param(lambda c: c[:-1] + "é", SESSION, 1_000, id="not ascii"),
    ],
)
def test_bad_device_credentials_are_refused(mutate, session: uuid.UUID, now: int) -> None:  # type: ignore[no-untyped-def]
    credential = mutate(mint_device_credential(SECRET, SESSION, expires_at=2_000))
    with pytest.raises(InvalidSessionToken):
        verify_device_credential(SECRET, credential, session, now=now)


def test_a_device_credential_of_another_secret_is_refused() -> None:
    credential = mint_device_credential(b"o" * 32, SESSION, expires_at=2_000)
    with pytest.raises(InvalidSessionToken):
        verify_device_credential(SECRET, credential, SESSION, now=1_000)


def test_a_later_expiry_cannot_be_forged_onto_a_credential() -> None:
    credential = mint_device_credential(SECRET, SESSION, expires_at=2_000)
    mac = base64.b32decode(credential.upper())[5:]
    later = base64.b32encode((10**9).to_bytes(5, "big") + mac).decode().lower()
    with pytest.raises(InvalidSessionToken):
        verify_device_credential(SECRET, later, SESSION, now=1_000)


def test_no_session_token_passes_for_a_device_credential_or_the_other_way_round() -> None:
    # The same secret signs both; the purpose in the device MAC's message keeps them apart.
    for scope in TokenScope:
        token = mint_session_token(SECRET, SESSION, 2_000, scope)
        _, signature = token.split(".")
        raw = (2_000).to_bytes(5, "big") + base64.urlsafe_b64decode(signature + "=")[:10]
        as_credential = base64.b32encode(raw).decode().lower()
        with pytest.raises(InvalidSessionToken):
            verify_device_credential(SECRET, as_credential, SESSION, now=1_000)
    credential = mint_device_credential(SECRET, SESSION, expires_at=2_000)
    with pytest.raises(InvalidSessionToken):
        verify_session_token(SECRET, credential, SESSION, 1_000, ALL)
    payload = base64.urlsafe_b64encode(f"{SESSION}:2000".encode()).rstrip(b"=").decode()
    mac = base64.b32decode(credential.upper())[5:]
    forged = f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidSessionToken):
        verify_session_token(SECRET, forged, SESSION, 1_000, ALL)
