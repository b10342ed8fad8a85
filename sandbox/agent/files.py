"""The workspace on disk: a template's project files, the shared node_modules, safe writes.

    workspace/
      index.html, package.json, vite.config.js, src/...   project files (hydrate replaces them)
      node_modules -> {templates}/{template}/node_modules  shared, pre-installed, never written
                                                          (or a private install: installer)
      .vite/                                              Vite's cache, private to this machine
      .preview-agent/state.json, tmp/                     the agent's own state

Every change set is validated as a whole before the first byte is written, so a refused patch
leaves the disk untouched. Each file is written to a temporary file in the agent directory
(same filesystem, outside Vite's watcher) and renamed into place, so Vite never reads half a
file. A path is refused if any existing component on its way is a symlink: resolving and
checking containment alone would still let a write go through the node_modules link into the
shared install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sandbox.agent.errors import PatchRejected, TemplateMissing
from sandbox.agent.paths import (
    AGENT_DIR,
    BASE64,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    NODE_MODULES,
    RESERVED_NAMES,
    RejectCode,
    check_no_nesting,
    check_path,
    decode_content,
    encode_content,
)

# Template files that are not project files: the install's lockfile and its products.
TEMPLATE_SKIP = frozenset({NODE_MODULES, "package-lock.json"})


@dataclass(frozen=True)
class Write:
    path: str
    data: bytes


@dataclass(frozen=True)
class Delete:
    path: str


Change = Write | Delete


def parse_changes(raw: object) -> list[Change]:
    """A patch's `changes`, validated: names, types and sizes (not yet the disk)."""
    if not isinstance(raw, list) or not raw:
        raise PatchRejected(RejectCode.INVALID_CHANGE, "changes must be a non-empty list")
    if len(raw) > MAX_FILES:
        raise PatchRejected(RejectCode.TOO_MANY_FILES, f"more than {MAX_FILES} changes")
    changes: list[Change] = []
    for item in raw:
        if not isinstance(item, dict):
            raise PatchRejected(RejectCode.INVALID_CHANGE, "a change must be an object")
        path = check_path(item.get("path"))
        if item.get("delete") is True and set(item) <= {"path", "delete"}:
            changes.append(Delete(path))
        elif set(item) == {"path", "content"}:
            changes.append(Write(path, encode_content(path, item["content"])))
        elif set(item) == {"path", "content", "encoding"} and item["encoding"] == BASE64:
            changes.append(Write(path, decode_content(path, item["content"])))
        else:
            raise PatchRejected(
                RejectCode.INVALID_CHANGE,
                f"{path!r}: expected {{path, content[, encoding: base64]}} or {{path, delete}}",
            )
    paths = [change.path for change in changes]
    if len(set(paths)) != len(paths):
        # The gateway refuses this too; one change per path keeps a patch's meaning unambiguous.
        raise PatchRejected(RejectCode.INVALID_CHANGE, "a path appears twice in one patch")
    _check_total(change.data for change in changes if isinstance(change, Write))
    check_no_nesting([change.path for change in changes if isinstance(change, Write)])
    return changes


def parse_files(raw: object, binary: object = ()) -> list[Write]:
    """A hydrate's `files` ({path: content}), validated like a patch, with the snapshot caps;
    the paths in `binary` hold base64."""
    if not isinstance(raw, dict):
        raise PatchRejected(RejectCode.INVALID_CHANGE, "files must be an object")
    if len(raw) > MAX_FILES:
        raise PatchRejected(RejectCode.TOO_MANY_FILES, f"more than {MAX_FILES} files")
    if (
        not isinstance(binary, list | tuple)
        or len(binary) > len(raw)
        or not all(isinstance(path, str) and path in raw for path in binary)
    ):
        raise PatchRejected(RejectCode.INVALID_CHANGE, "binary must list paths of files")
    encoded = set(binary)
    writes = [
        Write(
            check_path(path),
            decode_content(path, content) if path in encoded else encode_content(path, content),
        )
        for path, content in raw.items()
    ]
    _check_total(write.data for write in writes)
    check_no_nesting([write.path for write in writes])
    return writes


def parse_deleted(raw: object) -> set[str]:
    """A hydrate's `deleted` list: template files the session no longer has."""
    if not isinstance(raw, list | tuple) or len(raw) > MAX_FILES:
        raise PatchRejected(RejectCode.INVALID_CHANGE, "deleted must be a list of paths")
    return {check_path(path) for path in raw}


def overlay(base: list[Write], writes: list[Write], deleted: set[str]) -> list[Write]:
    """The template's files, minus what was deleted, with the snapshot's files on top."""
    merged = {write.path: write for write in base if write.path not in deleted}
    merged.update({write.path: write for write in writes})
    result = list(merged.values())
    check_no_nesting([write.path for write in result])
    return result


def _check_total(blobs: Iterable[bytes]) -> None:
    if sum(len(blob) for blob in blobs) > MAX_TOTAL_BYTES:
        raise PatchRejected(RejectCode.TOO_LARGE, f"more than {MAX_TOTAL_BYTES} bytes in total")


class Workspace:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # Real path: Vite reports files by real path, and containment checks need one too.
        self.root = root.resolve()
        self.agent_dir = self.root / AGENT_DIR
        self.tmp_dir = self.agent_dir / "tmp"
        self.template_dir: Path | None = None

    def prepare(
        self, template_dir: Path, *, copy_project: bool, keep_modules: bool = False
    ) -> None:
        """Link the shared node_modules and, for a fresh workspace, copy the template's files.
        `keep_modules`: the workspace's own node_modules (a dependency install that is still
        current, sandbox.agent.installer) stays instead."""
        modules = template_dir / NODE_MODULES
        if not (template_dir / "package.json").is_file() or not modules.is_dir():
            raise TemplateMissing(
                f"template {template_dir} is missing or not installed "
                "(run: python -m sandbox.templates.install)"
            )
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_dir.iterdir():
            stale.unlink(missing_ok=True)
        self.template_dir = template_dir
        if copy_project:
            for entry in template_dir.iterdir():
                if entry.name in TEMPLATE_SKIP or entry.name.startswith(".vite"):
                    continue
                # Symlinks in the template (the shared preview plugin) become plain files.
                if entry.is_dir():
                    shutil.copytree(entry, self.root / entry.name, dirs_exist_ok=True)
                else:
                    shutil.copyfile(entry, self.root / entry.name)
        if not (keep_modules and (self.root / NODE_MODULES).is_dir()):
            self._link_node_modules(modules.resolve())

    def template_writes(self) -> list[Write]:
        """The template's project files as writes (what a fresh workspace starts with)."""
        if self.template_dir is None:
            return []
        writes = []
        for path in sorted(self.template_dir.rglob("*")):
            rel = path.relative_to(self.template_dir)
            if rel.parts[0] in TEMPLATE_SKIP or rel.parts[0].startswith(".vite"):
                continue
            if path.is_file():  # follows the shared plugin's symlink, like prepare's copy
                writes.append(Write(rel.as_posix(), path.read_bytes()))
        return writes

    def _link_node_modules(self, target: Path) -> None:
        link = self.root / NODE_MODULES
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        tmp = self.agent_dir / "node_modules.link"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)

    def apply(self, changes: list[Change]) -> list[str]:
        """Write a validated patch; returns the paths whose content actually changed."""
        for change in changes:
            self._check_target(change.path)
        changed: list[str] = []
        for change in changes:
            if isinstance(change, Write):
                if self._write(change):
                    changed.append(change.path)
            elif self._delete(change.path):
                changed.append(change.path)
        return changed

    def replace_all(self, writes: list[Write]) -> list[str]:
        """Make the project files exactly `writes`; returns the paths that changed."""
        wanted = {write.path for write in writes}
        changed: list[str] = []
        # What the snapshot does not have goes, and so does every symlink: none can come from
        # the editor, so one found here was not made by this protocol.
        for rel, is_link in list(self._project_entries()):
            if is_link or rel not in wanted:
                _remove(self.root / rel)
                changed.append(rel)
        for write in writes:
            target = self.root / write.path
            if target.is_dir():
                # Emptied above: no wanted file lies beneath a wanted file (check_no_nesting).
                shutil.rmtree(target)
            self._check_target(write.path)
            if self._write(write) and write.path not in changed:
                changed.append(write.path)
        self._remove_empty_dirs()
        return changed

    def _check_target(self, path: str) -> None:
        current = self.root
        parts = path.split("/")
        for depth, part in enumerate(parts, start=1):
            current = current / part
            if current.is_symlink():
                raise PatchRejected(RejectCode.SYMLINK, f"{path!r} goes through a symlink")
            last = depth == len(parts)
            if current.exists() and (current.is_dir() if last else not current.is_dir()):
                kind = "a directory" if last else "a file, not a directory"
                shown = "/".join(parts[:depth])
                raise PatchRejected(RejectCode.INVALID_PATH, f"{shown!r} is {kind}")
        # Belt and braces: whatever the walk missed, the real path must stay inside.
        if not current.resolve().is_relative_to(self.root):
            raise PatchRejected(RejectCode.SYMLINK, f"{path!r} leaves the workspace")

    def _write(self, write: Write) -> bool:
        target = self.root / write.path
        with contextlib.suppress(OSError):
            if target.read_bytes() == write.data:
                # Rewriting identical content would make Vite reload for nothing.
                return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "wb") as tmp_file:
                tmp_file.write(write.data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return True

    def _delete(self, path: str) -> bool:
        try:
            (self.root / path).unlink()
        except FileNotFoundError:
            return False
        return True

    def _project_entries(self) -> Iterator[tuple[str, bool]]:
        """Every project file and symlink (relative path, is_symlink); not reserved names."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            if here == self.root:
                dirnames[:] = [name for name in dirnames if name not in RESERVED_NAMES]
                filenames = [name for name in filenames if name not in RESERVED_NAMES]
            for name in [*dirnames, *filenames]:
                path = here / name
                if path.is_symlink() or name in filenames:
                    yield path.relative_to(self.root).as_posix(), path.is_symlink()

    def _remove_empty_dirs(self) -> None:
        for dirpath, _, _ in sorted(os.walk(self.root), key=lambda entry: -len(entry[0])):
            here = Path(dirpath)
            if here == self.root or here.relative_to(self.root).parts[0] in RESERVED_NAMES:
                continue
            with contextlib.suppress(OSError):
                here.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
