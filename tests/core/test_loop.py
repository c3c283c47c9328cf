"""The whole loop through the real CLI: submit, agents in worktrees, verification, feedback, review."""

from __future__ import annotations

from tests.core.conftest import Fleet, scripted


def _attempts(ticket: dict) -> list[dict]:
    return [a for run in ticket["runs"] for a in run["attempts"]]


def test_right_fix_reaches_review_and_approve_lands_a_branch(both_modes: Fleet) -> None:
    fleet = both_modes
    repo = fleet.sample_repo()
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add() subtracts",
        "--body",
        "tests/test_calc.py::test_add fails",
        "--agent-cmd",
        scripted("fix-add"),
    )
    fleet.up()
    shown = fleet.json("show", str(ticket["id"]))
    assert shown["status"] == "needs_review"
    [attempt] = _attempts(shown)
    assert attempt["verification"]["fail_to_pass"] == ["tests/test_calc.py::test_add"]
    assert [r["id"] for r in fleet.json("review", "list")] == [ticket["id"]]
    attempts_dir = fleet.home / "attempts"  # prompt and reports live in the database; the folder is emptied
    left = list(attempts_dir.iterdir()) if attempts_dir.exists() else []
    assert all(path.name.startswith(".spare-") for path in left), left  # kept emptied for the next worker
    assert [report for path in left for report in path.rglob("*.xml")] == []  # its reports emptied, HOME, TMPDIR too

    out = fleet.run("review", "approve", str(ticket["id"])).stdout
    assert "fleet/ticket-1" in out
    from system.git import git

    assert "return a + b" in git("show", "fleet/ticket-1:calc.py", cwd=repo)
    assert "return a - b" in git("show", "HEAD:calc.py", cwd=repo)  # the user's checkout is untouched
    assert fleet.json("show", str(ticket["id"]))["status"] == "approved"


def test_feedback_of_attempt_one_is_in_the_prompt_of_attempt_two(fleet: Fleet) -> None:
    fleet.sample_repo()
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "mul() is off by one",
        "--body",
        "tests/test_calc.py::test_mul fails",
        "--agent-cmd",
        scripted("needs-feedback"),
    )
    fleet.up()
    shown = fleet.json("show", str(ticket["id"]))
    first, second = _attempts(shown)
    assert (first["verdict"], second["verdict"]) == ("failed", "passed")
    assert "tests/test_calc.py::test_mul" in first["feedback_out"]
    assert second["feedback_in"] == first["feedback_out"]
    with fleet.db().session() as s:
        from db import queries

        prompt = queries.get_attempt(s, second["id"]).prompt
    assert first["feedback_out"].strip() in prompt
    assert shown["status"] == "needs_review"


def test_a_failing_ticket_never_reaches_review(fleet: Fleet) -> None:
    fleet.sample_repo()
    [bad] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        scripted("never"),
        "--attempts",
        "2",
    )
    [good] = fleet.submit(
        "--repo", "calc", "--title", "div", "--body", "tests/test_calc.py::test_div", "--agent-cmd", scripted("fix-div")
    )
    fleet.up()
    shown = fleet.json("show", str(bad["id"]))
    assert shown["status"] == "failed"
    assert [a["verdict"] for a in _attempts(shown)] == ["failed", "failed"]
    assert [r["id"] for r in fleet.json("review", "list")] == [good["id"]]
    assert fleet.run("review", "show", str(bad["id"]), check=False).returncode == 1


def test_reject_with_feedback_starts_a_new_attempt_with_the_reviewers_words(embedded: Fleet) -> None:
    fleet = embedded
    fleet.sample_repo()
    [ticket] = fleet.submit(
        "--repo",
        "calc",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        scripted("by-attempt", "fix-add", "fix-add+fix-div"),  # the attempt after the reject changes more
        "--attempts",
        "1",
    )
    fleet.up()
    fleet.run("review", "reject", str(ticket["id"]), "--feedback", "Please also add a docstring.")
    fleet.up()
    shown = fleet.json("show", str(ticket["id"]))
    attempts = _attempts(shown)
    assert len(attempts) == 2
    assert "Please also add a docstring." in attempts[1]["feedback_in"]
    assert shown["status"] == "needs_review"
