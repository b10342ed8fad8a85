"""Binary files in a patch (docs/protocol.md, "Binary files"): `{path, content, encoding:
"base64"}`, read by the gateway (app.realtime.frames) and again by the agent
(sandbox.agent.files), which must agree on what they take; and how the edit log's snapshot hash
tells a binary file from a text file and a deletion (pool.edits.edit_log.snapshot_of)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.realtime.frames import FrameError, parse_editor_frame
from pool.edits.edit_log import BINARY_MARK, TOMBSTONE, Change, snapshot_of
from sandbox.agent.errors import PatchRejected
from sandbox.agent.files import Write, parse_changes, parse_files
from sandbox.agent.paths import MAX_FILE_BYTES, MAX_TOTAL_BYTES

# A 1x1 PNG: its bytes hold NUL, which text content may not.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAHnOcQAAAAABJRU5ErkJggg=="
)
AT_CAP = base64.b64encode(bytes(range(256)) * (MAX_FILE_BYTES // 256)).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def binary(path: str, content: object) -> dict[str, Any]:
    return {"path": path, "content": content, "encoding": "base64"}


def gateway_reads(change: dict[str, Any]) -> Any:
    return parse_editor_frame(json.dumps({"v": 1, "type": "patch", "seq": 1, "changes": [change]}))


ACCEPTED = [
    (binary("assets/logo.png", b64(PNG)), PNG),
    (binary("fonts/Inter.woff2", AT_CAP), base64.b64decode(AT_CAP)),  # 512 KiB decoded
    (binary("empty.bin", ""), b""),
    (binary("all.bin", b64(bytes(range(256)))), bytes(range(256))),
]

# What neither side takes. The gateway answers `invalid_frame`; the agent, which decodes again
# (it trusts nothing), rejects with the code given.
REFUSED = [
    pytest.param(binary("a.png", "QQ="), "invalid_change", id="padding-missing"),
    pytest.param(binary("a.png", "QQ"), "invalid_change", id="no-padding"),
    pytest.param(binary("a.png", "QQ==="), "invalid_change", id="padding-extra"),
    pytest.param(binary("a.png", "QQ==QQ=="), "invalid_change", id="padding-inside"),
    pytest.param(binary("a.png", "=QQ="), "invalid_change", id="padding-first"),
    pytest.param(binary("a.png", "QQ==\n"), "invalid_change", id="newline"),
    pytest.param(binary("a.png", "QU JD"), "invalid_change", id="space"),
    pytest.param(binary("a.png", "-_8="), "invalid_change", id="base64url"),
    pytest.param(binary("a.png", "é123"), "invalid_change", id="not-ascii"),
    pytest.param(binary("a.png", "Q"), "invalid_change", id="one-char"),
    pytest.param(binary("a.png", 123), "invalid_change", id="content-a-number"),
    pytest.param(binary("a.png", None), "invalid_change", id="content-null"),
    pytest.param(binary("a.png", AT_CAP + "AAAA"), "too_large", id="over-the-cap"),
    pytest.param(binary("a.png", "A" * 8_000_000), "too_large", id="far-over-the-cap"),
    pytest.param({**binary("a.png", "QQ=="), "encoding": "hex"}, "invalid_change", id="hex"),
    pytest.param({**binary("a.png", "QQ=="), "encoding": "BASE64"}, "invalid_change", id="case"),
    pytest.param({**binary("a.png", "QQ=="), "encoding": 64}, "invalid_change", id="number"),
    pytest.param(
        {"path": "a.png", "delete": True, "encoding": "base64"}, "invalid_change", id="delete"
    ),
    pytest.param({"path": "a.png", "encoding": "base64"}, "invalid_change", id="no-content"),
    pytest.param(binary("../a.png", "QQ=="), "invalid_path", id="path"),
]


@pytest.mark.parametrize(("change", "data"), ACCEPTED)
def test_both_sides_take_padded_base64_and_the_agent_writes_its_bytes(
    change: dict[str, Any], data: bytes
) -> None:
    (read,) = gateway_reads(change).changes
    assert (read.path, read.content, read.encoding) == (change["path"], change["content"], "base64")
    assert parse_changes([change]) == [Write(change["path"], data)]


@pytest.mark.parametrize(("change", "code"), REFUSED)
def test_both_sides_refuse_malformed_binary_changes(change: dict[str, Any], code: str) -> None:
    with pytest.raises(FrameError) as refused:
        gateway_reads(change)
    assert refused.value.code == "invalid_frame"
    with pytest.raises(PatchRejected) as rejected:
        parse_changes([{"path": "ok.js", "content": "fine"}, change])
    assert (rejected.value.code, bool(rejected.value.message)) == (code, True)


def test_the_gateway_takes_only_canonical_base64() -> None:
    # "QR==" decodes like "QQ==" (the unused bits are ignored): two texts for one file would
    # give two digests to one resend. The agent decodes both alike, so it need not refuse it.
    with pytest.raises(FrameError, match="canonical"):
        gateway_reads(binary("a.bin", "QR=="))


def test_nul_is_refused_in_text_only() -> None:
    with pytest.raises(FrameError, match="NUL"):
        gateway_reads({"path": "a.png", "content": PNG.decode("latin-1")})
    assert b"\x00" in PNG and gateway_reads(binary("a.png", b64(PNG)))


def test_a_text_file_as_long_as_a_binary_cap_allows_is_still_refused() -> None:
    # The base64 of a 512 KiB file is 683 KiB of text; as text it is over the cap.
    with pytest.raises(FrameError, match="at most"):
        gateway_reads({"path": "a.txt", "content": AT_CAP})


def test_the_agents_total_counts_decoded_bytes() -> None:
    # 16 files at the cap are 8 MiB decoded (accepted), though 10.7 MiB of base64.
    changes = [binary(f"f{i}.bin", AT_CAP) for i in range(MAX_TOTAL_BYTES // MAX_FILE_BYTES)]
    assert sum(len(w.data) for w in parse_changes(changes) if isinstance(w, Write)) == (
        MAX_TOTAL_BYTES
    )
    with pytest.raises(PatchRejected) as refused:
        parse_changes([*changes, binary("one-more.bin", "AAAA")])
    assert refused.value.code == "too_large"


def test_a_hydrate_decodes_the_files_it_lists_as_binary() -> None:
    files = {"logo.png": b64(PNG), "logo.txt": b64(PNG), "src/App.jsx": "x"}
    writes = parse_files(files, ["logo.png"])
    assert writes == [
        Write("logo.png", PNG),
        Write("logo.txt", b64(PNG).encode()),  # not listed: its text, as it came
        Write("src/App.jsx", b"x"),
    ]
    assert parse_files(files) == parse_files(files, [])  # `binary` is optional


@pytest.mark.parametrize(
    ("files", "listed", "code"),
    [
        ({"a.png": "QQ="}, ["a.png"], "invalid_change"),
        ({"a.png": "QQ=="}, ["b.png"], "invalid_change"),  # not one of the files
        ({"a.png": "QQ=="}, "a.png", "invalid_change"),
        ({"a.png": "QQ=="}, [["a.png"]], "invalid_change"),  # unhashable
        ({"a.png": "QQ=="}, [None], "invalid_change"),
        ({"a.png": "QQ=="}, {"a.png": True}, "invalid_change"),
        ({"a.png": "QQ=="}, ["a.png"] * 2, "invalid_change"),  # longer than files
        ({"a.png": AT_CAP + "AAAA"}, ["a.png"], "too_large"),
        ({f"f{i}": AT_CAP for i in range(17)}, [f"f{i}" for i in range(17)], "too_large"),
    ],
)
def test_a_hydrate_with_a_bad_binary_list_or_content_is_rejected(
    files: dict[str, str], listed: object, code: str
) -> None:
    with pytest.raises(PatchRejected) as rejected:
        parse_files(files, listed)
    assert rejected.value.code == code


def test_a_binary_change_is_appended_with_its_encoding_and_a_text_change_as_before() -> None:
    assert Change("a.png", "QQ==", binary=True).as_json() == binary("a.png", "QQ==")
    assert Change("a.js", "x").as_json() == {"path": "a.js", "content": "x"}
    assert Change("a.js", None).as_json() == {"path": "a.js", "delete": True}


def test_the_snapshot_hash_tells_binary_files_text_files_and_deletions_apart() -> None:
    stored = {
        "logo.png": BINARY_MARK + b64(PNG),
        "empty.bin": BINARY_MARK,
        "index.html": TOMBSTONE,
        # Text that looks like the mark's tail is text: only a value starting with NUL is not.
        "notes.txt": "base64:QQ==",
        "src/App.jsx": "export default 1\n",
    }
    snapshot = snapshot_of(7, stored, "e1")
    assert snapshot.seq == 7 and snapshot.epoch == "e1"
    assert snapshot.files == {
        "logo.png": b64(PNG),
        "empty.bin": "",
        "notes.txt": "base64:QQ==",
        "src/App.jsx": "export default 1\n",
    }
    assert snapshot.deleted == ["index.html"]
    assert snapshot.binary == ["empty.bin", "logo.png"]


@pytest.mark.parametrize(
    "changes",
    [
        [{"path": "a.txt", "content": ""}, {"path": "a.txt", "content": "x" * 100}],
        [
            {"path": "a.png", "content": "AAAA", "encoding": "base64"},
            {"path": "a.png", "delete": True},
        ],
    ],
)
def test_a_path_named_twice_in_one_patch_is_refused_on_both_sides(
    changes: list[dict[str, Any]],
) -> None:
    # Each change is accounted against the file's stored size: twice would count it twice.
    frame = {"v": 1, "type": "patch", "seq": 1, "changes": changes}
    with pytest.raises(FrameError, match="appears twice"):
        parse_editor_frame(json.dumps(frame))
    with pytest.raises(PatchRejected, match="twice"):
        parse_changes(changes)
