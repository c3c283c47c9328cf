"""Run git as data-in, data-out: hooks, fsmonitor and prompts are off, so no repository content runs as a command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from system.files import required_program

SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "user.name=Fleet",
    "-c",
    "user.email=fleet@localhost",
)
GIT_TIMEOUT_SECONDS = 600.0


class GitError(Exception):
    """A git command failed; carries the command and git's own message."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr.strip()
        last_line = self.stderr.splitlines()[-1] if self.stderr else f"exit code {returncode}"
        super().__init__(f"git {' '.join(args[:2])} failed: {last_line}")


# Reads the token from git's environment when git asks: the token is never on a command line, in a URL or a file.
TOKEN_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'echo "username=${FLEET_GIT_USER:-x-access-token}"; echo "password=$FLEET_GIT_TOKEN"; }; f'
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
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
    stdout: int | None = None,
) -> str:
    """Run `git args...` in cwd and return stdout; raise GitError on failure.

    env: GIT_* variables added to the scrubbed environment. errors="surrogateescape" carries file names that are
    not UTF-8 through input and output unchanged (a path built from such a str names the same file). stdout: a
    file descriptor that takes git's output as bytes, untouched (then "" is returned).
    """
    full_env = _env() | dict(env or {})
    if index_file is not None:
        full_env["GIT_INDEX_FILE"] = str(index_file)
    proc = subprocess.run(
        [required_program("git", full_env.get("PATH", os.defpath)), *SAFE_CONFIG, *args],
        cwd=cwd,
        input=input,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        errors=errors,
        env=full_env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr)
    return proc.stdout
