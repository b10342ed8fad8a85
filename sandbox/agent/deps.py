"""What a project's package.json asks to install, and what the agent does about it.

Pure decisions, no I/O (sandbox.agent.installer acts on them). A workspace starts on its
template's shared install (node_modules is a symlink to it). When a hydrate or a patch writes
package.json, the dependencies it wants are compared with what node_modules holds:

    the same as installed            keep: nothing to do
    the same as the template's own   share: back to the template's shared install, no npm
    anything else                    install: npm into a private copy of node_modules

What is wanted is the template's dependencies with the project's on top. A package the project
leaves out stays (the template's entry files need their framework whatever the file says), and
the packages the dev server itself runs on (the template's devDependencies, Vite, Expo) keep the
template's version: another one would change the program the agent supervises, so such a change
is reported in a log line and not applied.

Only registry packages are installed: names npm could publish, and specs that are versions,
ranges, tags or `npm:` aliases of those. A git, file, link or URL dependency would fetch code
from hosts the machine's egress filter does not let it reach, or link files from outside the
workspace into it.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.agent.errors import DependencyFailed

MANIFEST = "package.json"
FIELDS = ("dependencies", "devDependencies", "optionalDependencies")
MAX_DEPENDENCIES = 300
MAX_NAME = 214  # npm's own limit
MAX_SPEC = 256
NAME = re.compile(r"(?:@[a-z0-9~-][a-z0-9._~-]*/)?[a-zA-Z0-9~-][a-zA-Z0-9._~-]*")
# A version, a range (`^1.2`, `>=1 <2 || 3.x`) or a dist-tag (`latest`): what the registry
# resolves. No `:` or `/`, which every git, file, link and URL spec has.
# Versions, ranges and tags; never starting with a dot, which npm reads as a directory
# (`..` links the folder above instead of fetching anything).
REGISTRY_SPEC = re.compile(r"(?!\s*\.)[A-Za-z0-9 .^~<>=|*+_-]*")
ALIAS = re.compile(r"npm:(?P<name>@?[^@\s]+)(?:@(?P<spec>.*))?")
# The dev servers' own packages: pinned to the template's version in every template that has them.
TOOLCHAIN = frozenset({"vite", "expo", "@expo/metro-runtime"})
# npm's error lines ("npm error" since npm 10, "npm ERR!" before), and those that are not about
# the install (where its log went; a bare "404" between the lines of a 404).
NPM_ERROR = re.compile(r"^npm (?:error|ERR!) ?")
NPM_NOISE = re.compile(r"\s*(\d{3})?\s*|Log files were not written.*|A complete log of this run.*")
MAX_ERROR_LINES = 40


class Action(enum.Enum):
    KEEP = "keep"
    SHARE = "share"
    INSTALL = "install"


@dataclass(frozen=True)
class DependencySet:
    """A package.json's dependencies: which spec each package gets, and in which field.

    Equal when the specs are: a package moved from dependencies to devDependencies installs the
    same files, so it is no reason to run npm."""

    specs: tuple[tuple[str, str], ...] = ()
    fields: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, chosen: Mapping[str, tuple[str, str]]) -> DependencySet:
        """From {name: (field, spec)}."""
        names = sorted(chosen)
        return cls(
            tuple((name, chosen[name][1]) for name in names),
            tuple((name, chosen[name][0]) for name in names),
        )

    def as_fields(self) -> dict[str, dict[str, str]]:
        """As package.json has them: {field: {name: spec}}, without empty fields."""
        where = dict(self.fields)
        out: dict[str, dict[str, str]] = {}
        for name, spec in self.specs:
            out.setdefault(where.get(name, "dependencies"), {})[name] = spec
        return out


@dataclass(frozen=True)
class Plan:
    action: Action
    wanted: DependencySet
    # "+clsx@^2.1.0", "vue@3.5.40 (was 3.5.46)", "-left-pad": for status details and errors.
    changes: tuple[str, ...] = ()
    # Packages added or changed: those npm may fail on.
    packages: tuple[str, ...] = ()
    # Toolchain packages whose spec the project changed, left at the template's.
    ignored: tuple[str, ...] = ()

    def describe(self, limit: int = 300) -> str:
        text = ", ".join(self.changes) or "the template's dependencies"
        return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class InstallLimits:
    """How long one `npm install` may take, and how much it may add to node_modules (in bytes of
    files, over the template's shared install)."""

    timeout: float = 120.0
    max_growth: int = 256 * 1024 * 1024

    def over(self, size: int, base: int) -> bool:
        return size - base > self.max_growth

    def growth_failure(self, size: int, base: int) -> str:
        return (
            f"node_modules would grow by {_mib(size - base)}, over the limit of "
            f"{_mib(self.max_growth)}"
        )


def parse_manifest(text: str) -> DependencySet:
    """The dependencies of package.json's text; raises DependencyFailed pointing at the problem."""
    try:
        raw = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise DependencyFailed(
            f"package.json is not valid JSON: {exc.msg}", exc.lineno, exc.colno
        ) from None
    if not isinstance(raw, dict):
        raise DependencyFailed("package.json must be a JSON object", 1, 1)
    return _parse_fields(raw, text)


def _parse_fields(raw: Mapping[str, Any], text: str) -> DependencySet:
    chosen: dict[str, tuple[str, str]] = {}
    count = 0
    # Later fields win, so a package listed twice counts as in `dependencies`, as npm takes it.
    for name_of_field in reversed(FIELDS):
        entries = raw.get(name_of_field, {})
        if not isinstance(entries, dict):
            line, column = locate(text, name_of_field)
            raise DependencyFailed(
                f"{name_of_field} must be an object of name: version", line, column
            )
        count += len(entries)
        if count > MAX_DEPENDENCIES:
            line, column = locate(text, name_of_field)
            raise DependencyFailed(f"more than {MAX_DEPENDENCIES} dependencies", line, column)
        for name, spec in entries.items():
            problem = check_dependency(name, spec)
            if problem is not None:
                line, column = locate(text, name)
                raise DependencyFailed(problem, line, column)
            chosen[name] = (name_of_field, spec)
    return DependencySet.of(chosen)


def check_dependency(name: str, spec: object) -> str | None:
    """Why this dependency cannot be installed in a preview, or None if it can."""
    if len(name) > MAX_NAME or not NAME.fullmatch(name):
        return f"{name[:80]!r} is not an npm package name"
    if not isinstance(spec, str) or len(spec) > MAX_SPEC:
        return f"{name}: the version must be a string of at most {MAX_SPEC} characters"
    alias = ALIAS.fullmatch(spec)
    if alias is not None:
        target, target_spec = alias.group("name"), alias.group("spec") or ""
        if len(target) <= MAX_NAME and NAME.fullmatch(target):
            if REGISTRY_SPEC.fullmatch(target_spec):
                return None
    elif REGISTRY_SPEC.fullmatch(spec):
        return None
    return (
        f"{name}: {spec[:80]!r} is not a version from the registry (a preview installs "
        "registry packages only: no git, file, link or URL dependencies)"
    )


def wanted(project: DependencySet, template: DependencySet) -> tuple[DependencySet, list[str]]:
    """The template's dependencies with the project's on top (see the module docstring), and a
    note for each toolchain package whose spec was left at the template's."""
    template_fields = dict(template.fields)
    template_specs = dict(template.specs)
    pinned = TOOLCHAIN | {n for n, f in template_fields.items() if f == "devDependencies"}
    chosen = {name: (template_fields[name], spec) for name, spec in template.specs}
    project_fields = dict(project.fields)
    ignored = []
    for name, spec in project.specs:
        if name in pinned and name in template_specs:
            if spec != template_specs[name]:
                ignored.append(
                    f"{name} stays at {template_specs[name]}, the template's dev server "
                    f"(package.json asks for {spec})"
                )
            continue
        chosen[name] = (project_fields.get(name, "dependencies"), spec)
    return DependencySet.of(chosen), ignored


def decide(
    project: DependencySet, installed: DependencySet | None, template: DependencySet
) -> Plan:
    """What to do about `project`'s dependencies, given what node_modules holds (None: a private
    install whose record is unreadable, so nothing is known about it)."""
    target, ignored = wanted(project, template)
    if installed is not None and target == installed:
        return Plan(Action.KEEP, target, ignored=tuple(ignored))
    before = dict((installed or template).specs)
    after = dict(target.specs)
    changes: list[str] = []
    packages: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            changes.append(f"-{name}")
        elif name not in before:
            changes.append(f"+{name}@{after[name]}")
            packages.append(name)
        elif before[name] != after[name]:
            changes.append(f"{name}@{after[name]} (was {before[name]})")
            packages.append(name)
    action = Action.SHARE if target == template else Action.INSTALL
    return Plan(action, target, tuple(changes), tuple(packages), tuple(ignored))


def install_manifest(plan: Plan) -> dict[str, Any]:
    """The package.json npm installs from: the wanted dependencies and nothing else of the
    project's (no scripts, workspaces or overrides)."""
    return {"name": "preview-workspace", "version": "0.0.0", "private": True} | (
        plan.wanted.as_fields()
    )


def with_common_packages(lock: Mapping[str, Any], common: Mapping[str, Any]) -> dict[str, Any]:
    """`lock` with the entries of the image's common-packages lockfile added, for each package
    whose name `lock` does not have at the top of node_modules already (with what lies beneath
    it). npm keeps a locked version that satisfies package.json, so adding one of them installs
    the image's version from the image's cache: no registry request. The entries nobody asks for
    are pruned by npm, and one that conflicts with the template's tree is not added (npm then
    resolves that package the usual way)."""
    packages, extra = lock.get("packages"), common.get("packages")
    if not isinstance(packages, dict) or not isinstance(extra, dict):
        return dict(lock)
    taken = {top_level(key) for key in packages if key}
    merged = dict(packages)
    for key, entry in extra.items():
        top = top_level(key)
        if top and top not in taken and isinstance(entry, dict):
            merged[key] = entry
    return {**lock, "packages": merged}


def top_level(key: str) -> str:
    """The package a lockfile key lies under: `node_modules/@a/b/node_modules/c` -> `@a/b`;
    empty for keys outside node_modules (the root, workspaces)."""
    if not key.startswith("node_modules/"):
        return ""
    parts = key.split("/")
    return "/".join(parts[1:3]) if parts[1].startswith("@") else parts[1]


def install_failure(output: Sequence[str], plan: Plan, text: str) -> DependencyFailed:
    """npm's failure as a buildError: its error lines, at the line of the package they name."""
    errors = [NPM_ERROR.sub("", line) for line in output if NPM_ERROR.match(line)]
    errors = [line for line in errors if not NPM_NOISE.fullmatch(line)]
    if not errors:
        errors = [line for line in output if line.strip()][-MAX_ERROR_LINES:]
    return failure(plan, text, errors[:MAX_ERROR_LINES] or ["npm failed without a message"])


def failure(plan: Plan, text: str, reasons: Sequence[str]) -> DependencyFailed:
    said = "\n".join(reasons)
    named = next((name for name in plan.packages if name in said), None)
    if named is None and plan.packages:
        named = plan.packages[0]
    line, column = locate(text, named) if named else (0, 0)
    return DependencyFailed(f"could not install {plan.describe()}:\n{said}", line, column)


def locate(text: str, key: str) -> tuple[int, int]:
    """Line and column (1-based) of `"key":` in a JSON text; (0, 0) if it is not there."""
    found = re.search(re.escape(json.dumps(key)) + r"\s*:", text)
    if found is None:
        return 0, 0
    before = text[: found.start()]
    return before.count("\n") + 1, found.start() - (before.rfind("\n") + 1) + 1


def stamp(base: object, installed: DependencySet) -> dict[str, Any]:
    """What a private node_modules records about itself: the shared install it was copied from
    (its install stamp) and the dependencies it holds."""
    return {"base": base, "dependencies": installed.as_fields()}


def read_stamp(raw: object, base: object) -> DependencySet | None:
    """The dependencies a private node_modules holds, if its stamp is readable and it was copied
    from the shared install that is there now; else None."""
    if not isinstance(raw, dict) or raw.get("base") != base or base is None:
        return None
    fields = raw.get("dependencies")
    if not isinstance(fields, dict):
        return None
    try:
        return _parse_fields(fields, "")
    except DependencyFailed:
        return None


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
