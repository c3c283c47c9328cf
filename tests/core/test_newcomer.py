"""What a newcomer meets following the README: typos, ids past any row, a folder that is not a repository yet,
where an approved branch went, and what `fleet worker` says it runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.conftest import make_test_fleet
from tests.core.conftest import Fleet, scripted
from tests.core.test_bad_input import assert_one_line_error, run_all
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo
from workers.serve import AS_ROOT

ADD = "tests/test_calc.py::test_add"
PAST_64_BITS = "99999999999999999999999"
MAX_ID = 2**63 - 1  # the largest id SQLite and PostgreSQL hold


def test_an_id_past_64_bits_is_one_line_not_a_traceback(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    commands = {
        "show": ["show", PAST_64_BITS],
        "logs": ["logs", PAST_64_BITS],
        "cancel": ["cancel", PAST_64_BITS],
        "retry": ["retry", PAST_64_BITS],
        "review show": ["review", "show", PAST_64_BITS],
        "approve": ["review", "approve", PAST_64_BITS],
        "reject": ["review", "reject", PAST_64_BITS, "--feedback", "x"],
        "token revoke": ["token", "revoke", PAST_64_BITS],
        "merge eject": ["merge", "eject", PAST_64_BITS],
    }
    named = {"logs": "attempt", "token revoke": "token"}
    for name, proc in run_all(fleet, commands).items():
        kind = named.get(name, "ticket")
        assert_one_line_error(proc, f"error: {kind} ids are at most {MAX_ID} (got {PAST_64_BITS})")
    before = fleet.run("tickets", "--before", PAST_64_BITS, check=False)
    assert_one_line_error(before, f"error: --before takes an id, and ids are at most {MAX_ID} (got {PAST_64_BITS})")
    gc = fleet.run("gc", "--older-than", PAST_64_BITS, check=False)
    assert_one_line_error(gc, f"--older-than must be at most 36500 days (got '{PAST_64_BITS}')")


def test_a_number_too_large_that_is_not_an_id_is_named_not_called_an_id(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    limit = fleet.run("tickets", "--limit", PAST_64_BITS, check=False)
    assert_one_line_error(limit, f"error: --limit must be between 1 and {MAX_ID} (got {PAST_64_BITS})")
    # No option of its own to check it: what overflowed is said as Python says it, and no id is blamed.
    watch = fleet.run("watch", "--count", "2", "--interval", "1e300", check=False)
    assert watch.returncode == 1 and watch.stderr.count("\n") == 1, watch.stderr
    assert watch.stderr.startswith("error: a number is out of range: timestamp "), watch.stderr
    assert " id" not in watch.stderr and "Traceback" not in watch.stderr


def test_a_mistyped_command_names_the_one_meant(embedded: Fleet) -> None:
    # The installed `fleet` (a process of its own): its top-level group loads a command's module only to run it.
    typo = embedded.cli_subprocess("submti", "--repo", "calc", check=False)
    assert typo.returncode == 2
    assert "No such command 'submti'. Did you mean 'submit'?" in typo.stderr
    unlike = embedded.cli_subprocess("xyzzy", check=False)
    assert unlike.returncode == 2 and "No such command 'xyzzy'." in unlike.stderr
    assert "Did you mean" not in unlike.stderr


def test_repo_add_says_a_folder_is_missing_or_has_no_commit_yet(embedded: Fleet) -> None:
    fleet = embedded
    empty = fleet.tmp / "empty"
    empty.mkdir()
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    results = run_all(
        fleet,
        {
            "missing": ["repo", "add", "gone", str(fleet.tmp / "gone"), "--test-cmd", "true"],
            "no commit": ["repo", "add", "empty", str(empty), "--test-cmd", "true"],
        },
    )
    assert_one_line_error(results["missing"], f"{fleet.tmp / 'gone'} does not exist")
    assert_one_line_error(results["no commit"], f"{empty} has no commit yet: commit the code and its tests")
    assert fleet.json("repo", "list") == []  # not registered only for every ticket to fail at submit


def test_approving_a_repository_registered_by_url_says_where_its_branch_is(embedded: Fleet) -> None:
    fleet = embedded
    origin = fleet.tmp / "origin"
    write_sample_repo(origin)
    fleet.run("repo", "add", "calc", f"file://{origin}", "--test-cmd", SAMPLE_TEST_CMD)
    fix_add = ("--repo", "calc", "--title", "fix add", "--body", ADD, "--agent-cmd", scripted("fix-add"))
    [ticket], [second] = fleet.submit(*fix_add), fleet.submit(*fix_add)
    fleet.up(concurrency=2)
    approved = fleet.run("review", "approve", str(ticket["id"])).stdout.strip()
    branch = f"fleet/ticket-{ticket['id']}"
    prefix = f"ticket {ticket['id']} approved: branch {branch} in Fleet's mirror "
    assert approved.startswith(prefix), approved
    mirror = approved.removeprefix(prefix).split(" ")[0]
    assert approved.endswith(f"(`git fetch {mirror} {branch}`)")
    fetched = subprocess.run(["git", "-C", str(origin), "fetch", "-q", mirror, branch], capture_output=True, text=True)
    assert fetched.returncode == 0, fetched.stderr  # the line says where the branch is, and it is there
    assert branch not in subprocess.run(["git", "-C", str(origin), "branch"], capture_output=True, text=True).stdout
    shown = {t["id"]: t for t in fleet.json("tickets")}[ticket["id"]]
    assert f"branch {branch} in Fleet's mirror {mirror}" in shown["reason"]
    # --json carries the same two facts the line gives, as fields a script can use.
    decision = fleet.json("review", "approve", str(second["id"]))
    second_branch = f"fleet/ticket-{second['id']}"
    assert (decision["branch"], decision["mirror"]) == (second_branch, mirror)
    assert decision["fetch"] == f"git fetch {mirror} {second_branch}"
    git, *fetch = shlex.split(decision["fetch"])
    fetched = subprocess.run([git, "-C", str(origin), *fetch], capture_output=True, text=True)
    assert fetched.returncode == 0, fetched.stderr


def test_a_team_worker_names_itself_and_the_folder_of_its_files(team: Fleet) -> None:
    fleet = team
    started = fleet.run("worker", "--drain", "--concurrency", "1")
    lines = started.stdout.splitlines()
    assert lines[0] == f"fleet worker: home {fleet.home} (FLEET_HOME): this host's mirrors, worktrees and log"
    assert lines[1] == f"  database {fleet.database_url}"
    assert f"  worker log {fleet.home}/logs/worker.log (-v shows it here)" in lines
    assert "--uid" not in started.stderr  # Celery's advice names an option `fleet worker` has not
    assert (AS_ROOT in lines) == (os.geteuid() == 0)


def test_status_says_why_it_has_no_count_of_a_redis_broker_that_does_not_answer(tmp_path: Path) -> None:
    fleet = make_test_fleet(tmp_path, broker_url="redis://:hunter2@127.0.0.1:9/0")
    shown = fleet.run("status").stdout
    assert re.search(
        r"^queue error +the broker does not answer \(Error 111 connecting to 127\.0\.0\.1:9\.", shown, re.M
    )
    assert "fleet.agents" not in shown and "hunter2" not in shown, shown


def test_repo_remove_refuses_an_unknown_repo_or_an_open_ticket_before_asking(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    fleet.submit("--repo", "calc", "--title", "open", "--agent-cmd", "true")
    unknown = fleet.run("repo", "remove", "nope", check=False)  # no terminal to ask on, and no --yes
    assert_one_line_error(unknown, "unknown repo 'nope' (known: calc)")
    busy = fleet.run("repo", "remove", "calc", check=False)
    assert_one_line_error(busy, "repo 'calc' has 1 open ticket (1); cancel them first")
    assert "Not asked" not in unknown.stderr + busy.stderr


def test_review_show_lists_every_test_the_diff_fixed_with_the_targets_marked(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    fix_all = scripted("fix-all")  # fixes add, mul and div: the ticket is about add alone
    [ticket] = fleet.submit("--repo", "calc", "--title", "fix add", "--target", ADD, "--agent-cmd", fix_all)
    fleet.up(concurrency=1)
    shown = fleet.run("review", "show", str(ticket["id"])).stdout
    mul, div = "tests/test_calc.py::test_mul", "tests/test_calc.py::test_div"
    assert f"fixed (failing at the base, passing with the diff): {ADD} (target), {mul}, {div}\n" in shown, shown
    assert "warnings:" not in shown  # the list is not repeated as a warning
    [candidate] = fleet.json("review", "show", str(ticket["id"]))["candidates"]
    fixed = candidate["verification"]["fixed"]
    assert fixed == [{"test": ADD, "target": True}, {"test": mul, "target": False}, {"test": div, "target": False}]


def test_up_until_idle_says_it_waits_for_a_broker_that_never_answers_then_gives_up(team: Fleet) -> None:
    fleet = team
    fleet.sample_repo()
    [ticket] = fleet.submit("--repo", "calc", "--title", "fix add", "--agent-cmd", scripted("fix-add"))
    fleet.env.update(FLEET_BROKER_URL="redis://:hunter2@127.0.0.1:1/0", FLEET_BROKER_WAIT_SECONDS="11")
    up = fleet.run("up", "--until-idle", "--concurrency", "1", check=False, timeout=60)
    shown = "redis://:***@127.0.0.1:1/0"
    waiting = [line for line in up.stdout.splitlines() if line.startswith(f"waiting for the broker at {shown} (")]
    assert len(waiting) >= 2, up.stdout  # said again while it waits, not once
    assert "check FLEET_BROKER_URL; gives up after 11s (FLEET_BROKER_WAIT_SECONDS)" in waiting[0]
    assert up.returncode == 1
    assert re.fullmatch(
        rf"error: the broker at {re.escape(shown)} did not answer for 1[1-9]s \(FLEET_BROKER_WAIT_SECONDS\): .+; "
        r"check FLEET_BROKER_URL; the tickets stay queued",
        up.stderr.splitlines()[-1],
    ), up.stderr
    assert "hunter2" not in up.stdout + up.stderr
    [queued] = fleet.json("tickets")
    assert (queued["id"], queued["status"]) == (ticket["id"], "queued")  # nothing lost, nothing judged


def test_an_unknown_repo_a_negative_id_and_a_misspelled_field_are_named(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    (fleet.tmp / "batch.yaml").write_text("- title: fix add\n  atempts: 3\n")
    batch = str(fleet.tmp / "batch.yaml")
    results = run_all(
        fleet,
        {
            "typo": ["tickets", "--repo", "clac"],
            "unlike": ["tickets", "--repo", "nope", "--status", "queued"],
            "show": ["show", "-1"],
            "approve": ["review", "approve", "-2", "--candidate", "1"],
            "field": ["submit", "--repo", "calc", "--file", batch],
        },
    )
    assert_one_line_error(results["typo"], "unknown repo 'clac' (did you mean 'calc'? known: calc)")
    assert_one_line_error(results["unlike"], "unknown repo 'nope' (known: calc)")
    assert_one_line_error(results["show"], "error: ticket ids are positive numbers (got -1)")
    assert_one_line_error(results["approve"], "error: ticket ids are positive numbers (got -2)")
    assert_one_line_error(results["field"], f"ticket 1 in {batch}: atempts: unknown field (did you mean 'attempts'?)")
    # A negative number as an option's value is that option's to judge, not an id.
    rejected = fleet.run("review", "reject", "1", "--feedback", "-1", check=False)
    assert_one_line_error(rejected, "unknown ticket 1")
