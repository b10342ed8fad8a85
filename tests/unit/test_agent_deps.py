"""The dependency decisions of the sandbox agent (sandbox.agent.deps): what package.json asks
for, what changed against what is installed, what npm's failure says, the lockfile fast path,
the limits; and the agent's reading of its environment for them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent.deps import (
    MAX_DEPENDENCIES,
    Action,
    DependencySet,
    InstallLimits,
    decide,
    install_failure,
    install_manifest,
    locate,
    parse_manifest,
    read_stamp,
    stamp,
    top_level,
    with_common_packages,
)
from sandbox.agent.errors import DependencyFailed
from sandbox.agent.files import Delete, Write
from sandbox.agent.installer import manifest_in
from sandbox.agent.main import install_config

TEMPLATE = parse_manifest(
    json.dumps(
        {
            "name": "preview-template-react-web",
            "scripts": {"dev": "vite"},
            "dependencies": {"react": "19.3.1", "react-dom": "19.3.1"},
            "devDependencies": {"@vitejs/plugin-react": "6.3.0", "vite": "8.3.8"},
        }
    )
)


def manifest(**fields: object) -> str:
    return json.dumps({"name": "app", **fields}, indent=2)


def project(deps: dict[str, str] | None = None, dev: dict[str, str] | None = None) -> DependencySet:
    return parse_manifest(manifest(dependencies=deps or {}, devDependencies=dev or {}))


REACT = {"react": "19.3.1", "react-dom": "19.3.1"}


@pytest.mark.parametrize(
    ("text", "specs"),
    [
        ("", ()),
        ("{}", ()),
        (manifest(dependencies={"clsx": "^2.1.0"}), (("clsx", "^2.1.0"),)),
        (manifest(devDependencies={"@types/x": "*"}), (("@types/x", "*"),)),
        (manifest(dependencies={"a": "latest", "b": ">=1 <2 || 3.x", "c": ""}), None),
        (manifest(dependencies={"lodash": "npm:lodash-es@^4.17.0"}), None),
        (manifest(dependencies={"JSONStream": "1.3.5"}), (("JSONStream", "1.3.5"),)),
        # Listed twice: `dependencies` wins, as with npm.
        (manifest(dependencies={"x": "2"}, optionalDependencies={"x": "1"}), (("x", "2"),)),
    ],
)
def test_parse_manifest_reads_registry_dependencies(
    text: str, specs: tuple[tuple[str, str], ...] | None
) -> None:
    parsed = parse_manifest(text)
    if specs is not None:
        assert parsed.specs == specs


@pytest.mark.parametrize(
    ("text", "said", "where"),
    [
        ('{"name": "app",\n  "dependencies": {', "not valid JSON", (2, 20)),
        ("[1, 2]", "must be a JSON object", (1, 1)),
        (manifest(dependencies=["clsx"]), "dependencies must be an object", (3, 3)),
        (manifest(dependencies={"clsx": 2}), "the version must be a string", (4, 5)),
        (manifest(dependencies={"../etc": "1"}), "is not an npm package name", (4, 5)),
        (manifest(dependencies={"Bad Name": "1"}), "is not an npm package name", (4, 5)),
        (
            manifest(dependencies={"x": "github:user/repo"}),
            "not a version from the registry",
            (4, 5),
        ),
        (manifest(dependencies={"x": "git+https://h/r.git"}), "no git, file", (4, 5)),
        (manifest(dependencies={"x": "file:../../etc"}), "not a version from the registry", (4, 5)),
        (manifest(dependencies={"x": "link:/"}), "not a version from the registry", (4, 5)),
        (
            manifest(dependencies={"x": "https://h/x.tgz"}),
            "not a version from the registry",
            (4, 5),
        ),
        (manifest(dependencies={"x": "user/repo"}), "not a version from the registry", (4, 5)),
        (manifest(dependencies={"x": "npm:../evil@1"}), "not a version from the registry", (4, 5)),
        (manifest(dependencies={"x": "npm:y@file:z"}), "not a version from the registry", (4, 5)),
        # A leading dot is a directory to npm (npm-package-arg), not a version.
        (manifest(dependencies={"x": ".."}), "not a version from the registry", (4, 5)),
        (manifest(dependencies={"x": " ."}), "not a version from the registry", (4, 5)),
        (manifest(dependencies={"x": "npm:y@.x"}), "not a version from the registry", (4, 5)),
        (manifest(dependencies={"x": "1" * 300}), "at most 256 characters", (4, 5)),
    ],
)
def test_parse_manifest_refuses_what_is_not_a_registry_package(
    text: str, said: str, where: tuple[int, int]
) -> None:
    with pytest.raises(DependencyFailed) as failed:
        parse_manifest(text)
    assert said in failed.value.message
    assert (failed.value.line, failed.value.column) == where


def test_parse_manifest_caps_the_number_of_dependencies() -> None:
    many = {f"p{i}": "1" for i in range(MAX_DEPENDENCIES + 1)}
    with pytest.raises(DependencyFailed, match=f"more than {MAX_DEPENDENCIES}"):
        parse_manifest(manifest(dependencies=many))


@pytest.mark.parametrize(
    ("wanted", "installed", "action", "changes"),
    [
        # Nothing new: the template's own, or the same private install.
        (project(REACT), TEMPLATE, Action.KEEP, ()),
        (project(), TEMPLATE, Action.KEEP, ()),  # dropping react keeps it: the app needs it
        # Added, changed, removed.
        (project({"clsx": "^2"}), TEMPLATE, Action.INSTALL, ("+clsx@^2",)),
        (project({"react": "19.2.0"}), TEMPLATE, Action.INSTALL, ("react@19.2.0 (was 19.3.1)",)),
        # A private install with no readable record: anything but the template's reinstalls.
        (project(), None, Action.SHARE, ()),
        (project({"clsx": "^2"}), None, Action.INSTALL, ("+clsx@^2",)),
        # Moving a package between fields installs the same files: nothing to do.
        (project({}, {"react": "19.3.1"}), TEMPLATE, Action.KEEP, ()),
    ],
)
def test_decide_compares_what_is_wanted_with_what_is_installed(
    wanted: DependencySet,
    installed: DependencySet | None,
    action: Action,
    changes: tuple[str, ...],
) -> None:
    plan = decide(wanted, installed, TEMPLATE)
    assert plan.action is action
    assert plan.changes == changes


def test_decide_keeps_a_private_install_that_has_what_is_wanted() -> None:
    wanted = project({**REACT, "clsx": "^2"})
    private = decide(wanted, TEMPLATE, TEMPLATE).wanted
    assert decide(wanted, private, TEMPLATE).action is Action.KEEP
    assert decide(project({"clsx": "^2.1"}), private, TEMPLATE).changes == ("clsx@^2.1 (was ^2)",)


def test_decide_from_a_private_install_back_to_the_template_shares_again() -> None:
    private = decide(project({"clsx": "^2"}), TEMPLATE, TEMPLATE).wanted
    plan = decide(project(REACT), private, TEMPLATE)
    assert plan.action is Action.SHARE
    assert plan.changes == ("-clsx",)
    assert plan.packages == ()


def test_decide_keeps_the_dev_servers_packages_at_the_templates_version() -> None:
    plan = decide(project({"clsx": "^2"}, {"vite": "^5.0.0", "vitest": "^3"}), TEMPLATE, TEMPLATE)
    assert plan.action is Action.INSTALL
    assert plan.changes == ("+clsx@^2", "+vitest@^3")
    assert plan.ignored == (
        "vite stays at 8.3.8, the template's dev server (package.json asks for ^5.0.0)",
    )
    assert dict(plan.wanted.specs)["vite"] == "8.3.8"
    # The same spec as the template's is no change to report.
    same = decide(project({}, {"vite": "8.3.8"}), TEMPLATE, TEMPLATE)
    assert (same.action, same.ignored) == (Action.KEEP, ())


def test_install_manifest_has_the_wanted_dependencies_and_nothing_else() -> None:
    text = manifest(
        dependencies={"clsx": "^2"},
        devDependencies={"vitest": "^3"},
        scripts={"postinstall": "curl evil"},
        workspaces=["packages/*"],
        overrides={"react": "0.0.1"},
    )
    plan = decide(parse_manifest(text), TEMPLATE, TEMPLATE)
    assert install_manifest(plan) == {
        "name": "preview-workspace",
        "version": "0.0.0",
        "private": True,
        "dependencies": {"clsx": "^2", **REACT},
        "devDependencies": {"@vitejs/plugin-react": "6.3.0", "vite": "8.3.8", "vitest": "^3"},
    }


def test_a_404_names_the_package_and_its_line() -> None:
    text = manifest(dependencies={**REACT, "@scope/nope": "^1.0.0", "clsx": "^2"})
    plan = decide(parse_manifest(text), TEMPLATE, TEMPLATE)
    output = [
        "npm http fetch GET 404 https://registry.npmjs.org/@scope%2fnope 112ms (cache skip)",
        "npm error code E404",
        "npm error 404 Not Found - GET https://registry.npmjs.org/@scope%2fnope",
        "npm error 404",
        "npm error 404  '@scope/nope@^1.0.0' could not be found.",
        "npm error Log files were not written due to the config logs-max=0",
    ]
    failed = install_failure(output, plan, text)
    assert failed.message == (
        "could not install +@scope/nope@^1.0.0, +clsx@^2:\n"
        "code E404\n"
        "404 Not Found - GET https://registry.npmjs.org/@scope%2fnope\n"
        "404  '@scope/nope@^1.0.0' could not be found."
    )
    assert (failed.line, failed.column) == (6, 5) == locate(text, "@scope/nope")


def test_a_failure_without_npm_error_lines_keeps_the_last_output() -> None:
    text = manifest(dependencies={"clsx": "^2"})
    plan = decide(parse_manifest(text), TEMPLATE, TEMPLATE)
    failed = install_failure(["something odd", "", "Killed"], plan, text)
    assert failed.message.endswith(":\nsomething odd\nKilled")
    assert failed.line == 4  # the only package it could be


@pytest.mark.parametrize(
    ("key", "top"),
    [
        ("", ""),
        ("packages/app", ""),
        ("node_modules/clsx", "clsx"),
        ("node_modules/@babel/core", "@babel/core"),
        ("node_modules/@babel/core/node_modules/semver", "@babel/core"),
        ("node_modules/is-odd/node_modules/is-number", "is-odd"),
    ],
)
def test_top_level(key: str, top: str) -> None:
    assert top_level(key) == top


def test_common_packages_join_the_lockfile_where_the_tree_has_no_package_of_that_name() -> None:
    lock: dict[str, Any] = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "t"},
            "node_modules/react": {"version": "19.3.1"},
            "node_modules/nanoid": {"version": "3.3.11"},
        },
    }
    common = {
        "packages": {
            "": {"name": "common"},
            "node_modules/clsx": {"version": "2.1.1", "integrity": "sha512-x"},
            "node_modules/nanoid": {"version": "5.1.12"},
            "node_modules/is-odd": {"version": "3.0.1"},
            "node_modules/is-odd/node_modules/is-number": {"version": "6.0.0"},
            "node_modules/broken": "not an entry",
        }
    }
    merged = with_common_packages(lock, common)
    assert merged["lockfileVersion"] == 3
    assert merged["packages"] == {
        **lock["packages"],  # the tree's own nanoid and root stay
        "node_modules/clsx": {"version": "2.1.1", "integrity": "sha512-x"},
        "node_modules/is-odd": {"version": "3.0.1"},
        "node_modules/is-odd/node_modules/is-number": {"version": "6.0.0"},
    }
    assert lock["packages"]["node_modules/nanoid"] == {"version": "3.3.11"}  # not mutated
    assert with_common_packages(lock, {"packages": []}) == lock
    assert with_common_packages({"lockfileVersion": 3}, common) == {"lockfileVersion": 3}


def test_the_stamp_holds_only_for_the_shared_install_it_was_copied_from() -> None:
    base = {"lockSha256": "abc", "node": "v20"}
    installed = decide(project({"clsx": "^2"}), TEMPLATE, TEMPLATE).wanted
    raw = json.loads(json.dumps(stamp(base, installed)))
    assert read_stamp(raw, base) == installed
    assert read_stamp(raw, {"lockSha256": "other", "node": "v20"}) is None
    assert read_stamp(raw, None) is None
    assert (
        read_stamp({"base": base, "dependencies": {"dependencies": {"x": "git:y"}}}, base) is None
    )
    assert read_stamp("garbage", base) is None


@pytest.mark.parametrize(
    ("size", "base", "over"),
    [(100, 100, False), (100 + 1024, 100, False), (100 + 1025, 100, True), (50, 100, False)],
)
def test_the_size_limit_is_on_growth_over_the_shared_install(
    size: int, base: int, over: bool
) -> None:
    limits = InstallLimits(timeout=1, max_growth=1024)
    assert limits.over(size, base) is over


def test_manifest_in_finds_package_json_in_a_change_set() -> None:
    text = Write("package.json", b'{"dependencies": {}}')
    other = Write("src/App.jsx", b"x")
    assert manifest_in([other]) is None
    assert manifest_in([other, text]) == text.data
    assert manifest_in([Delete("package.json")]) == b"{}"
    assert manifest_in([other], whole=True) == b"{}"  # a snapshot without one


def test_install_config_reads_the_environment() -> None:
    config = install_config(
        {
            "PREVIEW_DEPS_TIMEOUT": "30",
            "PREVIEW_DEPS_MAX_MB": "0.5",
            "PREVIEW_NPM_CACHE": "/var/cache/npm",
            "PREVIEW_NPM_REGISTRY": "http://npm-mirror.internal:4873/",
        }
    )
    assert config.limits == InstallLimits(timeout=30.0, max_growth=512 * 1024)
    assert config.cache == Path("/var/cache/npm")
    assert config.registry == "http://npm-mirror.internal:4873/"
    assert install_config({}).limits == InstallLimits()
    for bad in ("soon", "-1", "1e9", "nan"):
        with pytest.raises(ValueError, match="PREVIEW_DEPS_TIMEOUT"):
            install_config({"PREVIEW_DEPS_TIMEOUT": bad})


def test_a_line_of_npm_output_longer_than_any_buffer_is_cut_not_fatal() -> None:
    """A registry's message is the package author's to write: one 200 KB line must not end
    the agent's task (readline would raise past its limit)."""
    from collections import deque

    from sandbox.agent.npm import MAX_LINE, _read_lines

    async def run() -> list[str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdout.write('x' * 200_000 + '\\nafter\\n')",
            stdout=asyncio.subprocess.PIPE,
        )
        seen: list[str] = []
        await _read_lines(process, deque(maxlen=100), seen.append)
        await process.wait()
        return seen

    seen = asyncio.run(run())
    assert seen[-1] == "after"
    assert all(len(line) <= MAX_LINE for line in seen)
    assert seen[0] == "x" * MAX_LINE  # cut at the cap, the rest of it dropped per chunk
