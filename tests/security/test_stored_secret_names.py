"""A secret's name reaches the tests or an agent only where a person who may pass it on named it: the operator for a
repository (`fleet repo add/update --test-env/--agent-env`), the submitter for a ticket (`--agent-env`). A name a
repository's settings hold from before `.fleet.toml` was checked is left out where the environment is built, and
the worker says which."""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path

from db import queries
from db.engine import Database
from db.migrate import upgrade
from db.specs import RepoSettings, RepoSpec
from db.spectypes import granted_names
from orchestrator.repos import register_repo, update_repo
from system.git import git
from tests.conftest import Fleet
from tests.orchestrator.workers_stub import AGENTS
from verification.runner import run_tests
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo

TOKEN = "tok-" + uuid.uuid4().hex  # no known key's shape: only its name says it is a secret


def test_the_operators_secret_names_are_kept_as_its_own_and_a_fleet_tomls_never_are(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_sample_repo(repo)
    (repo / ".fleet.toml").write_text('test_cmd = "true"\nagent_env = ["PROJECT_SETTING"]\n')
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "settings", cwd=repo)
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    added = register_repo(db, RepoSpec(name="r", path=str(repo), test_env=["PROJECT_SETTING", "GITHUB_TOKEN"]), AGENTS)
    assert granted_names(added["settings"]) == {"test_env": ("GITHUB_TOKEN",)}
    changed = update_repo(db, "r", RepoSettings(agent_env=["AWS_SECRET_ACCESS_KEY"]), None, AGENTS)
    assert granted_names(changed["settings"]) == {
        "test_env": ("GITHUB_TOKEN",),
        "agent_env": ("AWS_SECRET_ACCESS_KEY",),
    }
    dropped = update_repo(db, "r", RepoSettings(test_env=["PROJECT_SETTING"]), None, AGENTS)
    assert granted_names(dropped["settings"]) == {"agent_env": ("AWS_SECRET_ACCESS_KEY",)}


def test_a_test_run_leaves_out_a_secret_name_no_operator_passed_and_says_so(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GITHUB_TOKEN": TOKEN, "PROJECT_SETTING": "kept"}
    report = 'echo "token=${GITHUB_TOKEN:+set} setting=$PROJECT_SETTING"'
    names = ("GITHUB_TOKEN", "PROJECT_SETTING")
    stored = run_tests(tmp_path, report, timeout=30, report_dir=tmp_path / "r1", env=env, env_names=names)
    assert "token= setting=kept" in stored.output
    assert stored.warnings == [
        "test_env names GITHUB_TOKEN, shaped like a secret, which no operator passed on: not passed on "
        "(`fleet repo update REPO --test-env NAME` with each of its names passes it)"
    ]
    granted = run_tests(
        tmp_path, report, timeout=30, report_dir=tmp_path / "r2", env=env, env_names=names, granted_names=names[:1]
    )
    assert "token=set setting=kept" in granted.output and granted.warnings == []


def _agent_saw(fleet: Fleet, *options: str) -> tuple[list[str], str]:
    """What one ticket's agent and tests saw of GITHUB_TOKEN and PROJECT_SETTING (by lines that show no value): its
    verification's warnings and its attempt's log (the transcript and the tests' output)."""
    seen = 'echo "agent-token=${GITHUB_TOKEN:+set} agent-setting=$PROJECT_SETTING printed=$GITHUB_TOKEN"'
    seen += '; echo "# a change, so that the tests run" >> calc.py'
    command = f"sh -c {shlex.quote(seen)}"
    [ticket] = fleet.submit("--repo", "legacy", "--title", "t", "--attempts", "1", "--agent-cmd", command, *options)
    fleet.up()
    attempt = fleet.json("show", str(ticket["id"]))["runs"][0]["attempts"][0]
    return attempt["verification"]["warnings"], fleet.run("logs", str(attempt["id"])).stdout


def test_a_secret_name_stored_before_the_check_reaches_nothing_until_the_operator_or_the_submitter_names_it(
    embedded: Fleet,
) -> None:
    fleet = embedded
    repo = fleet.tmp / "legacy"
    write_sample_repo(repo)
    test_cmd = f'echo "tests-token=${{GITHUB_TOKEN:+set}}"; {SAMPLE_TEST_CMD}'
    fleet.run("repo", "add", "legacy", str(repo), "--test-cmd", test_cmd)
    with fleet.db().session() as s:  # as a `.fleet.toml` left them before it was checked: no operator named them
        names = ["GITHUB_TOKEN", "PROJECT_SETTING"]
        queries.get_repo(s, "legacy").settings = {"test_env": names, "agent_env": names}
    fleet.env |= {"GITHUB_TOKEN": TOKEN, "PROJECT_SETTING": "kept"}

    warnings, transcript = _agent_saw(fleet)
    assert "tests-token=\n" in transcript
    assert "test_env names GITHUB_TOKEN, shaped like a secret, which no operator passed on" in warnings[0]
    assert "agent-token= agent-setting=kept" in transcript
    assert "[fleet] agent_env names GITHUB_TOKEN, shaped like a secret, which no operator passed on" in transcript

    # The submitter spells the name out: the agent gets it, and its value is masked in what Fleet stores.
    _, transcript = _agent_saw(fleet, "--agent-env", "GITHUB_TOKEN")
    assert "agent-token=set agent-setting=kept printed=[redacted]" in transcript and TOKEN not in transcript

    fleet.run(
        "repo", "update", "legacy", *(f"--{setting}={name}" for setting in ("test-env", "agent-env") for name in names)
    )
    warnings, transcript = _agent_saw(fleet)
    assert "tests-token=set" in transcript and not any("no operator passed on" in line for line in warnings)
    assert "agent-token=set agent-setting=kept" in transcript and "no operator passed on" not in transcript
