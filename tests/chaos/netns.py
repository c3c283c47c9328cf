"""Hosts on one machine: each a network, mount and UTS namespace of its own, wired to one bridge.

A host is a `sleep` that holds its namespaces (`unshare`), with its own address on a private subnet, its own
hostname and System V IPC, and its own empty /tmp (a tmpfs nobody else sees): a file one host writes there, no
other host can read, as on separate machines. Commands enter a host with `nsenter`. The bridge lives in a switch
namespace of its own, so the machine's own network is never touched; partitioning a host (`cut`) disables its
switch port.
Everything is torn down when the `Network` closes, however the test ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUBNET = "10.231.0"
HOLD = ["sleep", "infinity"]


def need_root_and_tools() -> None:
    """Skip (locally) or fail (CI=true) where namespaces cannot be made."""
    missing = [
        tool
        for tool in ("ip", "bridge", "unshare", "nsenter", "runuser", "openssl", "redis-server")
        if not shutil.which(tool)
    ]
    problem = "namespaces need root" if os.geteuid() != 0 else (f"missing: {', '.join(missing)}" if missing else "")
    if not problem and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        problem = "no PostgreSQL server binaries under /usr/lib/postgresql"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"multi-host tests: {problem} (CI=true)")
        pytest.skip(f"multi-host tests: {problem}")


def _ip(*args: str, pid: int | None = None) -> None:
    argv = ["ip", *args] if pid is None else ["nsenter", "-t", str(pid), "-n", "--", "ip", *args]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Host:
    """One machine: its name, address and the process holding its namespaces; what it started dies with it."""

    name: str
    address: str
    holder: subprocess.Popen[bytes]
    port_name: str  # its cable's end in the switch
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def argv(self, *command: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-n", "-m", "-u", "-i", "--", *command]

    def run(
        self, *command: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run command on this host and return what it did (the caller checks the exit code)."""
        return subprocess.run(
            self.argv(*command), env=env, input=input, capture_output=True, text=True, timeout=timeout, cwd="/"
        )

    def check(self, *command: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
        proc = self.run(*command, env=env, input=input)
        if proc.returncode != 0:
            raise AssertionError(
                f"{self.name}: {' '.join(command)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def start(self, *command: str, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[str]:
        """A long-running process on this host (a server, a worker), stopped when the network closes."""
        out = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(
            self.argv(*command),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            cwd="/",
        )
        if log:
            out.close()  # type: ignore[union-attr]
        self.started.append(proc)
        return proc

    def write(self, path: str, text: str, owner: str = "root", mode: str = "600") -> None:
        """A file in this host's private /tmp (no other host sees it)."""
        script = 'umask 077; cat > "$1" && chown "$2" "$1" && chmod "$3" "$1"'
        self.check("sh", "-c", script, "sh", path, owner, mode, input=text)

    def wait_for_port(self, address: str, port: int, timeout: float = 60) -> None:
        """Until a TCP connection from this host to address:port succeeds."""
        probe = f"import socket; socket.create_connection(({address!r}, {port}), timeout=1).close()"
        deadline = time.monotonic() + timeout
        while self.run("python3", "-c", probe).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: nothing listens on {address}:{port} after {timeout:.0f} s")
            time.sleep(0.3)


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 15) -> None:
    """Stop a process group this test started (by its id), then kill it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


class Network:
    """A switch (a bridge in its own namespace) and the hosts plugged into it."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]  # interface names are at most 15 characters
        self.switch = self._holder(["--net"])
        self.hosts: dict[str, Host] = {}
        _ip("link", "add", "br0", "type", "bridge", pid=self.switch.pid)
        _ip("link", "set", "br0", "up", pid=self.switch.pid)

    @staticmethod
    def _holder(namespaces: Sequence[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["unshare", *namespaces, "--", *HOLD], start_new_session=True)
        for _ in range(100):  # until unshare has made the namespaces and become the sleep
            if os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                return proc
            time.sleep(0.02)
        raise AssertionError("unshare did not make its namespaces")

    def add(self, name: str, number: int) -> Host:
        """Plug in a new host named name at SUBNET.number, with an empty private /tmp."""
        holder = self._holder(["--net", "--mount", "--uts", "--ipc", "--propagation", "private"])
        near, far = f"fh{self.tag}h{number}", f"fh{self.tag}s{number}"
        host = Host(name, f"{SUBNET}.{number}", holder, far)
        self.hosts[name] = host
        _ip("link", "add", near, "type", "veth", "peer", "name", far)
        _ip("link", "set", near, "netns", str(holder.pid))
        _ip("link", "set", far, "netns", str(self.switch.pid))
        _ip("link", "set", far, "master", "br0", "up", pid=self.switch.pid)
        for args in (("link", "set", "lo", "up"), ("link", "set", near, "name", "eth0"), ("link", "set", "eth0", "up")):
            _ip(*args, pid=holder.pid)
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", pid=holder.pid)
        nsenter = ["nsenter", "-t", str(holder.pid), "-m", "-u", "--"]
        checkout = Path(__file__).resolve().parents[2]
        kept = _under_tmp(str(checkout))  # an empty /tmp would hide a checkout (and its venv) that lives there
        if kept:
            subprocess.run([*nsenter, "mount", "--bind", str(checkout), "/mnt"], check=True)
        subprocess.run([*nsenter, "mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp"], check=True)
        if kept:
            subprocess.run([*nsenter, "mkdir", "-p", str(checkout)], check=True)
            subprocess.run([*nsenter, "mount", "--bind", "/mnt", str(checkout)], check=True)
        subprocess.run([*nsenter, "hostname", name], check=True)
        return host

    def cut(self, host: Host) -> None:
        """Partition host: its switch port stops forwarding (state disabled) while its link stays up, as when a
        switch or a router between machines fails: packets are dropped silently, connections hang, none is closed."""
        self._port_state(host, "0")

    def heal(self, host: Host) -> None:
        self._port_state(host, "3")  # forwarding

    def _port_state(self, host: Host, state: str) -> None:
        argv = ["nsenter", "-t", str(self.switch.pid), "-n", "--", "bridge", "link", "set", "dev", host.port_name]
        subprocess.run([*argv, "state", state], check=True, capture_output=True, timeout=30)

    def close(self) -> None:
        for host in self.hosts.values():
            for proc in reversed(host.started):
                stop(proc)
        for holder in [h.holder for h in self.hosts.values()] + [self.switch]:
            stop(holder, signal.SIGKILL)  # the namespaces, their cables and the bridge go with their last process


@contextmanager
def network() -> Iterator[Network]:
    need_root_and_tools()
    net = Network()
    try:
        yield net
    finally:
        net.close()


def _under_tmp(*paths: str) -> bool:
    return any(Path(p).resolve().is_relative_to("/tmp") for p in paths)
