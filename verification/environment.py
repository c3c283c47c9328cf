"""What a checkout needs besides its files: a setup command, files copied in, and a port range of its own."""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from db.spectypes import SetupNetwork
from system.files import copy_into
from system.git import GitError
from system.mirror import exclusive_lock, try_lock
from system.process import ProcessResult, run_process
from system.sandbox import confine, scratch_env, setup_view
from verification.envcache import EnvCache, NotCacheable, created_by_setup, untracked

log = logging.getLogger(__name__)

PORT_WAIT_SECONDS = 0.2
MIN_SECRET_LENGTH = 4
MAX_NAMED_DENIALS = 3  # destinations the egress proxy refused, named in a failed setup's error
SETUP_REACH = "a setup reaches only FLEET_SETUP_HOSTS and the repository's setup_hosts"


class SetupFailed(Exception):
    """The repository's setup command failed; the message names the step and the cause."""


@dataclass(frozen=True)
class PortBlock:
    """A range of TCP ports only this slot uses while it holds the block."""

    base: int
    count: int

    def env(self) -> dict[str, str]:
        return {"FLEET_PORT_BASE": str(self.base), "FLEET_PORT_COUNT": str(self.count)}


class PortAllocator:
    """Hands out disjoint port blocks across threads and processes of one machine (one flock per block)."""

    def __init__(self, root: Path, first_port: int, block_size: int, blocks: int) -> None:
        self.root, self.first_port, self.block_size, self.blocks = root, first_port, block_size, blocks
        self._local = threading.Lock()
        self._held: set[int] = set()  # blocks this process holds: skipped without opening their lock files
        # Where the next search starts: after the last block taken (next fit), from a place of its own in each
        # process, so a process with hundreds of slots does not try every other process's held block each time.
        self._next = random.randrange(blocks)

    @contextmanager
    def lease(self, ports: int = 0, wait_seconds: float = 600.0) -> Iterator[PortBlock]:
        """A range of at least `ports` ports (one block by default), held until the context exits."""
        span = max(1, -(-ports // self.block_size))
        if span > self.blocks:
            raise RuntimeError(f"{ports} ports per slot is more than all {self.blocks * self.block_size} ports")
        self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_seconds
        while True:
            taken = self._try_take(span)
            if taken is not None:
                index, handles = taken
                try:
                    yield PortBlock(self.first_port + index * self.block_size, span * self.block_size)
                finally:
                    with self._local:
                        for handle in handles:
                            handle.close()  # closing the descriptor releases the flock
                        self._held.difference_update(range(index, index + span))
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {span} free consecutive port blocks of the {self.blocks}")
            time.sleep(PORT_WAIT_SECONDS)

    def _try_take(self, span: int) -> tuple[int, list[IO[bytes]]] | None:
        """Lock the first free run of span blocks, searching from after the last one taken.

        The lock files are opened and locked outside the process's lock (a block is marked held first), so a
        hundred slots leasing at once do not queue behind one another's file system calls."""
        with self._local:
            origin = self._next
        step = 0
        while (reserved := self._reserve(span, origin, step)) is not None:
            first, step = reserved
            handles = _lock_files([self.root / f"block-{index}.lock" for index in range(first, first + span)])
            with self._local:
                if handles is not None:
                    self._next = (first + span) % self.blocks
                    return first, handles
                self._held.difference_update(range(first, first + span))  # another process holds one of them
        return None

    def _reserve(self, span: int, origin: int, step: int) -> tuple[int, int] | None:
        """The first run of span blocks from origin + step on that this process does not hold, marked held, and
        the step to search on from if it cannot be locked."""
        with self._local:
            starts = self.blocks - span + 1
            for later in range(step, starts):
                first = (origin + later) % starts
                if not self._held.intersection(range(first, first + span)):
                    self._held.update(range(first, first + span))
                    return first, later + 1
        return None


def _lock_files(paths: Sequence[Path]) -> list[IO[bytes]] | None:
    """Each of paths flocked (their open files), or None and nothing held when one of them is taken."""
    handles: list[IO[bytes]] = []
    for path in paths:
        handle = try_lock(path)
        if handle is None:
            for held in handles:
                held.close()
            return None
        handles.append(handle)
    return handles


def run_setup(
    path: Path,
    command: str,
    *,
    where: str,
    timeout: float,
    env: Mapping[str, str],
    cancelled: threading.Event | None = None,
    wrapper: Sequence[str] = (),
) -> ProcessResult:
    """Run the repository's setup command (trusted repo configuration, so through /bin/sh) in path.

    wrapper: the sandbox (system/sandbox.py setup_view): the code it builds may be a diff's.
    """
    argv = [*wrapper, "/bin/sh", "-c", command]
    result = run_process(argv, cwd=path, env=env, timeout=timeout, cancelled=cancelled, limit_bytes=64_000)
    if result.cancelled:
        raise SetupFailed(f"setup in {where} was cancelled")
    if result.timed_out:
        raise SetupFailed(f"setup in {where} timed out after {timeout:g}s")
    if result.exit_code != 0:
        last = next((line for line in reversed(result.output.splitlines()) if line.strip()), "")
        raise SetupFailed(f"setup in {where} failed (exit {result.exit_code}): {last[:300]}")
    return result


@dataclass(frozen=True)
class CacheUse:
    """How one checkout uses the environment cache: its scope, the files copied in, the key file patterns."""

    cache: EnvCache
    scope: str
    copied: tuple[str, ...]
    key_files: tuple[str, ...]

    def key(self, path: Path, command: str) -> str:
        return self.cache.key(path, self.scope, command, self.copied, self.key_files)


@dataclass(frozen=True)
class SetupRoute:
    """A setup sandbox's way out of its private network, opened by the worker (workers/egress.py) for one setup:
    the proxy's socket, bound in, and the argv prefix of the relay that starts the setup with the proxy variables
    pointing at it. Once the route is closed (every connection it let through recorded), `decisions` gives the
    proxy's transcript lines and `denials` what it refused, one line each."""

    socket: Path
    relay: tuple[str, ...]
    decisions: Callable[[], list[str]]
    denials: Callable[[], list[str]]


SetupEgress = Callable[[], AbstractContextManager[SetupRoute]]


@dataclass(frozen=True)
class SetupSandbox:
    """The sandbox a setup command runs in (system/sandbox.py setup_view): the checkout writable, a scratch folder
    of its own for HOME and TMPDIR, the toolchains and declared paths readable, the hidden paths covered. Both the
    agent's worktree and the verification's checkout are set up in one: what a setup builds may be a diff's code.

    Its network (the repository's `setup_network`): a private loopback, and for "proxy" a route through egress
    (the repository's setup hosts, through the worker's proxy); the host's network only for "host"."""

    scratch: Path
    readable: Sequence[Path]
    hidden: Sequence[Path]
    network: SetupNetwork = "none"
    egress: SetupEgress | None = None

    @contextmanager
    def confining(self, checkout: Path, env: Mapping[str, str]) -> Iterator[Confinement]:
        """The setup's environment (HOME and TMPDIR in the scratch folder) and argv prefix, its route open."""
        env = {**env, **scratch_env(self.scratch)}
        if self.network != "proxy":
            view = setup_view(checkout, self.scratch, self.readable, self.hidden, host_network=self.network == "host")
            yield Confinement(env, confine(view))
            return
        if self.egress is None:
            raise SetupFailed("the setup's network is the egress proxy, but no way to it was given")
        with self.egress() as route:
            view = setup_view(checkout, self.scratch, self.readable, self.hidden, egress_socket=route.socket)
            yield Confinement(env, confine(view) + route.relay, route)


@dataclass(frozen=True)
class Confinement:
    """How one setup runs: its environment, the argv prefix, and its route out when it has one."""

    env: Mapping[str, str]
    wrapper: tuple[str, ...] = ()
    route: SetupRoute | None = None

    def decisions(self) -> str:
        """The egress proxy's transcript lines, one per decision (once the route is closed)."""
        return "".join(f"{line}\n" for line in self.route.decisions()) if self.route else ""

    def failed(self, error: SetupFailed) -> SetupFailed:
        """error, naming the destinations the proxy refused (once the route is closed): a failed install's likely
        cause. Worded as a fact, not as what to allow: a hostile build script chooses what it was refused."""
        denied = self.route.denials() if self.route else []
        if not denied:
            return error
        return SetupFailed(f"{error}; {'; '.join(denied[:MAX_NAMED_DENIALS])}; {SETUP_REACH}")


@dataclass(frozen=True)
class Environment:
    """What setting up a checkout did: its log, and the paths it created (never part of a diff)."""

    log: str
    created: tuple[str, ...]


def set_up_environment(
    path: Path,
    command: str,
    *,
    where: str,
    timeout: float,
    env: Mapping[str, str],
    cancelled: threading.Event | None = None,
    cache: CacheUse | None = None,
    sandbox: SetupSandbox | None = None,
) -> Environment:
    """Restore the cached environment for path, or run the setup (in sandbox, when given; saving what it built when
    allowed)."""
    key = cache.key(path, command) if cache is not None and cache.cache.enabled else None
    if cache is not None and key is not None:
        try:
            restored = cache.cache.restore(key, path)
        except (OSError, subprocess.CalledProcessError, ValueError) as exc:
            log.warning("cannot restore environment %s into %s: %s", key[:12], path, exc)
            restored = None
        if restored is not None:
            note = f"environment restored from the cache (entry {key[:12]}) instead of running: {command}\n"
            return Environment(note, tuple(restored))
    before = untracked(path)
    failure: SetupFailed | None = None
    with sandbox.confining(path, env) if sandbox else nullcontext(Confinement(env)) as confined:
        try:
            result = run_setup(
                path,
                command,
                where=where,
                timeout=timeout,
                env=confined.env,
                cancelled=cancelled,
                wrapper=confined.wrapper,
            )
        except SetupFailed as exc:
            failure = exc
    # The route is closed: a connection the proxy let through is recorded as its tunnel ends, which closing waits for.
    if failure is not None:
        raise confined.failed(failure) from None
    text = f"$ {command}\n{result.output}\n{confined.decisions()}"
    try:
        created = created_by_setup(before, untracked(path))
    except NotCacheable as exc:
        return Environment(text + f"environment not cached: {exc}\n", ())
    if cache is not None and key is not None:
        try:
            cache.cache.save(key, path, created, {"scope": cache.scope, "setup_cmd": command})
        except (OSError, subprocess.CalledProcessError, GitError) as exc:
            log.warning("cannot cache the environment built in %s: %s", path, exc)
    return Environment(text, tuple(created))


def copy_files(pairs: Sequence[tuple[str, str]], root: Path) -> None:
    """Copy each (source on this machine, destination inside root) into the checkout."""
    for source, dest in pairs:
        target = (root / dest).resolve()
        if not target.is_relative_to(root.resolve()):
            raise SetupFailed(f"copy-file destination {dest!r} is outside the checkout")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            raise SetupFailed(f"cannot copy {source} into the checkout: {exc.strerror}") from None


def recopy_files(pairs: Sequence[tuple[str, str]], root: Path) -> None:
    """Copy each (source, destination) into the checkout again after code ran in it: through no link, fifo or
    device it left (system/files.py copy_into); a destination outside the checkout is refused as copy_files does."""
    for source, dest in pairs:
        relative = os.path.normpath(dest).lstrip("/")
        if relative.startswith(".."):
            raise SetupFailed(f"copy-file destination {dest!r} is outside the checkout")
        copy_into(root, relative, Path(source))


def exclude_from_diffs(mirror: Path, paths: Sequence[str]) -> None:
    """List copied files in the mirror's info/exclude, so no worktree's diff ever includes them."""
    if not paths:
        return
    exclude = mirror / "info" / "exclude"
    with exclusive_lock(mirror / "info" / "exclude.lock"):
        present = set(exclude.read_text().splitlines()) if exclude.exists() else set()
        missing = [f"/{p.lstrip('/')}" for p in paths if f"/{p.lstrip('/')}" not in present]
        if missing:
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a") as handle:
                handle.write("".join(line + "\n" for line in missing))


def secrets_in(sources: Sequence[str]) -> list[str]:
    """The values in copied files (whole lines, and the right side of KEY=VALUE) to redact from transcripts."""
    found: set[str] = set()
    for source in sources:
        try:
            text = Path(source).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            value = line.split("=", 1)[1].strip().strip("'\"") if "=" in line else line
            found.update(v for v in (line, value) if len(v) >= MIN_SECRET_LENGTH and not v.startswith("#"))
    return sorted(found, key=len, reverse=True)
