"""Shared by the fake agent CLIs: record how they were called, edit a file in cwd, print the documented output.

$FAKE_CLI_LOG: a JSON-lines file each call appends {"cli", "argv", "stdin", "cwd", "env"} to.
$FAKE_CLI_MODE: "ok" (default) or "error" (the CLI's documented failure report).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SEEN_ENV = ("MSWEA_CONFIGURED", "FLEET_PROMPT_FILE", "FLEET_MODEL")


def prompt_from(argv: list[str], stdin: str, flag: str | None) -> str:
    """The ticket as the CLI received it: the file after `flag`, the argument after `flag`, or standard input."""
    if flag is None:
        return stdin
    value = argv[argv.index(flag) + 1]
    return Path(value).read_text() if flag == "--message-file" else value


def run(cli: str, ok: str, error: str, *, prompt_flag: str | None = None) -> int:
    """Record the call, write the prompt into edited-by-<cli>.txt, print ok or error byte for byte."""
    argv = sys.argv[1:]
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    env = {k: os.environ.get(k) for k in SEEN_ENV}
    record = {"cli": cli, "argv": argv, "stdin": stdin, "cwd": os.getcwd(), "env": env}
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps(record) + "\n")
    Path(f"edited-by-{cli}.txt").write_text(prompt_from(argv, stdin, prompt_flag))
    failing = os.environ.get("FAKE_CLI_MODE") == "error"
    sys.stdout.write(error if failing else ok)
    sys.stdout.flush()
    return 1 if failing else 0
