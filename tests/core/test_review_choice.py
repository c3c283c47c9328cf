"""Which diff lands: a rejected diff never again, the candidate the reviewer names, identical diffs as one candidate."""

from __future__ import annotations

import shlex
from typing import Any

from system.git import git
from tests.core.conftest import Fleet, scripted


def _submit(fleet: Fleet, agent: str, fanout: int = 1) -> dict[str, Any]:
    [ticket] = fleet.submit(
        "--repo", "calc", "--title", "add", "--body", "tests/test_calc.py::test_add",
        "--agent-cmd", agent, "--fanout", str(fanout), "--attempts", "1",
    )  # fmt: skip
    return ticket


def _landed(fleet: Fleet, repo: Any, ticket: int) -> tuple[str, str]:
    """The approved branch's calc.py and commit message."""
    branch = f"fleet/ticket-{ticket}"
    return git("show", f"{branch}:calc.py", cwd=repo), git("log", "-1", "--format=%B", branch, cwd=repo)


def test_approve_after_a_reject_lands_the_new_attempt_never_the_rejected_one(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.sample_repo()
    # attempt 1 fixes add only; the attempt after the reviewer's words fixes div as well: two different diffs
    ticket = _submit(fleet, scripted("by-attempt", "fix-add", "fix-add+fix-div"))["id"]
    fleet.up()
    [first] = fleet.json("review", "show", str(ticket))["candidates"]
    rejected = fleet.json("review", "reject", str(ticket), "--feedback", "also fix div")
    assert rejected == {
        "id": ticket,
        "status": "queued",
        "chosen": {"id": first["id"], "run": 1, "number": 1},
        "attempt": rejected["attempt"],
    }
    assert rejected["attempt"] > first["id"]
    fleet.up()
    shown = fleet.json("review", "show", str(ticket))
    assert [(c["number"], "return a / b" in c["diff"]) for c in shown["candidates"]] == [(2, True)]
    approved = fleet.json("review", "approve", str(ticket))
    assert approved["chosen"] == {"id": rejected["attempt"], "run": 1, "number": 2}
    assert (approved["id"], approved["status"], approved["branch"]) == (ticket, "approved", f"fleet/ticket-{ticket}")
    assert approved["commit"] == git("rev-parse", approved["branch"], cwd=repo).strip()
    code, message = _landed(fleet, repo, ticket)
    assert "return a / b" in code and "return a + b" in code
    assert f"Fleet ticket {ticket}, run 1, attempt 2 (verified)" in message


def test_approve_candidate_n_lands_the_candidate_the_reviewer_chose(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.sample_repo()
    ticket = _submit(fleet, scripted("by-run", "fix-add+fix-div", "fix-add"), fanout=2)["id"]
    fleet.up()
    listed = fleet.run("review", "show", str(ticket)).stdout
    assert "candidate 1: attempt 1 of run 2" in listed  # the smaller diff first; runs counted from 1
    bad = fleet.run("review", "approve", str(ticket), "--candidate", "3", check=False)
    assert bad.returncode == 1 and "--candidate must be 1 to 2" in bad.stderr
    approved = fleet.json("review", "approve", str(ticket), "--candidate", "2")
    assert approved["chosen"]["run"] == 1 and approved["chosen"]["number"] == 1
    code, message = _landed(fleet, repo, ticket)
    assert "return a / b" in code
    assert f"Fleet ticket {ticket}, run 1, attempt 1 (verified; 1 of 2 runs produced this diff)" in message


def test_identical_diffs_are_one_candidate_and_agreement_ranks_it_first(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.sample_repo()
    both = "fix-add+fix-div"
    ticket = _submit(fleet, scripted("by-run", both, "fix-add", both, both), fanout=4)["id"]
    fleet.up(concurrency=2)
    shown = fleet.json("review", "show", str(ticket))
    got = [(c["runs_agreeing"], c["agreement"], c["diff_stat"]) for c in shown["candidates"]]
    assert got == [
        (3, "3 of 4 runs produced this diff", "1 file, +2 -2"),  # agreement outranks the smaller lone diff
        (1, "1 of 4 runs produced this diff", "1 file, +1 -1"),
    ]
    assert len(shown["candidates"][0]["same_diff_attempts"]) == 3
    assert "3 of 4 runs produced this diff" in fleet.run("review", "show", str(ticket)).stdout
    fleet.run("review", "approve", str(ticket))
    assert "3 of 4 runs produced this diff" in _landed(fleet, repo, ticket)[1]


def test_show_says_gamed_counts_runs_from_1_and_prints_the_feedback(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    ticket = _submit(fleet, scripted("game-edit-test"))["id"]
    fleet.up()
    text = fleet.run("show", str(ticket)).stdout
    assert f"ticket {ticket} [failed: gamed]" in text
    assert "  run 1 (shell): failed" in text and "run 0" not in text
    [run] = fleet.json("show", str(ticket))["runs"]
    assert (run["number"], run["attempts"][0]["run"], run["attempts"][0]["number"]) == (1, 1, 1)
    assert "feedback (no further attempt was made):" in text
    assert "tests/test_calc.py" in text.split("feedback (no further attempt was made):")[1]


def test_reject_without_feedback_says_which_attempt_and_queues_none(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    ticket = _submit(fleet, scripted("fix-add"))["id"]
    fleet.up()
    [best] = fleet.json("review", "show", str(ticket))["candidates"]
    rejected = fleet.json("review", "reject", str(ticket))
    chosen = {"id": best["id"], "run": 1, "number": 1}
    assert rejected == {"id": ticket, "status": "rejected", "chosen": chosen, "attempt": None}
    # Without feedback nothing is queued; the ticket is not a dead end: retry starts it again (the rejected diff
    # is never offered again, so the agent's same diff goes back to it)
    assert fleet.json("show", str(ticket))["status"] == "rejected"
    again = fleet.run("retry", str(ticket))
    assert again.returncode == 0 and fleet.json("show", str(ticket))["status"] == "queued"


def test_a_reject_without_feedback_says_how_to_start_again(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    ticket = _submit(fleet, scripted("fix-add"))["id"]
    fleet.up()
    said = fleet.run("review", "reject", str(ticket)).stdout.strip()
    again = f"`fleet retry {ticket}` starts the ticket again (or reject with --feedback next time)"
    assert said == f"ticket {ticket} rejected; no new attempt: {again}"


def test_the_same_diff_after_a_reject_goes_back_to_the_agent_never_an_empty_review(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    [ticket] = fleet.submit(
        "--repo", "calc", "--title", "add", "--body", "tests/test_calc.py::test_add",
        "--agent-cmd", scripted("fix-add"), "--attempts", "2",
    )  # fmt: skip
    fleet.up()
    fleet.json("review", "reject", str(ticket["id"]), "--feedback", "also handle negative numbers")
    fleet.up()  # the agent makes the same diff again and again: it passes, but a reviewer refused it
    shown = fleet.json("show", str(ticket["id"]))
    assert shown["status"] == "failed", shown
    attempts = [a for run in shown["runs"] for a in run["attempts"]]
    assert shown["reason"] == "the same diff a reviewer rejected"
    assert "a reviewer already rejected" in attempts[-1]["feedback_in"]
    assert "also handle negative numbers" in attempts[-1]["feedback_in"]
    assert fleet.json("review", "list") == []


def test_after_feedback_the_diff_that_answers_it_outranks_the_runs_made_before_it(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.sample_repo()
    # run 1 fixes add and div, then (answering the reviewer) all three; run 2 only add, the smallest diff of all
    first_run = scripted("by-attempt", "fix-add+fix-div", "fix-all")
    agent = f'if [ "$FLEET_RUN" = 0 ]; then exec {first_run}; else exec {scripted("fix-add")}; fi'
    ticket = _submit(fleet, f"sh -c {shlex.quote(agent)}", fanout=2)["id"]
    fleet.up()
    before = fleet.json("review", "show", str(ticket))["candidates"]
    assert [(c["run"], c["diff_stat"], c["before_feedback"]) for c in before] == [
        (2, "1 file, +1 -1", False),
        (1, "1 file, +2 -2", False),
    ]
    fleet.json("review", "reject", str(ticket), "--candidate", "2", "--feedback", "also fix mul")
    fleet.up()
    after = fleet.json("review", "show", str(ticket))["candidates"]
    assert [(c["run"], c["number"], c["before_feedback"]) for c in after] == [(1, 2, False), (2, 1, True)]
    older = fleet.run("review", "show", str(ticket), "--candidate", "2").stdout
    assert "made before the reviewer's latest feedback" in older
    assert fleet.json("review", "approve", str(ticket))["chosen"]["number"] == 2
    assert "return a * b" in _landed(fleet, repo, ticket)[0]
