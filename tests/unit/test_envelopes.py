"""Pub/sub envelopes: every kind survives encode and parse, the JSON is the documented one, and
what Lua scripts publish parses as the same types."""

from __future__ import annotations

import json

import pytest

from pool.core.errors import MalformedEnvelope
from pool.edits.envelopes import (
    AppliedEnvelope,
    AssignEnvelope,
    BuildErrorEnvelope,
    EndedEnvelope,
    Envelope,
    ErrorEnvelope,
    HydrateEnvelope,
    IdleWarningEnvelope,
    LogEnvelope,
    PatchEnvelope,
    StatusEnvelope,
    encode_envelope,
    parse_envelope,
)

# Each envelope, and the JSON it was published as before it had a type (kind first, compact).
WIRE: list[tuple[Envelope, str]] = [
    (
        PatchEnvelope(
            epoch="e1",
            seq=3,
            changes=({"path": "a.js", "content": "é"}, {"path": "b.js", "delete": True}),
            origin="sock1",
        ),
        '{"kind":"patch","epoch":"e1","seq":3,"changes":[{"path":"a.js","content":"\\u00e9"},'
        '{"path":"b.js","delete":true}],"origin":"sock1"}',
    ),
    (AppliedEnvelope(seq=7), '{"kind":"applied","seq":7}'),
    (StatusEnvelope(state="ready", detail=""), '{"kind":"status","state":"ready","detail":""}'),
    (
        LogEnvelope(level="warn", message="hm", source="page"),
        '{"kind":"log","level":"warn","message":"hm","source":"page"}',
    ),
    (
        BuildErrorEnvelope(message="boom", file="a.js", line=1, column=None),
        '{"kind":"buildError","message":"boom","file":"a.js","line":1,"column":null}',
    ),
    (
        ErrorEnvelope(seq=2, code="bad_path", message="no"),
        '{"kind":"error","seq":2,"code":"bad_path","message":"no"}',
    ),
    (
        EndedEnvelope(reason="idle", status="ended"),
        '{"kind":"ended","reason":"idle","status":"ended"}',
    ),
    (IdleWarningEnvelope(secondsLeft=30), '{"kind":"idleWarning","secondsLeft":30}'),
    (AssignEnvelope(session="s1"), '{"kind":"assign","session":"s1"}'),
    (
        HydrateEnvelope(session="s1", epoch="e1", seq=4, files={"a.js": "1"}, deleted=("b.js",)),
        '{"kind":"hydrate","session":"s1","epoch":"e1","seq":4,"files":{"a.js":"1"},'
        '"deleted":["b.js"],"binary":[]}',
    ),
    (
        HydrateEnvelope(session="s1", seq=4, files={"a.png": "QQ=="}, binary=("a.png",)),
        '{"kind":"hydrate","session":"s1","epoch":null,"seq":4,"files":{"a.png":"QQ=="},'
        '"deleted":[],"binary":["a.png"]}',
    ),
]


@pytest.mark.parametrize(("envelope", "wire"), WIRE, ids=lambda v: getattr(v, "kind", ""))
def test_the_wire_format_is_unchanged_and_parses_back(envelope: Envelope, wire: str) -> None:
    assert encode_envelope(envelope) == wire
    assert parse_envelope(wire) == envelope


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        # cjson writes keys in any order (promote.lua, claim_leased.lua, agent_gone).
        ('{"session":"s1","kind":"assign"}', AssignEnvelope(session="s1")),
        (
            '{"detail":"gone","kind":"status","state":"offline"}',
            StatusEnvelope(state="offline", detail="gone"),
        ),
        ('{"kind":"applied","seq":12}', AppliedEnvelope(seq=12)),  # report script's head + seq
        # Written before epochs and origins: the listener's current epoch is meant.
        ('{"kind":"patch","seq":1,"changes":[]}', PatchEnvelope(seq=1, changes=())),
        (
            '{"kind":"hydrate","session":"s","seq":0,"files":{}}',
            HydrateEnvelope(session="s", seq=0, files={}),
        ),
        # A newer publisher's extra field is ignored, not a reason to drop the envelope.
        ('{"kind":"applied","seq":1,"machine":"m1"}', AppliedEnvelope(seq=1)),
    ],
)
def test_what_scripts_and_older_publishers_wrote_parses(published: str, expected: Envelope) -> None:
    assert parse_envelope(published) == expected


@pytest.mark.parametrize(
    ("message", "where"),
    [
        ("not json", "the message"),
        (json.dumps({"kind": "resync"}), "the message"),  # the hub's own word, never published
        (json.dumps({"seq": 1}), "the message"),
        (json.dumps({"kind": "ended", "reason": "idle"}), "ended.status"),
        (json.dumps({"kind": "applied", "seq": "many"}), "applied.seq"),
        (json.dumps({"kind": "hydrate", "session": "s", "seq": 1, "files": []}), "hydrate.files"),
    ],
)
def test_anything_else_is_malformed_and_says_where(message: str, where: str) -> None:
    with pytest.raises(MalformedEnvelope, match=f"^{where}: "):
        parse_envelope(message)
