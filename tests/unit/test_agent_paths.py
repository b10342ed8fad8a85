"""Which file names and change sets the sandbox agent accepts, and what it refuses on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.agent.errors import PatchRejected
from sandbox.agent.files import Delete, Workspace, Write, parse_changes, parse_files
from sandbox.agent.paths import MAX_FILE_BYTES, MAX_FILES, check_path, encode_content

ACCEPTED = [
    "index.html",
    "src/App.jsx",
    "src/components/Button.web.tsx",
    "src/.env.local",
    "src/node_modules/x.js",  # only the top-level node_modules is the shared install
    "assets/ünïcødé ✓.txt",
    "a" * 256,
    "src/" + "é" * 126,  # 4 + 252 bytes
]

REFUSED = [
    ("", "invalid_path"),
    ("../x", "invalid_path"),
    ("a/../../x", "invalid_path"),
    ("a/./b", "invalid_path"),
    (".", "invalid_path"),
    ("src/", "invalid_path"),
    ("src//App.jsx", "invalid_path"),
    ("/etc/passwd", "invalid_path"),
    ("//server/share", "invalid_path"),
    ("src\\App.jsx", "invalid_path"),
    ("..\\x", "invalid_path"),
    ("src/a\x00b.js", "invalid_path"),
    ("src/a\nb.js", "invalid_path"),
    ("src/a\x7fb.js", "invalid_path"),
    ("src/bad\udcff.js", "invalid_path"),  # a lone surrogate: not encodable as UTF-8
    ("a" * 257, "invalid_path"),
    ("src/" + "é" * 127, "invalid_path"),  # 258 bytes
    ("node_modules/react/index.js", "reserved_path"),
    ("node_modules", "reserved_path"),
    (".vite/deps/react.js", "reserved_path"),
    (".preview-agent/state.json", "reserved_path"),
]


@pytest.mark.parametrize("path", ACCEPTED)
def test_accepted_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(("path", "code"), REFUSED)
def test_refused_paths(path: str, code: str) -> None:
    with pytest.raises(PatchRejected) as refused:
        check_path(path)
    assert refused.value.code == code
    assert refused.value.message


@pytest.mark.parametrize("path", [None, 3, ["a"], {"a": 1}])
def test_a_path_must_be_a_string(path: object) -> None:
    with pytest.raises(PatchRejected) as refused:
        check_path(path)
    assert refused.value.code == "invalid_path"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("x" * (MAX_FILE_BYTES + 1), "too_large"),
        ("é" * (MAX_FILE_BYTES // 2 + 1), "too_large"),  # the cap counts UTF-8 bytes
        (b"bytes", "invalid_change"),
        (None, "invalid_change"),
        ("\udcff", "invalid_change"),
    ],
)
def test_refused_content(content: object, code: str) -> None:
    with pytest.raises(PatchRejected) as refused:
        encode_content("src/a.js", content)
    assert refused.value.code == code


def test_content_at_the_cap_is_accepted() -> None:
    assert len(encode_content("a.txt", "x" * MAX_FILE_BYTES)) == MAX_FILE_BYTES


def test_parse_changes_reads_writes_and_deletes() -> None:
    changes = parse_changes(
        [{"path": "src/a.js", "content": "é"}, {"path": "src/b.js", "delete": True}]
    )
    assert changes == [Write("src/a.js", "é".encode()), Delete("src/b.js")]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ([], "invalid_change"),
        ({"path": "a"}, "invalid_change"),
        (["a.js"], "invalid_change"),
        ([{"path": "a.js"}], "invalid_change"),
        ([{"path": "a.js", "delete": False}], "invalid_change"),
        ([{"path": "a.js", "content": "x", "delete": True}], "invalid_change"),
        ([{"path": "a.js", "content": "x", "mode": "755"}], "invalid_change"),
        ([{"path": "a.js", "content": "x"}, {"path": "../b", "content": "x"}], "invalid_path"),
        ([{"path": "a", "content": "x"}, {"path": "a/b", "content": "x"}], "invalid_path"),
        ([{"path": f"f{i}", "delete": True} for i in range(MAX_FILES + 1)], "too_many_files"),
        (
            [{"path": f"f{i}", "content": "x" * MAX_FILE_BYTES} for i in range(17)],
            "too_large",  # 17 x 512 KiB: over the 8 MiB total
        ),
    ],
)
def test_parse_changes_refuses_the_whole_set(changes: object, code: str) -> None:
    with pytest.raises(PatchRejected) as refused:
        parse_changes(changes)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([], "invalid_change"),
        ({"../x": "y"}, "invalid_path"),
        ({"a.js": 1}, "invalid_change"),
        ({f"f{i}": "" for i in range(MAX_FILES + 1)}, "too_many_files"),
    ],
)
def test_parse_files_refuses_bad_snapshots(files: object, code: str) -> None:
    with pytest.raises(PatchRejected) as refused:
        parse_files(files)
    assert refused.value.code == code


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    template = tmp_path / "template"
    (template / "node_modules" / "react").mkdir(parents=True)
    (template / "src").mkdir()
    (template / "package.json").write_text("{}")
    (template / "package-lock.json").write_text("{}")
    (template / "src" / "App.jsx").write_text("app")
    space = Workspace(tmp_path / "workspace")
    space.prepare(template, copy_project=True)
    return space


def test_prepare_copies_project_files_and_links_node_modules(workspace: Workspace) -> None:
    root = workspace.root
    assert (root / "src/App.jsx").read_text() == "app"
    assert not (root / "package-lock.json").exists()
    assert (root / "node_modules").is_symlink()
    assert (root / "node_modules/react").is_dir()


@pytest.mark.parametrize(
    ("setup", "path", "code"),
    [
        ("link-dir", "src/out/x.js", "symlink_escape"),
        ("link-file", "src/out.js", "symlink_escape"),
        ("link-inside", "src/alias/App.jsx", "symlink_escape"),
        ("file", "src/App.jsx/x.js", "invalid_path"),
        ("dir", "src", "invalid_path"),
    ],
)
def test_disk_checks_refuse_symlinks_and_shape_conflicts(
    workspace: Workspace, tmp_path: Path, setup: str, path: str, code: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    src = workspace.root / "src"
    if setup == "link-dir":
        (src / "out").symlink_to(outside, target_is_directory=True)
    elif setup == "link-file":
        (src / "out.js").symlink_to(outside / "target.js")
    elif setup == "link-inside":
        # Even a link that stays inside: writes go to the file's own name, never through one.
        (src / "alias").symlink_to(src, target_is_directory=True)
    before = sorted(p.name for p in src.iterdir())

    with pytest.raises(PatchRejected) as refused:
        workspace.apply([Write(path, b"x")])

    assert refused.value.code == code
    assert sorted(p.name for p in src.iterdir()) == before
    assert list(outside.iterdir()) == []


def test_a_refused_change_writes_nothing_of_its_patch(workspace: Workspace) -> None:
    (workspace.root / "src" / "out").symlink_to("/tmp", target_is_directory=True)
    with pytest.raises(PatchRejected):
        workspace.apply([Write("src/first.js", b"1"), Write("src/out/x.js", b"2")])
    assert not (workspace.root / "src/first.js").exists()


def test_apply_reports_only_what_changed(workspace: Workspace) -> None:
    changed = workspace.apply(
        [
            Write("src/App.jsx", b"app"),  # identical: not rewritten
            Write("src/new/deep.js", b"new"),
            Delete("src/missing.js"),
        ]
    )
    assert changed == ["src/new/deep.js"]
    assert workspace.apply([Delete("src/new/deep.js")]) == ["src/new/deep.js"]


def test_replace_all_makes_the_project_exactly_the_snapshot(workspace: Workspace) -> None:
    root = workspace.root
    (root / "src/old").mkdir()
    (root / "src/old/stale.js").write_text("stale")
    (root / "src/link").symlink_to("/tmp", target_is_directory=True)
    (root / "src/Dir.jsx").mkdir()  # where the snapshot wants a file

    changed = workspace.replace_all(
        [Write("src/App.jsx", b"app"), Write("src/Dir.jsx", b"d"), Write("README.md", b"r")]
    )

    assert sorted(changed) == [
        "README.md",
        "package.json",
        "src/Dir.jsx",
        "src/link",
        "src/old/stale.js",
    ]
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.relative_to(root).parts[0] not in {"node_modules", ".preview-agent"}
    )
    assert files == ["README.md", "src", "src/App.jsx", "src/Dir.jsx"]
    assert (root / "node_modules").is_symlink()  # the shared install is not project files
