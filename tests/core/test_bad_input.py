"""Bad input gets a clear error, and nothing is lost: one-line errors at the CLI, `error` verdicts in the loop."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from db import queries
from system.settings import Settings
from tests.conftest import make_test_fleet
from tests.core.conftest import Fleet, processes_with, scripted
from workers.agents.scripted import write_sample_repo

ADD = "tests/test_calc.py::test_add"
# Quotes, command substitution, backticks, a command list, markup, an emoji code, newlines and non-ASCII.
TITLE = (
    'It\'s "quoted" $(touch PWNED) `touch PWNED`; rm -rf /nonexistent-fleet :thumbs_up: [bold]x[/bold]\nÜnïcödé ✓ 日本'
)
BODY = "Fix add.\n$(touch PWNED) `touch PWNED` && echo $HOME || true; rm -rf /nonexistent-fleet\n\t'\"\\ Ünïcödé ✓ 日本"


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 1, nothing on stdout, and exactly one `error: ...` line on stderr naming the cause."""
    shown = f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.returncode == 1, shown
    assert proc.stdout == "", shown
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), shown
    assert proc.stderr.startswith("error: "), shown
    assert "Traceback" not in proc.stderr, shown
    for fragment in fragments:
        assert fragment in proc.stderr, f"{fragment!r} not in the error line\n{shown}"
    return proc.stderr


def run_all(fleet: Fleet, calls: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Independent CLI calls in parallel: each is a whole process start, so this is what keeps the file fast."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(fleet.run, *args, check=False) for name, args in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def ticket_status(fleet: Fleet, ticket_id: int) -> str:
    with fleet.db().session() as s:
        return queries.get_ticket(s, ticket_id).status


def attempt_ids(shown: dict[str, Any]) -> list[int]:
    return [a["id"] for run in shown["runs"] for a in run["attempts"]]


def test_bad_input_at_the_command_line_is_one_line_and_stores_nothing(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.sample_repo("calc")
    (fleet.tmp / "plain").mkdir()
    files = {
        "not-a-list.yaml": "title: a mapping, not a list\n",
        "unknown-field.yaml": "- title: fine\n  colour: red\n",
        "invalid.yaml": "- title: [unclosed\n",
        "wrong-type.yaml": "- title: fine\n  attempts: many\n",
        "one-bad.json": json.dumps(
            [{"title": "good", "agent_cmd": "true"}, {"title": "bad base", "base": "no-such-ref"}]
        ),
    }
    for name, text in files.items():
        (fleet.tmp / name).write_text(text)
    ok = ["submit", "--repo", "calc", "--title", "t", "--agent-cmd", "true"]
    results = run_all(
        fleet,
        {
            "not git": ["repo", "add", "plain", str(fleet.tmp / "plain"), "--test-cmd", "true"],
            "missing path": ["repo", "add", "gone", str(fleet.tmp / "gone"), "--test-cmd", "true"],
            "inside a repo": ["repo", "add", "sub", str(repo / "tests"), "--test-cmd", "true"],
            "bad name": ["repo", "add", "bad name!", str(repo), "--test-cmd", "true"],
            "duplicate": ["repo", "add", "calc", str(repo), "--test-cmd", "true"],
            "no test cmd": ["repo", "add", "notest", str(repo)],
            "bad test cmd": ["repo", "add", "q", str(repo), "--test-cmd", "pytest -k 'unclosed"],
            "bad default agent": ["repo", "add", "a", str(repo), "--test-cmd", "true", "--agent", "nobody"],
            "unknown repo": ["submit", "--repo", "nope", "--title", "t"],
            "bad base": [*ok, "--base", "no-such-ref"],
            "unknown agent": [*ok, "--agent", "nobody"],
            "empty title": ["submit", "--repo", "calc", "--title", ""],
            "zero attempts": [*ok, "--attempts", "0"],
            "negative timeout": [*ok, "--timeout", "-1"],
            "unbalanced agent cmd": [*ok, "--agent-cmd", "my-agent --say 'hello"],
            **{name: ["submit", "--repo", "calc", "--file", str(fleet.tmp / name)] for name in files},
        },
    )
    expect = {
        "not git": [f"{fleet.tmp / 'plain'} is not a git repository"],
        "missing path": [f"{fleet.tmp / 'gone'} does not exist"],
        "inside a repo": [f"is inside the git repository {repo}"],
        "bad name": ["repo name 'bad name!'", "letters, digits"],
        "duplicate": ["repo 'calc' is already registered"],
        "no test cmd": ["a repo needs --test-cmd"],
        "bad test cmd": ["cannot parse --test-cmd", "Unterminated quoted string"],
        "bad default agent": ["unknown agent 'nobody'", "known agents:", "shell"],
        "unknown repo": ["unknown repo 'nope'", "(known: calc)"],
        "bad base": ["base ref 'no-such-ref' does not exist in repo 'calc'"],
        "unknown agent": ["unknown agent 'nobody'", "known agents:", "shell"],
        "empty title": ["title: must not be empty"],
        "zero attempts": ["attempts: must be at least 1 (got 0)"],
        "negative timeout": ["timeout: must be more than 0"],
        "unbalanced agent cmd": ["cannot parse --agent-cmd", "No closing quotation"],
        "not-a-list.yaml": ["not-a-list.yaml must hold a list of tickets"],
        "unknown-field.yaml": ["ticket 1 in", "unknown-field.yaml: colour: unknown field"],
        "invalid.yaml": ["invalid.yaml is not valid YAML at line 2"],
        "wrong-type.yaml": ["ticket 1 in", "attempts: must be a whole number (got 'many')"],
        "one-bad.json": ["ticket 2 of 2: base ref 'no-such-ref' does not exist"],
    }
    assert set(expect) == set(results)
    for name, fragments in expect.items():
        assert_one_line_error(results[name], *fragments)

    # Nothing was half-written: not the good ticket of the bad batch, not a second repo.
    assert fleet.json("tickets") == []
    assert [r["name"] for r in fleet.json("repo", "list")] == ["calc"]

    [queued] = fleet.submit(*ok[1:])
    results = run_all(
        fleet,
        {
            "show": ["show", "999"],
            "logs": ["logs", "999"],
            "cancel": ["cancel", "999"],
            "approve": ["review", "approve", "999"],
            "review show": ["review", "show", str(queued["id"])],
            "status": ["tickets", "--status", "bogus"],
        },
    )
    assert_one_line_error(results["show"], "unknown ticket 999")
    assert_one_line_error(results["logs"], "unknown attempt 999")
    assert_one_line_error(results["cancel"], "unknown ticket 999")
    assert_one_line_error(results["approve"], "unknown ticket 999")
    assert_one_line_error(results["review show"], f"ticket {queued['id']} has no verified diff (status queued)")
    assert_one_line_error(results["status"], "unknown status 'bogus'", "needs_review")
    assert [t["status"] for t in fleet.json("tickets")] == ["queued"]


TYPO = ADD.replace("test_add", "test_ad")


def test_broken_tickets_end_in_named_errors_and_never_block_good_ones(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"  # the test watches the agent through a file outside its worktree
    fleet.sample_repo("calc")
    write_sample_repo(fleet.tmp / "calc2")
    fleet.run("repo", "add", "notests", str(fleet.tmp / "calc2"), "--test-cmd", "no-such-test-runner --x")
    marker = f"fleet-hang-{uuid.uuid4().hex}"
    # The slow ticket runs until the test releases it: the worker stays up for the checks below, however busy the
    # machine, and no longer than they need.
    release = fleet.tmp / "release-the-slow-ticket"
    vanishing = str(fleet.tmp / "no-such-agent-xyz")
    Path(vanishing).write_text("#!/bin/sh\n")
    Path(vanishing).chmod(0o755)
    wait_then_fix = f"until [ -e {shlex.quote(str(release))} ]; do sleep 0.1; done; exec {scripted('fix-add')}"
    started = fleet.tmp / "the-mistyped-targets-agent-started"
    started_then_fix = f"touch {shlex.quote(str(started))}; exec {scripted('fix-add')}"
    batch = [
        {"title": "good", "agent_cmd": scripted("fix-add"), "targets": [ADD]},
        {"title": "agent missing", "agent_cmd": f"{vanishing} --flag"},
        {"title": "hangs", "agent_cmd": scripted("hang", marker), "timeout": 2},
        {"title": "noisy", "agent_cmd": scripted("noisy"), "targets": [ADD]},
        {"title": "tests missing", "repo": "notests", "agent_cmd": scripted("fix-add"), "targets": [ADD]},
        {"title": "slow", "agent_cmd": f"sh -c {shlex.quote(wait_then_fix)}", "targets": [ADD]},
        {"title": "mistyped target", "agent_cmd": f"sh -c {shlex.quote(started_then_fix)}", "targets": [TYPO]},
    ]
    (fleet.tmp / "batch.json").write_text(json.dumps(batch))
    ids = [t["id"] for t in fleet.submit("--repo", "calc", "--file", "batch.json")]
    Path(vanishing).unlink()  # found at submit, gone by the time the worker runs it
    good, missing, hang, noisy, no_tests, slow, typo = ids
    seen_prompt = fleet.tmp / "prompt-as-the-agent-saw-it.md"
    keep_prompt = f'cp "$FLEET_PROMPT_FILE" {shlex.quote(str(seen_prompt))}; exec {scripted("fix-add")}'
    [odd_ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        TITLE,
        "--body",
        BODY,
        "--agent-cmd",
        f"sh -c {shlex.quote(keep_prompt)}",
        "--target",
        ADD,
    )
    odd = odd_ticket["id"]

    up = fleet.popen("up", "--until-idle", "--concurrency", "8")
    try:
        wait_for("the slow ticket to run", lambda: ticket_status(fleet, slow) == "running")
        assert_one_line_error(
            fleet.run("retry", str(slow), check=False),
            f"ticket {slow} is running; only failed, error, cancelled or rejected tickets retry",
        )
        wait_for("the hanging agent's time limit", lambda: ticket_status(fleet, hang) == "error")
        assert up.poll() is None, "the worker must still be up, or the process check below proves nothing"
        assert processes_with(marker) == []  # killed at its time limit, not when the worker exits
        release.touch()
        output, _ = up.communicate(timeout=180)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, output

    every = (good, missing, hang, noisy, no_tests, slow, odd, typo)
    views = run_all(fleet, {str(t): ["show", str(t), "--json"] for t in every})
    shown = {int(t): json.loads(proc.stdout) for t, proc in views.items()}
    status = {t: view["status"] for t, view in shown.items()}
    assert status == {
        good: "needs_review",
        missing: "error",
        hang: "error",
        noisy: "needs_review",
        no_tests: "error",
        slow: "needs_review",
        odd: "needs_review",
        typo: "error",
    }
    # Nothing lost: every ticket is listed, none is left queued or running.
    assert sorted(t["id"] for t in fleet.json("tickets")) == sorted(status)
    assert sorted(r["id"] for r in fleet.json("review", "list")) == sorted([good, noisy, slow, odd])

    # Environment failures name their cause, in the ticket and in the attempt's verification.
    def only_attempt(ticket: int) -> dict[str, Any]:
        [attempt] = [a for run in shown[ticket]["runs"] for a in run["attempts"]]
        return attempt  # type: ignore[no-any-return]

    assert shown[missing]["reason"] == f"agent command not found: {vanishing}"
    assert only_attempt(missing)["verification"]["reasons"] == [f"agent command not found: {vanishing}"]
    assert shown[hang]["reason"] == "agent timed out after 2s"
    assert only_attempt(hang)["verdict"] == "error"
    assert only_attempt(hang)["error"] == "agent timed out after 2s"
    assert "the agent's run ended without a diff" in only_attempt(hang)["feedback_out"]  # its doing, not the tests'
    assert "not of your change" not in only_attempt(hang)["feedback_out"]
    assert "not of your change" in only_attempt(no_tests)["feedback_out"]
    assert "test command not found: no-such-test-runner" in shown[no_tests]["reason"]
    assert only_attempt(no_tests)["verdict"] == "error"
    assert any("no-such-test-runner" in r for r in only_attempt(no_tests)["verification"]["reasons"])
    # No diff could be verified without a baseline: the agent was never started, so it cost nothing.
    base_error = "the tests could not run at the base commit: test command not found: no-such-test-runner"
    assert (only_attempt(no_tests)["error"], only_attempt(no_tests)["diff_stat"]) == (base_error, "0 files, +0 -0")
    assert "[fleet] the agent was not started" in fleet.run("logs", str(only_attempt(no_tests)["id"])).stdout
    assert processes_with(marker) == []
    # A target the base does not have could never pass: said with the closest test, before any agent ran.
    assert only_attempt(typo)["error"] == (
        f"the ticket names a test the base commit does not have: {TYPO} (did you mean {ADD}?); a --target must"
        " name a test of the base commit as the test command's report names it"
    )
    assert not started.exists() and shown[typo]["reason"] == only_attempt(typo)["error"]

    # Megabytes of agent output: the stored transcript is bounded, and the diff still verified.
    [candidate] = fleet.json("review", "show", str(noisy))["candidates"]
    limit = Settings.model_fields["transcript_limit_bytes"].default
    assert 1000 < len(candidate["transcript"].encode()) < limit + 200
    assert "bytes omitted" in candidate["transcript"]
    assert candidate["verification"]["fail_to_pass"] == [ADD]

    # Ticket text is data: stored and shown byte-exact, handed to the agent as is, never run.
    assert (shown[odd]["title"], shown[odd]["body"]) == (TITLE, BODY)
    [attempt_id] = attempt_ids(shown[odd])
    prompt_file = seen_prompt.read_text(encoding="utf-8")
    assert TITLE in prompt_file and BODY in prompt_file
    assert TITLE in fleet.run("show", str(odd)).stdout
    logs = fleet.run("logs", str(attempt_id)).stdout
    assert TITLE in logs and BODY in logs
    places = [fleet.tmp, Path.home(), Path.cwd(), Path("/tmp")]
    pwned = [p for place in places for p in place.glob("PWNED*")] + list(fleet.tmp.rglob("PWNED*"))
    assert pwned == []


def test_a_bad_setting_in_the_environment_is_one_line_naming_its_variable(tmp_path: Path) -> None:
    fleet = make_test_fleet(tmp_path, FLEET_VERIFY_CONCURRENCY="four")
    for command in (["repo", "list"], ["cache", "list"], ["up", "--until-idle"], ["web", "--port", "1"]):
        assert_one_line_error(fleet.run(*command, check=False), "FLEET_VERIFY_CONCURRENCY: must be a whole number")


@pytest.mark.parametrize(
    "variable,value,error",
    [
        ("FLEET_AGENT_HOSTS", '["pypi.org:443"', "FLEET_AGENT_HOSTS: not a JSON list"),
        ("FLEET_AGENT_LIMITS", "codex=2", 'FLEET_AGENT_LIMITS: not valid JSON (a mapping is written as {"name": 2})'),
        ("FLEET_SANDBOX_READ_PATHS", "/srv/x/a,b", "FLEET_SANDBOX_READ_PATHS: 'b' is not an absolute path"),
        ("FLEET_AGENT_HOSTS", "foo,bar", "FLEET_AGENT_HOSTS: 'foo' is not host:port (api.example.com:443"),
        ("FLEET_SETUP_HOSTS", "pypi.org", "FLEET_SETUP_HOSTS: 'pypi.org' is not host:port (api.example.com:443"),
    ],
)
def test_a_list_or_mapping_setting_that_is_not_json_is_one_line_naming_its_variable(
    tmp_path: Path, variable: str, value: str, error: str
) -> None:
    fleet = make_test_fleet(tmp_path, **{variable: value})
    assert_one_line_error(fleet.run("repo", "list", check=False), error)


def test_a_list_setting_takes_json_or_comma_separated_items() -> None:
    from system.settings import Settings

    for given in ('["a.example:443", "b.example:443"]', "a.example:443, b.example:443,"):
        assert Settings(agent_hosts=given).agent_hosts == ["a.example:443", "b.example:443"]


@pytest.mark.parametrize(
    "variable", ["FLEET_VERIFY_CONCURRENCY", "FLEET_REFILL_CONCURRENCY", "FLEET_WORKTREE_POOL_SIZE"]
)
def test_a_negative_concurrency_or_pool_size_is_one_line_naming_its_variable(tmp_path: Path, variable: str) -> None:
    fleet = make_test_fleet(tmp_path, **{variable: "-1"})
    assert_one_line_error(fleet.run("up", "--until-idle", check=False), f"{variable}: must be at least 0")


def test_a_database_that_cannot_be_opened_is_one_line_naming_it_and_no_password(tmp_path: Path) -> None:
    (tmp_path / "a-folder.db").mkdir()
    (tmp_path / "not-a-database.db").write_text("these bytes are not SQLite's\n" * 8)
    unopenable = {
        f"sqlite:///{tmp_path / 'a-folder.db'}": f"cannot open the SQLite database {tmp_path / 'a-folder.db'}: ",
        f"sqlite:///{tmp_path / 'not-a-database.db'}": (
            f"cannot open the SQLite database {tmp_path / 'not-a-database.db'}: file is not a database"
        ),
        "postgresql://fleet:hunter2@127.0.0.1:1/fleet": "cannot open the database of FLEET_DATABASE_URL: ",
    }
    for url, named in unopenable.items():
        fleet = make_test_fleet(tmp_path, database_url=url)
        for command in (["tickets"], ["status"], ["show", "1"], ["repo", "list"], ["up", "--until-idle"]):
            line = assert_one_line_error(fleet.run(*command, check=False), named)
            assert "hunter2" not in line


def test_a_fleet_home_that_cannot_be_a_folder_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    home = tmp_path / "a-file" / "fleet"
    fleets = {
        f"cannot make Fleet's folder at {tmp_path / 'a-file'} (FLEET_HOME)": make_test_fleet(
            tmp_path, FLEET_HOME=str(tmp_path / "a-file")
        ),
        f"cannot open the SQLite database {home / 'fleet.db'}": make_test_fleet(
            tmp_path, database_url=f"sqlite:///{home / 'fleet.db'}"
        ),
    }
    for named, fleet in fleets.items():
        for command in (["tickets"], ["status"], ["repo", "list"]):
            assert_one_line_error(fleet.run(*command, check=False), named)
