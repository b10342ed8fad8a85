"""The preview machine's egress filter (`sandbox/egress.sh`) with real packets.

Each test builds two network namespaces joined by a veth pair: "machine" (10.213.0.1,
fd00:213::1), where the script runs as a preview image's entrypoint would run it, and "server"
(10.213.0.2, fd00:213::2), which listens on several TCP ports and answers UDP on 53 (a stand-in
resolver) and 5353. The addresses exist only inside those namespaces: nothing leaves this
machine. The namespaces are deleted after every test, whatever happened. The last test checks
that a local machine's own namespace (pool/providers/local_supervisor) gets the same rules.

Needs root, `ip` (iproute2) and `nft` (nftables); without them the tests fail rather than skip,
because a skipped filter test would hide a machine that can reach anything (.ci/run installs
both).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pool.core.provider import MachineSpec, MachineState
from pool.providers.local import LocalProvider

ROOT = Path(__file__).resolve().parents[2]
EGRESS = ROOT / "sandbox" / "egress.sh"
PREFIX = "pvegress"
NETNS_ETC = Path("/etc/netns")

M4, S4 = "10.213.0.1", "10.213.0.2"
M6, S6 = "fd00:213::1", "fd00:213::2"
TCP_PORTS = (8081, 8082, 8083)
UDP_PORTS = (53, 5353)
INBOUND_PORT = 9090

# Listens on every given TCP port (dual-stack) and answers each connection with "port N";
# echoes UDP datagrams on the given UDP ports. Prints "ready" once bound.
SERVER = r"""
import json, socket, sys, threading
tcp, udp = json.loads(sys.argv[1]), json.loads(sys.argv[2])

def listen(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    return s

def serve_tcp(s, port):
    s.listen(16)
    while True:
        conn, _ = s.accept()
        with conn:
            conn.sendall(b"port %d\n" % port)

def serve_udp(s):
    while True:
        data, peer = s.recvfrom(512)
        s.sendto(b"echo " + data, peer)

for port in tcp:
    threading.Thread(target=serve_tcp, args=(listen(socket.SOCK_STREAM, port), port),
                     daemon=True).start()
for port in udp:
    threading.Thread(target=serve_udp, args=(listen(socket.SOCK_DGRAM, port),),
                     daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

# Tries each target once and prints {"target": "ok ..." | "refused" | "timeout" | "error ..."}.
# A target is "tcp HOST PORT", "udp HOST PORT" or "loopback FAMILY" (a listener of its own on
# 127.0.0.1 / ::1, to show loopback still works).
PROBE = r"""
import errno, json, socket, sys, time

def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def tcp(host, port):
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        s.connect((host, int(port)))
        return s.recv(64).decode().strip()

def udp(host, port):
    with socket.socket(family(host), socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.connect((host, int(port)))
        s.send(b"ping")
        return s.recv(64).decode().strip()

def loopback(fam):
    host = "::1" if fam == "6" else "127.0.0.1"
    with socket.socket(family(host), socket.SOCK_STREAM) as srv:
        srv.bind((host, 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with socket.socket(family(host), socket.SOCK_STREAM) as c:
            c.settimeout(2.0)
            c.connect((host, port))
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"loopback")
            return c.recv(64).decode()

results = {}
for target in json.loads(sys.argv[1]):
    kind, *args = target.split()
    started = time.monotonic()
    try:
        answer = {"tcp": tcp, "udp": udp, "loopback": loopback}[kind](*args)
        results[target] = "ok " + answer
    except ConnectionRefusedError:
        results[target] = "refused"
    except (socket.timeout, TimeoutError):
        results[target] = "timeout"
    except OSError as exc:
        results[target] = "error " + (errno.errorcode.get(exc.errno or 0) or str(exc))
    results[target] += " %.2f" % (time.monotonic() - started)
print(json.dumps(results))
"""


def _run(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), check=check, capture_output=True, text=True, timeout=30, env=env
    )


def _require_tools() -> None:
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install Debian's iproute2 and nftables "
            "(.ci/run does); the egress filter cannot be tested without them"
        )
    if os.geteuid() != 0:
        pytest.fail("the egress tests create network namespaces and need root")


def _sweep_stale() -> None:
    """Delete namespaces left by a test run that was killed before its cleanup ran."""
    listing = _run("ip", "netns", "list", check=False).stdout.split()
    for name in listing:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == PREFIX and parts[1].isdigit():
            pid = int(parts[1])
            if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
                _run("ip", "netns", "del", name, check=False)
                shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


@dataclass
class Pair:
    machine: str
    server: str
    procs: list[subprocess.Popen[str]]

    def in_ns(self, ns: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *args]

    def start_listener(self, ns: str, tcp: tuple[int, ...], udp: tuple[int, ...]) -> None:
        proc = subprocess.Popen(
            self.in_ns(ns, sys.executable, "-c", SERVER, json.dumps(tcp), json.dumps(udp)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", f"listener in {ns} did not start: {proc.stderr.read()!r}"

    def probe(self, ns: str, *targets: str) -> dict[str, str]:
        out = _run(*self.in_ns(ns, sys.executable, "-c", PROBE, json.dumps(targets))).stdout
        results: dict[str, str] = json.loads(out)
        return results

    def egress(
        self, allow: str, *command: str, dns: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        env["PREVIEW_EGRESS_ALLOW"] = allow
        env["PREVIEW_EGRESS_RESOLVE_TRIES"] = "1"
        if dns is not None:
            env["PREVIEW_EGRESS_DNS"] = dns
        return _run(*self.in_ns(self.machine, str(EGRESS), *command), check=False, env=env)

    def ruleset(self) -> str:
        return _run(*self.in_ns(self.machine, "nft", "list", "ruleset")).stdout


@pytest.fixture
def pair() -> Iterator[Pair]:
    _require_tools()
    _sweep_stale()
    tag = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
    machine, server = f"{tag}m", f"{tag}s"
    etc = NETNS_ETC / machine
    created = Pair(machine, server, [])
    try:
        # Names in the machine namespace resolve from these files (`ip netns exec` mounts
        # /etc/netns/NAME/* over /etc/*): allowed.test is the server, and so is the resolver.
        # Host names come from the hosts file only, so an unknown one fails at once (the
        # "resolver" here only echoes).
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(
            f"127.0.0.1 localhost\n::1 localhost\n{S4} allowed.test\n{S6} allowed.test\n"
        )
        (etc / "resolv.conf").write_text(f"nameserver {S4}\nnameserver {S6}\n")
        (etc / "nsswitch.conf").write_text("hosts: files\n")
        for ns in (machine, server):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run(
            "ip", "link", "add", "veth-m", "netns", machine, "type", "veth",
            "peer", "name", "veth-s", "netns", server,
        )  # fmt: skip
        for ns, dev, v4, v6 in ((machine, "veth-m", M4, M6), (server, "veth-s", S4, S6)):
            # Up before the addresses are added: an IPv6 address added to a down link joins
            # its solicited-node group late, and the first neighbour solicitation is lost.
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            _run("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
        created.start_listener(server, TCP_PORTS, UDP_PORTS)
        yield created
    finally:
        for proc in created.procs:
            proc.kill()
            proc.communicate(timeout=5)
        for ns in (machine, server):
            _run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(etc, ignore_errors=True)


def _ok(result: str) -> bool:
    return result.startswith("ok ")


def _blocked_fast(result: str) -> bool:
    """Refused (or otherwise failed) rather than answered, and within a second."""
    return not _ok(result) and float(result.rsplit(" ", 1)[1]) < 1.0


def test_only_allowed_ports_are_reachable_over_ipv4_and_ipv6(pair: Pair) -> None:
    targets = [f"tcp {host} {port}" for host in (S4, S6) for port in (8081, 8082)]
    before = pair.probe(pair.machine, *targets)
    assert all(_ok(r) for r in before.values()), before  # the network works without the filter

    applied = pair.egress(f"{S4}:8081,[{S6}]:8081")
    assert applied.returncode == 0, applied.stderr

    after = pair.probe(pair.machine, *targets, "loopback 4", "loopback 6")
    assert after[f"tcp {S4} 8081"].startswith("ok port 8081"), after
    assert after[f"tcp {S6} 8081"].startswith("ok port 8081"), after
    assert after[f"tcp {S4} 8082"].startswith("refused"), after
    assert after[f"tcp {S6} 8082"].startswith("refused"), after
    assert _blocked_fast(after[f"tcp {S4} 8082"]) and _blocked_fast(after[f"tcp {S6} 8082"])
    assert after["loopback 4"].startswith("ok loopback"), after
    assert after["loopback 6"].startswith("ok loopback"), after


def test_inbound_connections_still_get_their_replies(pair: Pair) -> None:
    # The orchestrator reaches the agent: replies travel out through the filter.
    assert pair.egress(f"{S4}:8081").returncode == 0
    pair.start_listener(pair.machine, (INBOUND_PORT,), ())
    inbound = pair.probe(pair.server, f"tcp {M4} {INBOUND_PORT}", f"tcp {M6} {INBOUND_PORT}")
    assert all(r.startswith(f"ok port {INBOUND_PORT}") for r in inbound.values()), inbound
    # ... while the machine itself still cannot open a connection to the server's other ports.
    out = pair.probe(pair.machine, f"tcp {S4} 8083")
    assert out[f"tcp {S4} 8083"].startswith("refused"), out


def test_names_resolve_at_start_and_dns_goes_only_to_the_resolver(pair: Pair) -> None:
    # No PREVIEW_EGRESS_DNS: the resolvers come from resolv.conf (both server addresses).
    applied = pair.egress("allowed.test:8083")
    assert applied.returncode == 0, applied.stderr
    out = pair.probe(
        pair.machine,
        f"tcp {S4} 8083",
        f"tcp {S6} 8083",
        f"tcp {S4} 8081",
        f"udp {S4} 53",
        f"udp {S6} 53",
        f"udp {S4} 5353",
        f"udp {S6} 5353",
    )
    assert out[f"tcp {S4} 8083"].startswith("ok port 8083"), out
    assert out[f"tcp {S6} 8083"].startswith("ok port 8083"), out
    assert out[f"tcp {S4} 8081"].startswith("refused"), out
    assert out[f"udp {S4} 53"].startswith("ok echo ping"), out
    assert out[f"udp {S6} 53"].startswith("ok echo ping"), out
    assert _blocked_fast(out[f"udp {S4} 5353"]) and _blocked_fast(out[f"udp {S6} 5353"]), out


def test_explicit_resolver_replaces_resolv_conf(pair: Pair) -> None:
    assert pair.egress(f"{S4}:8081", dns=S6).returncode == 0
    out = pair.probe(pair.machine, f"udp {S4} 53", f"udp {S6} 53")
    assert _blocked_fast(out[f"udp {S4} 53"]), out
    assert out[f"udp {S6} 53"].startswith("ok echo ping"), out


def test_reapplying_replaces_the_rules_and_then_runs_the_command(pair: Pair) -> None:
    assert pair.egress(f"{S4}:8081").returncode == 0
    ran = pair.egress(f"{S4}:8082", "sh", "-c", "echo workload-started")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "workload-started"
    assert pair.ruleset().count("table inet preview_egress") == 1
    out = pair.probe(pair.machine, f"tcp {S4} 8081", f"tcp {S4} 8082")
    assert out[f"tcp {S4} 8081"].startswith("refused"), out
    assert out[f"tcp {S4} 8082"].startswith("ok port 8082"), out


@pytest.mark.parametrize(
    ("allow", "message"),
    [
        ("evil;flush:80", "not a host name or an IP address"),
        ("10.213.0.2", "expected host:port"),
        ("10.213.0.2:0", "not a port"),
        ("10.213.0.2:99999", "not a port"),
        ("fd00:213::2:8081", "write IPv6 addresses in brackets"),
        ("[10.213.0.2]:8081", "not an IPv6 address"),
        ("no-such-host.invalid:443", "cannot resolve"),
    ],
)
def test_a_bad_entry_fails_before_anything_changes(pair: Pair, allow: str, message: str) -> None:
    result = pair.egress(f"{S4}:8081,{allow}", "sh", "-c", "echo workload-started")
    assert result.returncode != 0
    assert message in result.stderr
    assert "workload-started" not in result.stdout  # the workload never starts unfiltered
    assert "preview_egress" not in pair.ruleset()


def test_print_shows_the_ruleset_without_applying_it(pair: Pair) -> None:
    printed = pair.egress(f"{S4}:8081,[{S6}]:8081", "--print", dns=S4)
    assert printed.returncode == 0, printed.stderr
    assert f"{S4} . 8081" in printed.stdout and f"{S6} . 8081" in printed.stdout
    assert "policy drop" in printed.stdout
    assert "preview_egress" not in pair.ruleset()


async def test_a_local_machine_gets_the_same_rules_in_a_namespace_of_its_own(
    tmp_path: Path,
) -> None:
    # The local provider applies this script's ruleset (no extra destination: the orchestrator
    # is reached over the namespace's loopback) to each sandboxed machine's namespace.
    _require_tools()
    provider = LocalProvider(tmp_path)
    try:
        created = await provider.create(MachineSpec("react-web", "local"))
        machine = await provider.wait(created.id, MachineState.STARTED, 15.0)
        supervisor = int(machine.metadata["pid"])
        sandbox = next(
            int(stat.parent.name)
            for stat in Path("/proc").glob("[0-9]*/stat")
            if stat.read_text().rpartition(")")[2].split()[1] == str(supervisor)
        )
        netns = f"/proc/{sandbox}/ns/net"
        assert os.readlink(netns) != os.readlink("/proc/self/ns/net")
        rules = _run("nsenter", f"--net={netns}", "nft", "list", "table", "inet", "preview_egress")
        links = _run("nsenter", f"--net={netns}", "ip", "-o", "link", "show").stdout
    finally:
        for listed in await provider.list():
            await provider.destroy(listed.id)
        await provider.aclose()
    assert "policy drop;" in rules.stdout and 'oif "lo" accept' in rules.stdout
    assert "reject with tcp reset" in rules.stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
