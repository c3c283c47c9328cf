"""The git and forge tokens do their work (the push and the PR happen) and are found nowhere else: not in the
agent's environment or transcript, the database, the logs, the mirrors, or what was sent to the forge's bodies."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.conftest import Fleet
from tests.core.conftest import scripted
from tests.forge.gitserver import GitServer
from tests.forge.helpers import attempts, pr_repo
from tests.forge.scripted_forge import ScriptedForge


def _files(root: Path) -> list[Path]:
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names]


@pytest.mark.slow  # a real `fleet up`: agents, verification, delivery
def test_credentials_never_reach_an_agent_a_transcript_the_database_or_a_log(
    fleet_with_forge: Fleet, git_server: GitServer, forge: ScriptedForge
) -> None:
    fleet = fleet_with_forge
    pr_repo(fleet, git_server, forge)
    snoop = fleet.tmp / "snoop.sh"  # an agent that prints everything it can see, then fixes add()
    snoop.write_text(
        '#!/bin/sh\nenv\necho "git token: $FLEET_GIT_TOKEN github: $FLEET_GITHUB_TOKEN"\n'
        'git config --list --show-origin 2>&1\ncat "$HOME/.git-credentials" 2>&1\n'
        f"exec {scripted('fix-add')}\n"
    )
    snoop.chmod(0o755)
    [ticket] = fleet.submit("--repo", "shop", "--title", "add() subtracts", "--body", "tests/test_calc.py::test_add",
                            "--agent-cmd", shlex.quote(str(snoop)), "--attempts", "1",
                            "--agent-env", "FLEET_GIT_TOKEN", "--agent-env", "FLEET_GITHUB_TOKEN")  # fmt: skip
    fleet.up()
    decision = fleet.json("review", "approve", str(ticket["id"]))
    assert decision["pr_url"]  # the tokens did their work: the push and the pull request happened
    assert any(git_server.authorised(auth) for auth in git_server.seen_auth)

    [attempt] = attempts(fleet, ticket["id"])
    with fleet.db().session() as s:
        from db import queries

        transcript = queries.get_attempt(s, attempt["id"]).transcript
    assert "git token: " in transcript  # the agent did run and print (and asked for the tokens by name: refused)
    assert "FLEET_GIT_TOKEN" not in transcript and "FLEET_GITHUB_TOKEN" not in transcript

    secrets = [git_server.password.encode(), forge.token.encode(), b"hook-secret-0123456789"]
    leaks = [(str(f), s) for f in _files(fleet.home) for s in secrets if s in f.read_bytes()]
    assert leaks == []  # the database (and its journal), the worker log, the mirrors' config, the attempts
    for _method, path, body, headers in forge.requests:
        assert forge.token not in path + body
        assert git_server.password not in path + body + str(headers)
