"""The pure parts of local machine isolation: cgroup layouts, the bwrap command, the plan, the
forwards to the orchestrator, the warning, and how the agent takes its token."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pool.core.errors import ProviderError
from pool.providers import local_cgroup, local_isolation
from pool.providers.local_cgroup import Layout, Limits
from pool.providers.local_supervisor import Forward, Plan
from sandbox.agent.main import parse_args

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = "9:name=systemd:/\n8:pids:/\n4:memory:/jobs/a1\n1:cpu,cpuacct:/\n0::/\n"
CONTAINER_MOUNTINFO = (
    "35 31 0:32 /docker/c1 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
    "39 31 0:36 /docker/c1 /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
)
CONTAINER_CGROUP = "8:pids:/docker/c1\n4:memory:/docker/c1/svc\n"
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"


def layout(mountinfo: str, proc_cgroup: str, v2: frozenset[str] = frozenset()) -> Layout | None:
    mounts = [
        local_cgroup.Mount(2, m.point, m.root, v2) if m.version == 2 else m
        for m in local_cgroup.parse_mounts(mountinfo)
    ]
    return local_cgroup.plan_layout(mounts, local_cgroup.parse_memberships(proc_cgroup))


@pytest.mark.parametrize(
    ("mountinfo", "proc_cgroup", "v2", "expected"),
    [
        # Hybrid (cgroup2 holds no controller): v1, memory nested under our own cgroup.
        (
            HYBRID_MOUNTINFO, HYBRID_CGROUP, frozenset(),
            Layout(1, {
                "cpu": Path("/sys/fs/cgroup/cpu,cpuacct/preview-machines"),
                "memory": Path("/sys/fs/cgroup/memory/jobs/a1/preview-machines"),
                "pids": Path("/sys/fs/cgroup/pids/preview-machines"),
            }),
        ),
        # A container that sees only its part of the hierarchy; no cpu controller at all.
        (
            CONTAINER_MOUNTINFO, CONTAINER_CGROUP, frozenset(),
            Layout(1, {
                "memory": Path("/sys/fs/cgroup/memory/svc/preview-machines"),
                "pids": Path("/sys/fs/cgroup/pids/preview-machines"),
            }),
        ),
        # Pure v2 with every controller: one directory under the mount's root.
        (
            V2_MOUNTINFO, "0::/user.slice/session-1.scope\n", frozenset(local_cgroup.CONTROLLERS),
            Layout(2, {c: Path("/sys/fs/cgroup/preview-machines")
                       for c in local_cgroup.CONTROLLERS}),
        ),
        # v2 offering only pids: the other two limits are missing.
        (
            V2_MOUNTINFO, "0::/\n", frozenset({"pids"}),
            Layout(2, {"pids": Path("/sys/fs/cgroup/preview-machines")}),
        ),
        ("", "", frozenset(), None),
    ],
)  # fmt: skip
def test_cgroup_layout(
    mountinfo: str, proc_cgroup: str, v2: frozenset[str], expected: Layout | None
) -> None:
    assert layout(mountinfo, proc_cgroup, v2) == expected


def test_missing_controllers_are_named() -> None:
    found = layout(V2_MOUNTINFO, "0::/\n", frozenset({"pids"}))
    assert found is not None and found.missing == ("memory", "cpu")


@pytest.mark.parametrize(
    ("version", "controller", "expected"),
    [
        (2, "memory", [("memory.max", str(512 * 1024 * 1024))]),
        (2, "cpu", [("cpu.max", "150000 100000")]),
        (2, "pids", [("pids.max", "64")]),
        (1, "memory", [("memory.limit_in_bytes", str(512 * 1024 * 1024))]),
        (1, "cpu", [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "150000")]),
        (1, "pids", [("pids.max", "64")]),
    ],
)
def test_limit_files(version: int, controller: str, expected: list[tuple[str, str]]) -> None:
    limits = Limits(memory_mb=512, cpus=1.5, pids_max=64)
    assert local_cgroup.limit_files(version, controller, limits) == expected


def sandbox(hide: Path, tools: list[Path], workspace: Path) -> list[str]:
    return local_isolation.sandbox_argv(
        bwrap="/usr/bin/bwrap",
        setpriv="/usr/bin/setpriv",
        tools=tools,
        hide=hide,
        workspace=workspace,
        uid=400000,
        hostname="loc-1",
        inner=["/venv/bin/python", "-m", "sandbox.agent"],
        system=["--ro-bind", "/usr", "/usr"],
    )


def binds(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


def test_the_sandbox_shows_the_workspace_and_tools_only() -> None:
    data = Path("/srv/data")
    workspace = data / "machines" / "loc-1" / "workspace"
    argv = sandbox(data, [Path("/venv"), Path("/src/sandbox")], workspace)

    assert binds(argv, "--bind") == [str(workspace)]  # the only writable bind
    assert binds(argv, "--ro-bind") == ["/usr", "/venv", "/src/sandbox"]
    assert "--tmpfs" not in argv  # nothing bound contains the data directory
    # Its ancestors are created world-traversable: bwrap's own would be 0700 root.
    assert binds(argv, "--dir") == ["/src", "/srv", "/srv/data", "/srv/data/machines",
                                    "/srv/data/machines/loc-1"]  # fmt: skip
    for namespace in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"):
        assert namespace in argv
    assert "--new-session" not in argv  # the provider signals the machine's process group
    inner = argv[argv.index("--") + 1 :]
    assert inner[:3] == ["/usr/bin/setpriv", "--reuid=400000", "--regid=400000"]
    assert {"--no-new-privs", "--bounding-set=-all", "--inh-caps=-all"} <= set(inner)
    assert inner[-3:] == ["/venv/bin/python", "-m", "sandbox.agent"]


def test_a_data_directory_inside_a_bound_one_is_covered() -> None:
    # A venv that holds the data directory (and the templates): the data directory becomes
    # an empty tmpfs with the templates bound again, so only this workspace shows.
    venv, data = Path("/proj/.venv"), Path("/proj/.venv/data")
    templates = data / "templates"
    argv = sandbox(data, [venv, templates], data / "machines" / "loc-1" / "workspace")

    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 1] == str(data)
    assert binds(argv[:tmpfs], "--ro-bind") == ["/usr", str(venv)]
    assert binds(argv[tmpfs:], "--ro-bind") == [str(templates)]
    assert binds(argv[tmpfs:], "--dir") == [f"{data}/machines", f"{data}/machines/loc-1"]


def test_tool_dirs_skip_the_system_and_nested_ones(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    source = tmp_path / "src" / "sandbox"
    found = local_isolation.tool_dirs(
        str(venv / "bin" / "python"), "/usr/bin/node", source, source / "templates"
    )
    assert found == [source, source / "templates", venv]
    # /bin/false's "prefix" would be / itself: never bound.
    assert local_isolation.tool_dirs("/bin/false", None, source, source) == [source]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:8000/api/sandbox/ws",
         [Forward(("127.0.0.1", 8000), ("127.0.0.1", 8000))]),
        ("ws://localhost:9000/x",
         [Forward(("127.0.0.1", 9000), ("localhost", 9000)),
          Forward(("::1", 9000), ("localhost", 9000))]),
        ("ws://[::1]/api/sandbox/ws", [Forward(("::1", 80), ("::1", 80))]),
    ],
)  # fmt: skip
def test_orchestrator_forwards(url: str, expected: list[Forward]) -> None:
    assert local_isolation.orchestrator_forwards(url) == expected


@pytest.mark.parametrize("url", ["wss://preview.example.com/api/sandbox/ws", "ws://10.0.0.5:80"])
def test_a_remote_orchestrator_is_refused(url: str) -> None:
    with pytest.raises(ProviderError, match="loopback only"):
        local_isolation.orchestrator_forwards(url)


def test_machine_uids_are_stable_unprivileged_and_distinct() -> None:
    uids = {local_isolation.machine_uid(f"loc-{n:012x}") for n in range(200)}
    assert local_isolation.machine_uid("loc-a") == local_isolation.machine_uid("loc-a")
    assert len(uids) >= 199
    assert min(uids) >= local_isolation.UID_BASE and max(uids) < 0x70000


def test_the_warning_names_what_is_not_enforced() -> None:
    full = local_isolation.Isolation(
        "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/sbin/nft", "table inet x {}",
        Layout(1, {c: Path("/cg") for c in local_cgroup.CONTROLLERS}), (),
    )  # fmt: skip
    assert local_isolation.warning(full) is None
    no_pids = local_isolation.Isolation(
        full.bwrap, full.setpriv, None, None, Layout(1, {"memory": Path("/cg")}),
        ("nft not found", "no writable cgroup for cpu, pids"),
    )  # fmt: skip
    message = local_isolation.warning(no_pids)
    assert message is not None and "\n" not in message
    assert "nft not found" in message and "egress ruleset" in message
    assert "CPU limit" in message and "pids limit" in message
    assert "memory limit" not in message and "filesystem" not in message
    unconfined = local_isolation.warning(local_isolation.UNCONFINED)
    assert unconfined is not None
    for what in ("filesystem", "processes", "network", "memory limit"):
        assert what in unconfined


def test_the_plan_survives_its_trip_through_stdin() -> None:
    plan = Plan(
        argv=["/usr/bin/bwrap", "--", "python"], env={"PATH": "/usr/bin"}, token="-tok",
        cgroup="loc-1", limits=Limits(1024, 1.0, 512), sandbox=True, uid=400000,
        workspace="/w", ruleset="table inet preview_egress {}", nft="/usr/sbin/nft",
        forwards=[Forward(("127.0.0.1", 8000), ("localhost", 8000))],
    )  # fmt: skip
    assert Plan.from_json(plan.to_json()) == plan


def test_the_agent_reads_its_token_from_a_descriptor_not_argv() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"-starts-with-a-dash\n")
    os.close(write_end)
    args = parse_args(
        ["--machine-id", "loc-1", "--orchestrator", "ws://x", f"--token-fd={read_end}"]
    )
    assert args.token == "-starts-with-a-dash"
    with pytest.raises(OSError):
        os.fstat(read_end)  # read and closed
    with pytest.raises(SystemExit):
        parse_args(["--machine-id", "loc-1", "--orchestrator", "ws://x", "--token=secret"])
