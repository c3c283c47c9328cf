"""Without the sandbox an agent still gets a git dir of its own: git config it writes reaches no one else."""

from __future__ import annotations

import shlex

from system.git import git
from tests.core.conftest import Fleet
from workers.agents.scripted import scripted_command

ADD = "tests/test_calc.py::test_add"
DIV = "tests/test_calc.py::test_div"
# Writes commands into git config through its worktree: the fsmonitor hook runs on every `git status`, the hooks
# on every commit, of whoever reads that config.
PLANT = """git config core.fsmonitor "touch {marker}"
git config core.hooksPath {hooks}
echo "fsmonitor set: $(git config --get core.fsmonitor)"
exec {fix}
"""
# The next agent runs the git commands that would run them, commits its fix, and says what config it sees.
NEXT = """echo "fsmonitor seen: $(git config --get core.fsmonitor || echo none)"
echo "hooksPath seen: $(git config --get core.hooksPath || echo none)"
git status --porcelain
{fix}
git commit -qam "fix div"
echo "committed: $(git log -1 --format=%s)"
"""


def agent_script(fleet: Fleet, name: str, text: str) -> str:
    path = fleet.tmp / name
    path.write_text(text)
    return f"sh {shlex.quote(str(path))}"


def submit(fleet: Fleet, agent_cmd: str, target: str) -> int:
    [ticket] = fleet.submit("--repo", "calc", "--title", target, "--agent-cmd", agent_cmd, "--target", target)
    return int(ticket["id"])


def test_git_config_an_unsandboxed_agent_writes_never_runs_in_another_agents_git(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"
    source = fleet.sample_repo()
    markers = [fleet.tmp / "fsmonitor-ran", fleet.tmp / "hook-ran"]
    hooks = fleet.tmp / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-commit", "post-checkout", "post-index-change"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {shlex.quote(str(markers[1]))}\n")
        (hooks / hook).chmod(0o755)
    fix_add, fix_div = (shlex.join(scripted_command(script)) for script in ("fix-add", "fix-div"))
    plant = PLANT.format(marker=shlex.quote(str(markers[0])), hooks=shlex.quote(str(hooks)), fix=fix_add)
    first = submit(fleet, agent_script(fleet, "plant.sh", plant), ADD)
    fleet.up()
    second = submit(fleet, agent_script(fleet, "next.sh", NEXT.format(fix=fix_div)), DIV)
    fleet.up()

    assert [p for p in markers if p.exists()] == []
    views = {t: fleet.json("show", str(t)) for t in (first, second)}
    assert {t: v["status"] for t, v in views.items()} == {first: "needs_review", second: "needs_review"}
    [planted], [followed] = ([a["id"] for r in views[t]["runs"] for a in r["attempts"]] for t in (first, second))
    assert f"fsmonitor set: touch {markers[0]}" in fleet.run("logs", str(planted)).stdout  # it landed: in its own
    seen = fleet.run("logs", str(followed)).stdout
    assert "fsmonitor seen: none" in seen and "hooksPath seen: none" in seen and "committed: fix div" in seen
    assert "+    return a / b" in fleet.json("review", "show", str(second))["candidates"][0]["diff"]

    mirror = fleet.home / "mirrors" / "repo-1.git"
    pristine = fleet.tmp / "pristine.git"
    git("clone", "--bare", "--no-local", "--no-tags", "--quiet", "--", str(source), str(pristine), cwd=fleet.tmp)
    assert (mirror / "config").read_text() == (pristine / "config").read_text()
    assert git("rev-list", "--all", cwd=mirror) == git("rev-list", "--all", cwd=pristine), "an agent's commit got in"
    slots = [p for p in (fleet.home / "worktrees" / "repo-1" / "agent").glob("slot-*") if p.is_dir()]
    assert slots
    for slot in slots:
        assert (slot / ".git").read_text().startswith(f"gitdir: {mirror}/worktrees/"), (
            "the slot's .git was not restored"
        )
    assert not any((fleet.home / "attempts").iterdir()), "the attempts' git dirs were not deleted with them"
