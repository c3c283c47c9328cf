"""Run git as data-in, data-out: hooks, fsmonitor and prompts are off, so no repository content runs as a command."""

from __future__ import annotations

import os
import resource
import select
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from system.credentials import shown_url
from system.environ import derived
from system.files import (
    memory_capped,
    memory_contents,
    memory_holding,
    memory_written,
    program_on,
    required_program,
)
from system.rlimits import capped

SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    # Line endings are the repository's (.gitattributes), as on any Linux CI, never the host user's ~/.gitconfig nor
    # the attributes file git reads without a setting (~/.config/git/attributes: `* text eol=crlf`).
    "-c",
    "core.autocrlf=false",
    "-c",
    "core.eol=lf",
    "-c",
    "core.attributesFile=/dev/null",
    # A diff is a patch `git apply` reads at -p1 and places by its context, whatever the host user's diff settings.
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "diff.relative=false",
    "-c",
    "diff.context=3",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "user.name=Fleet",
    "-c",
    "user.email=fleet@localhost",
)
# On `status` and `diff` in a checkout that hostile code wrote: git would run `status` in each submodule's folder
# to see whether it is dirty, with the configuration of whatever git dir that code put there (a clean filter: a
# command run outside any sandbox). A submodule's commit is still compared, read without running anything.
NO_SUBMODULES = "--ignore-submodules=dirty"
GIT_TIMEOUT_SECONDS = 600.0
# What git() reads into memory at most: a listing, a blob or a log of a repository an agent wrote can be as large as
# it likes, and it is held three times (the memory file, its bytes, their text). ERRORS_BYTES: git's errors.
GIT_OUTPUT_LIMIT = 256 * 2**20
ERRORS_BYTES = 2**20
# The worker's git in a checkout that sandboxed code wrote (an agent's, a setup's, a test run's) reads some of its
# files whole: a `.gitignore` of every folder `status` walks (git 2.39), a sparse one of 64 GiB included, at about
# 3 s and 1 GiB of memory a gigabyte. There git runs under this address space (it fails at once, malloc refused,
# past it) and this timeout, with the pack windows of a 32-bit git, so that an honest repository's packs fit in it.
CHECKOUT_ADDRESS_SPACE = 2**30
CHECKOUT_TIMEOUT_SECONDS = 180.0
CHECKOUT_CONFIG = ("-c", "core.packedGitWindowSize=32m", "-c", "core.packedGitLimit=256m")
OUT_OF_MEMORY = ("Out of memory", "Cannot allocate memory")  # git's words when malloc or mmap is refused
HOST_PATH_OPTIONS = ("--git-dir=", "--work-tree=")  # left out of a failed command's name: they name host folders
ENCODING = sys.getfilesystemencoding()  # what os.fsencode gives back a path decoded with surrogateescape


class GitError(Exception):
    """A git command failed; carries the command and git's own message (a URL's password in it shown as ***)."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        self.args_ = args
        self.returncode = returncode
        self.stderr = shown_url(stderr.strip())
        last_line = self.stderr.splitlines()[-1] if self.stderr else f"exit code {returncode}"
        named = [arg for arg in args if not arg.startswith(HOST_PATH_OPTIONS)]
        super().__init__(f"git {' '.join(named[:2])} failed: {last_line}")


class GitOutputTooLarge(Exception):
    """A git command printed more than its caller reads (git() limit_bytes); git was stopped there. Not a GitError:
    a caller that takes a failed command for "not there" must not take this one so."""

    def __init__(self, args: tuple[str, ...], size: int, limit: int) -> None:
        self.args_, self.size, self.limit = args, size, limit
        super().__init__(f"git {' '.join(args[:2])} printed more than {limit:,} bytes ({size:,} read)")


class GitOverBounds(GitError):
    """git, run in a checkout sandboxed code wrote, hit its memory or time bound there (checkout_git)."""


# Reads the token from git's environment when git asks: the token is never on a command line, in a URL or a file.
TOKEN_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'echo "username=${FLEET_GIT_USER:-x-access-token}"; echo "password=$FLEET_GIT_TOKEN"; }; f'
)


def _scrubbed(environment: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment as git gets it (system/environ.py: made once per change of it)."""
    env = {k: v for k, v in environment.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    if env.get("FLEET_GIT_TOKEN"):  # else a credential helper of the user's git config answers, if any
        env.update(
            GIT_CONFIG_COUNT="2",
            GIT_CONFIG_KEY_0="credential.helper",
            GIT_CONFIG_VALUE_0="",
            GIT_CONFIG_KEY_1="credential.helper",
            GIT_CONFIG_VALUE_1=TOKEN_HELPER,
        )
    return env


def git(
    *args: str,
    cwd: Path,
    input: str | None = None,
    timeout: float = GIT_TIMEOUT_SECONDS,
    index_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    errors: str | None = None,
    limit_bytes: int = GIT_OUTPUT_LIMIT,
    address_space: int = 0,
) -> str:
    """Run `git args...` in cwd and return stdout as text; raise GitError on failure (see git_bytes).

    errors="surrogateescape" carries file names that are not UTF-8 through input and output unchanged (a path built
    from such a str names the same file)."""
    codec = errors or "strict"
    given = input.encode(ENCODING, codec) if input is not None else None
    out = git_bytes(
        *args,
        cwd=cwd,
        input=given,
        timeout=timeout,
        index_file=index_file,
        env=env,
        limit_bytes=limit_bytes,
        address_space=address_space,
    )
    return out.decode(ENCODING, codec)


def checkout_git(*args: str, cwd: Path, **options: Any) -> str:
    """git() in a checkout that sandboxed code wrote: within CHECKOUT_ADDRESS_SPACE and CHECKOUT_TIMEOUT_SECONDS,
    past which GitOverBounds says which, never a stalled slot or a worker the kernel's OOM killer takes."""
    try:
        return git(*args, cwd=cwd, **_checkout_bounds(args, options))
    except subprocess.TimeoutExpired as exc:
        raise _timed_out(args, exc.timeout) from None


def checkout_git_bytes(*args: str, cwd: Path, **options: Any) -> bytes:
    """git_bytes() in a checkout that sandboxed code wrote, bounded as checkout_git()."""
    try:
        return git_bytes(*args, cwd=cwd, **_checkout_bounds(args, options))
    except subprocess.TimeoutExpired as exc:
        raise _timed_out(args, exc.timeout) from None


def _checkout_bounds(args: tuple[str, ...], options: dict[str, Any]) -> dict[str, Any]:
    """The timeout for every call; the address space for `status`, the one command of Fleet's in a checkout that reads
    the `.gitignore` of every folder it walks (its reset, clean -x, checkout, apply, diff, ls-files and cat-file read
    none), so that the others start no `prlimit` before git."""
    space = CHECKOUT_ADDRESS_SPACE if "status" in args else 0
    return {"timeout": CHECKOUT_TIMEOUT_SECONDS, **options, "address_space": space}


def _timed_out(args: tuple[str, ...], timeout: float) -> GitOverBounds:
    return GitOverBounds(args, -9, f"git was stopped after {timeout:g}s in a checkout sandboxed code wrote")


def _over_memory(args: tuple[str, ...], returncode: int, said: str, address_space: int) -> GitError:
    """GitOverBounds when git's errors say it ran out of address_space, else the plain GitError."""
    if not address_space or not any(words in said for words in OUT_OF_MEMORY):
        return GitError(args, returncode, said)
    cause = (
        f"git needed more than the {address_space // 2**20:,} MiB it may use in a checkout sandboxed code wrote"
        " (a file git reads whole, such as a .gitignore, is too large)"
    )
    return GitOverBounds(args, returncode, f"{said.strip()}\n{cause}")


def git_bytes(
    *args: str,
    cwd: Path,
    input: bytes | None = None,
    timeout: float = GIT_TIMEOUT_SECONDS,
    index_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    limit_bytes: int = GIT_OUTPUT_LIMIT,
    address_space: int = 0,
) -> bytes:
    """Run `git args...` in cwd and return stdout as bytes, untouched (a patch); raise GitError on failure.

    env: GIT_* variables added to the scrubbed environment. limit_bytes: the most of git's output read; past it,
    GitOutputTooLarge, and git is stopped a little further on. address_space: git's RLIMIT_AS (0: none).
    """
    full_env = derived(_scrubbed) | dict(env or {})
    if index_file is not None:
        full_env["GIT_INDEX_FILE"] = str(index_file)
    program = required_program("git", full_env.get("PATH", os.defpath))
    prefix = _within(address_space)
    bounded = CHECKOUT_CONFIG if address_space else ()
    argv = [*prefix, program, *SAFE_CONFIG, *bounded, *args]
    made: list[int] = []  # memory files: git's input, output and errors (no pipe for Python to pump)
    try:
        given = memory_holding(input, made) if input is not None else None
        out = memory_capped(limit_bytes, made)
        err = memory_capped(ERRORS_BYTES, made)
        setup = _address_space_setter(address_space) if address_space and not prefix else None
        proc = subprocess.Popen(argv, cwd=cwd, stdin=given, stdout=out, stderr=err, env=full_env, preexec_fn=setup)
        _wait(proc, timeout)
        size = memory_written(out)
        if size > limit_bytes:  # before git's exit code: a write past the limit may have been what failed
            raise GitOutputTooLarge(args, size, limit_bytes)
        if proc.returncode != 0:
            errors_text = memory_contents(err, memory_written(err)).decode(ENCODING, "replace")
            raise _over_memory(args, proc.returncode, errors_text, address_space)
        return memory_contents(out, size)
    finally:
        for fd in made:
            os.close(fd)


def _within(address_space: int) -> tuple[str, ...]:
    """`prlimit` as an argv prefix that gives git its address space (one exec, where a preexec_fn would fork the
    whole worker); none without a limit or without prlimit (then _address_space_setter)."""
    prlimit = program_on("prlimit", None) if address_space else None
    return (prlimit, f"--as={_capped(address_space)}:", "--") if prlimit else ()


def _address_space_setter(address_space: int) -> Callable[[], None]:
    def setter() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (_capped(address_space), resource.getrlimit(resource.RLIMIT_AS)[1]))

    return setter


def _capped(address_space: int) -> int:
    """address_space, or the worker's hard limit when that is lower (a soft limit cannot exceed it)."""
    return capped(address_space, resource.getrlimit(resource.RLIMIT_AS)[1])


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for git's exit, woken by a pidfd; past the timeout it is killed (subprocess.TimeoutExpired)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel, or not Linux)
        pidfd = None
    try:
        if pidfd is None:
            proc.wait(timeout)
            return
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            raise subprocess.TimeoutExpired(proc.args, timeout)
        proc.wait()
    except BaseException:  # past the timeout, or the wait interrupted: git does not run on, unwaited
        proc.kill()
        proc.wait()
        raise
    finally:
        if pidfd is not None:
            os.close(pidfd)
