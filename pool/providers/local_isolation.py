"""What confines a local machine on this host, and the bubblewrap command that does it.

Full isolation needs root (network namespaces, cgroups, a uid of the machine's own),
bubblewrap and setpriv. `probe` finds out once per process what this host allows, and logs
one warning line naming every protection it cannot enforce; machines then start with what
there is (a developer's laptop without root or bwrap still runs previews, unconfined).

The sandbox is bwrap run as root, with every capability dropped except setuid and setgid,
which setpriv then drops with the rest as it switches to the machine's uid, exactly as the
machine image's entrypoint does (sandbox/Dockerfile). Inside it a machine has:

- its own mount namespace: read-only /usr, /etc and the merged-/usr links; read-only the
  Python that runs the agent (venv and interpreter), Node when it lives outside /usr, the
  agent's code (`sandbox/` of this checkout, not the rest of it) and the templates; a private
  /tmp and /dev; a /proc of its own pid namespace; and its workspace, writable, at the same
  path as on the host. Nothing else: not the data directory (other machines' workspaces,
  records and tokens, dev's secrets), not the orchestrator's files;
- its own pid, ipc, uts and cgroup namespaces, and the network namespace that
  local_supervisor sets up (loopback only, the Fly egress ruleset, the orchestrator's port
  forwarded);
- its own uid, never root, derived from its id (`machine_uid`).

No --new-session: the machine must stay in the process group the provider signals, and the
sandbox has no controlling terminal that a TIOCSTI could write to (stdin is /dev/null).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import shutil
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pool.core.errors import ProviderError
from pool.providers import local_cgroup
from pool.providers.local_supervisor import Forward

logger = logging.getLogger(__name__)

UID_BASE = 0x60000  # 393216: far above the uids of real users and of the machine image
UID_SPAN = 0x10000
SYSTEM_DIRS = ("/usr", "/etc")
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PROBE_TIMEOUT = 10.0

NO_SANDBOX = (
    "filesystem (machines can read this host's files: the data directory with other "
    "machines' workspaces, records and tokens, and dev's secrets)",
    "processes (machines see every process of this host and, as the same user, their environments)",
    "network (machines reach every service of this host and beyond)",
    "a uid of its own (machines run as this user)",
)
LIMITS = {"memory": "memory limit", "cpu": "CPU limit", "pids": "pids limit"}


@dataclass(frozen=True)
class Isolation:
    """What this host lets the local provider enforce."""

    bwrap: str | None
    setpriv: str | None
    nft: str | None
    ruleset: str | None
    cgroups: local_cgroup.Layout | None
    reasons: tuple[str, ...]

    @property
    def sandbox(self) -> bool:
        return self.bwrap is not None and self.setpriv is not None

    def not_enforced(self) -> list[str]:
        missing = [] if self.sandbox else list(NO_SANDBOX)
        if self.sandbox and (self.nft is None or self.ruleset is None):
            missing.append("the egress ruleset in each machine's namespace (it has no route out)")
        layout_missing = self.cgroups.missing if self.cgroups else local_cgroup.CONTROLLERS
        missing += [LIMITS[c] for c in layout_missing]
        return missing


UNCONFINED = Isolation(None, None, None, None, None, ("isolation turned off",))


@functools.cache
def probe(egress_script: Path) -> Isolation:
    """This host's isolation, found once per process; logs a warning if it is not complete."""
    reasons: list[str] = []
    bwrap, setpriv = _sandbox_tools(reasons)
    nft = ruleset = None
    if bwrap is not None:
        nft = shutil.which("nft")
        if nft is None:
            reasons.append("nft not found (Debian: apt-get install nftables)")
        ruleset = _render_ruleset(egress_script, reasons)
    cgroups = local_cgroup.detect()
    if cgroups is None or cgroups.missing:
        missing = ", ".join(cgroups.missing if cgroups else local_cgroup.CONTROLLERS)
        reasons.append(f"no writable cgroup for {missing}")
    isolation = Isolation(bwrap, setpriv, nft, ruleset, cgroups, tuple(reasons))
    message = warning(isolation)
    if message is not None:
        logger.warning("%s", message)
    return isolation


def warning(isolation: Isolation) -> str | None:
    """The one line that tells an operator what local machines are not confined by."""
    missing = isolation.not_enforced()
    if not missing:
        return None
    return (
        f"local machines are not fully isolated ({'; '.join(isolation.reasons)}); "
        f"not enforced: {'; '.join(missing)}. See docs/deploy.md, 'Local machines'."
    )


def _sandbox_tools(reasons: list[str]) -> tuple[str | None, str | None]:
    if os.geteuid() != 0:
        reasons.append("not running as root")
        return None, None
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    if bwrap is None:
        reasons.append("bwrap not found (Debian: apt-get install bubblewrap)")
    if setpriv is None:
        reasons.append("setpriv not found (Debian: util-linux)")
    if bwrap is None or setpriv is None:
        return None, None
    # Namespaces may still be refused (a container without CAP_SYS_ADMIN): try once.
    try:
        done = subprocess.run(
            [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
             "--die-with-parent", "--ro-bind", "/", "/", "true"],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        reasons.append(f"bwrap does not run: {exc}")
        return None, None
    if done.returncode != 0:
        reasons.append(f"bwrap cannot create namespaces: {done.stderr.strip()}")
        return None, None
    return bwrap, setpriv


def _render_ruleset(egress_script: Path, reasons: list[str]) -> str | None:
    """sandbox/egress.sh's ruleset with no extra destination: what a Fly machine gets when the
    orchestrator is its only peer (here it is reached over the namespace's loopback)."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "PREVIEW_EGRESS_ALLOW": ""}
    try:
        done = subprocess.run(
            ["sh", str(egress_script), "--print"],
            env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        reasons.append(f"cannot render the egress ruleset: {exc}")
        return None
    if done.returncode != 0:
        reasons.append(f"cannot render the egress ruleset: {done.stderr.strip()}")
        return None
    return done.stdout


def machine_uid(machine_id: str) -> int:
    """The uid (and gid) a machine runs as: stable across its restarts, distinct per machine
    but for rare collisions, which only weaken one of several walls between machines."""
    return UID_BASE + zlib.crc32(machine_id.encode()) % UID_SPAN


def orchestrator_forwards(url: str) -> list[Forward]:
    """The listeners that let a sandboxed agent reach `url` over its namespace's loopback.

    Local machines reach the orchestrator on this host only: a URL whose host is not a
    loopback address or `localhost` is refused rather than silently unreachable."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
    if host == "localhost":
        listen = ["127.0.0.1", "::1"]
    else:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ProviderError(
                f"sandboxed local machines reach the orchestrator over loopback only; "
                f"{url!r} is not on this host (use ws://127.0.0.1:PORT/api/sandbox/ws)"
            )
        listen = [host]
    return [Forward((address, port), (host, port)) for address in listen]


@functools.cache
def system_mounts() -> tuple[str, ...]:
    args = []
    for directory in SYSTEM_DIRS:
        args += ["--ro-bind", directory, directory]
    for link in ROOT_LINKS:
        path = Path(link)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), link]
        elif path.is_dir():
            args += ["--ro-bind", link, link]
    # /tmp as on any host: everyone may create files there, nobody may remove another's.
    return (*args, "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp")


def tool_dirs(python: str, node: str | None, source: Path, templates: Path) -> list[Path]:
    """Directories a machine needs read-only besides the system's: the Python prefixes (a
    venv and its interpreter), Node's, the agent's code and the templates."""
    candidates = [
        Path(python).absolute().parent.parent,
        Path(os.path.realpath(python)).parent.parent,
        source,
        templates,
    ]
    if node is not None:
        candidates.append(Path(os.path.realpath(node)).parent.parent)
    system = [Path(d) for d in SYSTEM_DIRS]
    # Sorted: a directory comes before those inside it (sandbox_argv binds only the outer one).
    return sorted({path for path in candidates if path != Path("/") and not _under(path, system)})


def sandbox_argv(
    *,
    bwrap: str,
    setpriv: str,
    tools: Sequence[Path],
    hide: Path,
    workspace: Path,
    uid: int,
    hostname: str,
    inner: Sequence[str],
    system: Sequence[str],
) -> list[str]:
    """The bwrap command that runs `inner` as `uid` in a machine's sandbox.

    `hide` (the data directory) is covered with an empty tmpfs if a bound directory contains
    it, and tools inside it are bound again on top, so that only `workspace` of it shows."""
    argv = [
        bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--hostname", hostname, *system,
    ]  # fmt: skip
    made: set[Path] = set()
    existing = [Path(d) for d in SYSTEM_DIRS]
    for path in tools:
        if not _under(path, existing):
            argv += [*_parents(path, made, existing), "--ro-bind", str(path), str(path)]
            existing.append(path)
    fresh = None
    if _under(hide, existing):
        # From here on, what lies under `hide` is an empty tmpfs: only what is bound again.
        fresh = hide
        argv += ["--tmpfs", str(hide)]
        existing = [p for p in existing if not _under(p, [hide])]
        made = {p for p in made if not _under(p, [hide])}
        for path in tools:
            if _under(path, [hide]):
                argv += [*_parents(path, made, existing, fresh), "--ro-bind", str(path), str(path)]
                existing.append(path)
    argv += [
        *_parents(workspace, made, existing, fresh),
        "--bind", str(workspace), str(workspace), "--chdir", str(workspace),
        "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
        "--", setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *inner,
    ]  # fmt: skip
    return argv


def _parents(
    path: Path, made: set[Path], existing: Sequence[Path], fresh: Path | None = None
) -> list[str]:
    """bwrap arguments creating path's missing ancestors world-readable: bwrap would make them
    0700 root, which the machine's uid could not traverse. Ancestors inside `existing` (bound
    directories) are there already, unless they lie inside `fresh`, an empty tmpfs; /tmp is
    the sandbox's own tmpfs."""
    args = []
    for parent in reversed(path.parents):
        if parent in (Path("/"), Path("/tmp"), fresh) or parent in made:
            continue
        inside_fresh = fresh is not None and parent.is_relative_to(fresh)
        if _under(parent, existing) and not inside_fresh:
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)
