"""A sandboxed agent's git dir: in the sandbox's own memory, from the base alone, gone with the sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from system.git import git
from system.process import run_process
from system.sandbox import bwrap_missing, toolchain_roots
from workers.agent_git import AGENT_GITDIR, SANDBOX_GITDIR, base_pack, pack_files
from workers.agent_sandbox import AgentSandbox, SandboxPlan, build_sandbox
from workers.worktree import Worktree, WorktreePool

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")
AGENT = """git rev-parse --absolute-git-dir; git status --porcelain; git log --format=%s
sed -i 's/return a - b/return a + b/' calc.py; git commit -qam 'agent commit {n}'; git log --format=%s -1"""


def sandboxed(tmp_path: Path, wt: Worktree, n: int, git_in_memory: bool) -> tuple[Path, AgentSandbox]:
    attempt = tmp_path / "attempts" / str(n)
    attempt.mkdir(parents=True)
    readable = toolchain_roots(os.environ.get("PATH", os.defpath), ["git"])
    plan = SandboxPlan(wt.path, wt.gitdir, wt.mirror, wt.base_sha, attempt, attempt / "home", (tmp_path,), readable,
                       git_in_memory=git_in_memory)  # fmt: skip
    return attempt, build_sandbox(plan)


def run(wt: Worktree, sandbox: AgentSandbox, script: str) -> str:
    env = {"PATH": os.environ.get("PATH", os.defpath), **sandbox.env}
    result = run_process([*sandbox.wrapper, "sh", "-c", script], cwd=wt.path, env=env, timeout=60)
    assert result.exit_code == 0, result.output
    return result.output


def test_each_attempt_gets_a_fresh_git_dir_in_memory_and_the_host_keeps_nothing_of_it(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    subject = git("log", "--format=%s", "-1", base_sha, cwd=mirror).strip()
    pack = [path.read_bytes() for path in pack_files(base_pack(mirror, base_sha))]
    with pool.lease(base_sha) as wt:
        pointer = (wt.path / ".git").read_bytes()
        for n in (1, 2):
            attempt, sandbox = sandboxed(tmp_path, wt, n, git_in_memory=True)
            output = run(wt, sandbox, AGENT.format(n=n))
            # the base alone, a clean status, and the agent's commit: never the other attempt's
            assert output.splitlines() == [str(SANDBOX_GITDIR), subject, f"agent commit {n}"]
            on_host = sorted(str(p.relative_to(attempt)) for p in attempt.rglob("*"))
            assert on_host == ["agent", "agent/tmp", "home", "home/.cache"]  # no git dir, no pointer file
            assert "+    return a + b" in wt.diff()  # the commit's files are the diff, taken from the host's side
            git("checkout", "--", "calc.py", cwd=wt.path)
        assert (wt.path / ".git").read_bytes() == pointer
    assert [path.read_bytes() for path in pack_files(base_pack(mirror, base_sha))] == pack
    assert git("rev-list", "--all", cwd=mirror).split() == [base_sha], "the agent's commits stayed in its sandbox"


def test_an_agent_that_starts_a_sandbox_per_command_keeps_its_git_dir_between_them(
    tmp_path: Path, pool: WorktreePool, mirror: Path, base_sha: str
) -> None:
    """The llm agent runs each of its commands in a sandbox of its own: a stash or a commit must outlive it."""
    with pool.lease(base_sha) as wt:
        attempt, sandbox = sandboxed(tmp_path, wt, 1, git_in_memory=False)
        run(
            wt,
            sandbox,
            "sed -i 's/return a - b/return a + b/' calc.py; git stash -q; git commit -q --allow-empty -m one",
        )
        assert "+    return a + b" not in wt.diff()
        assert run(wt, sandbox, "git stash pop -q; git log --format=%s -1") == "one\n"
        assert "+    return a + b" in wt.diff()
        assert (attempt / AGENT_GITDIR / "HEAD").is_file()  # in the attempt folder, deleted with it
    assert git("rev-list", "--all", cwd=mirror).split() == [base_sha]
