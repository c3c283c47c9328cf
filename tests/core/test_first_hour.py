"""The first hour at the command line: where the state is, what submit refuses, help a newcomer can read."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from tests.conftest import fleet_app
from tests.core.conftest import Fleet, processes_with, scripted
from tests.core.test_bad_input import assert_one_line_error, run_all
from tests.core.test_recovery import wait_for

ADD = "tests/test_calc.py::test_add"


def test_an_empty_home_says_where_it_looked(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["COLUMNS"] = "300"
    where = f"{fleet.home} (FLEET_HOME)"
    assert fleet.run("repo", "list").stdout.startswith(f"no repositories in {where}; add one with")
    queued = fleet.run("tickets", "--status", "queued").stdout
    assert queued.strip() == f"no tickets matching --status queued in {where}"
    assert fleet.run("status").stdout.startswith(f"state: {where}\n")
    assert fleet.json("tickets") == []
    listed = fleet.run("review", "list").stdout
    assert listed == "nothing is waiting for review: `fleet tickets` shows every ticket and its status\n"
    assert sorted(p.name for p in fleet.tmp.iterdir()) == ["home"]


def test_up_says_what_it_runs_how_far_it_is_and_what_to_run_next(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    fleet.submit("--repo", "calc", "--title", "add", "--body", ADD, "--agent-cmd", scripted("fix-add"))
    fleet.submit("--repo", "calc", "--title", "never", "--body", ADD, "--agent-cmd", scripted("never"))
    done = fleet.up(concurrency=2)
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"fleet up: home {fleet.home} (FLEET_HOME)", f"  database sqlite:///{fleet.home}/fleet.db"]
    assert "  one worker process, 2 slots; exits when no work is left" in lines
    assert f"  worker log {fleet.home}/logs/worker.log (-v shows it here)" in lines
    assert lines[5].startswith("tickets 0/2 done · ")  # then a line whenever the counts change
    assert lines[-3].startswith("done in ") and lines[-3].endswith(
        ": tickets 2/2 done · 0 attempts at work · 1 verified · 1 failed · 0 errored · $0.00"
    )
    assert "next: `fleet review list` (1 verified diff waiting for review)" in lines
    assert done.stderr == ""  # Celery's own lines only with -v
    fleet.submit("--repo", "calc", "--title", "again", "--agent-cmd", "true", "--attempts", "1")
    verbose = fleet.run("up", "--until-idle", "-v")  # with work to do, so Celery is up long enough to log
    assert "INFO/MainProcess" in verbose.stderr and "tickets 1/1 done" in verbose.stdout


def test_submit_refuses_a_ticket_whose_agent_can_only_fail(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    (fleet.tmp / "not-executable.sh").write_text("#!/bin/sh\n")
    ok = ["submit", "--repo", "calc", "--title", "t"]
    results = run_all(
        fleet,
        {
            "missing script": [*ok, "--agent-cmd", "./missing.sh --flag"],
            "missing program": [*ok, "--agent-cmd", "no-such-agent-xyz"],
            "not executable": [*ok, "--agent-cmd", "./not-executable.sh"],
            "shell without a command": [*ok, "--agent", "shell"],
            "default agent without a command": ok,
            "unknown agent": [*ok, "--agent", "nobody"],
        },
    )
    assert_one_line_error(results["missing script"], f"agent command not found: ./missing.sh (looked in {fleet.tmp})")
    assert_one_line_error(results["missing program"], "agent command not found: no-such-agent-xyz (looked on PATH)")
    assert_one_line_error(results["not executable"], f"not executable: {fleet.tmp / 'not-executable.sh'}")
    for name in ("shell without a command", "default agent without a command"):
        assert_one_line_error(results[name], "the shell agent needs --agent-cmd")
    assert_one_line_error(results["unknown agent"], "unknown agent 'nobody'")
    assert fleet.json("tickets") == []
    (fleet.tmp / "not-executable.sh").chmod(0o755)
    assert len(fleet.submit(*ok[1:], "--agent-cmd", "./not-executable.sh")) == 1


def test_watch_shows_a_title_that_looks_like_markup_as_it_is(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["COLUMNS"] = "200"
    fleet.sample_repo()
    marker = f"hang-{fleet.tmp.name}"
    [ticket] = fleet.submit("--repo", "calc", "--title", "fix [/red] parser", "--agent-cmd", scripted("hang", marker))
    worker = fleet.popen("up", "--until-idle", "--concurrency", "1")
    try:
        wait_for(lambda: processes_with(marker) != [], timeout=60)
        watched = fleet.run("watch", "--count", "1", "--interval", "0.1")
        assert f"#{ticket['id']} fix [/red] parser" in watched.stdout
        assert "fix [/red] parser" in fleet.run("tickets").stdout
        fleet.run("cancel", str(ticket["id"]))
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()


def every_command(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group
            found += every_command(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def test_every_help_names_values_without_python_types_and_shows_real_defaults(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["COLUMNS"] = "250"
    commands = every_command(typer.main.get_group(fleet_app()))
    assert ("repo", "add") in commands and ("submit",) in commands and len(commands) > 20
    for command in commands:
        shown = fleet.run(*command, "--help").stdout
        assert not re.findall(r"<\w+(?:\[\w+\])?>", shown), (command, shown)
        assert "[default: 0.0]" not in shown, (command, shown)
    # As a process of its own: the in-process runner forces click's help to 80 columns whatever the terminal.
    submit = fleet.cli_subprocess("submit", "--help").stdout
    assert re.search(r"--agent-cmd +AGENT_CMD +The command", submit)
    assert "[default: (the workers' FLEET_AGENT_TIMEOUT_SECONDS, 3600)]" in submit


def test_a_repo_is_updated_in_place_and_removed_only_without_open_tickets(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    fleet.run("repo", "update", "calc", "--max-concurrency", "2")
    updated = fleet.json("repo", "update", "calc", "--test-cmd", "python -m pytest -q tests")
    assert updated["test_cmd"] == "python -m pytest -q tests"
    assert updated["settings"]["max_concurrency"] == 2  # what was not given stays
    assert_one_line_error(fleet.run("repo", "update", "calc", "--test-cmd", "x '", check=False), "cannot parse")

    [ticket] = fleet.submit("--repo", "calc", "--title", "t", "--agent-cmd", "true")
    refused = fleet.run("repo", "remove", "calc", "--yes", check=False)
    assert_one_line_error(refused, f"repo 'calc' has 1 open ticket ({ticket['id']}); cancel them first")
    fleet.run("cancel", str(ticket["id"]))
    assert_one_line_error(fleet.run("repo", "remove", "calc", check=False), "add --yes")
    assert fleet.json("repo", "remove", "calc", "--yes") == {"removed": "calc", "tickets": 1}
    assert fleet.json("repo", "list") == [] and fleet.json("tickets") == []
    assert (fleet.tmp / "calc" / ".git").is_dir()


def test_a_long_title_is_cut_at_a_word_with_an_ellipsis(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["COLUMNS"] = "250"
    fleet.sample_repo()
    title = "Make the parser accept trailing commas in nested argument lists without breaking"
    fleet.submit("--repo", "calc", "--title", title, "--agent-cmd", "true")
    listed = fleet.run("tickets").stdout
    assert "Make the parser accept trailing commas in nested argument…" in listed
    assert title not in listed


def test_revoking_a_revoked_token_says_so(embedded: Fleet) -> None:
    fleet = embedded
    created = fleet.json("token", "create", "--role", "viewer", "--name", "ci")
    assert created["role"] == "viewer" and created["token"]
    token = str(created["id"])
    assert fleet.run("token", "revoke", token).stdout.strip() == f"token {token} revoked"
    again = fleet.run("token", "revoke", token).stdout
    assert again.startswith(f"token {token} was already revoked (at ") and "nothing changed" in again
    assert fleet.json("token", "revoke", token)["already_revoked"] is True


# Commands that run until stopped print progress for a person; approve and reject are review's (issue 15, part A).
NO_JSON = {("up",), ("worker",), ("web",), ("watch",), ("demo",)}


def test_every_command_that_prints_takes_json(embedded: Fleet) -> None:
    fleet = embedded
    commands = [c for c in every_command(typer.main.get_group(fleet_app())) if c and c not in NO_JSON]
    groups = {c[:1] for c in commands if len(c) > 1}
    lacking = [c for c in commands if c not in groups and "--json" not in fleet.run(*c, "--help").stdout]
    assert lacking == []
    assert fleet.json("migrate")["current"] is True
    assert isinstance(fleet.json("gc"), list)
    assert fleet.json("cache", "clear")["deleted"] == 0
    assert fleet.json("export", "--out", str(fleet.tmp / "data.jsonl"))["records"] == 0


@pytest.mark.parametrize("slots", ["0", "-3", "5000"])
def test_up_with_slots_that_cannot_work_is_one_line(embedded: Fleet, slots: str) -> None:
    proc = embedded.cli("up", "--until-idle", "--concurrency", slots, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: --concurrency must be between 1 and 1024 (got {slots})"
