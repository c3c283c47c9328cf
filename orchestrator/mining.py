"""`fleet tasks mine`: tasks from a repository's own history, and (SWE-smith style) from injected bugs.

A history task is a commit that changes source and tests together, where the commit's tests fail at its parent
and pass at the commit: the message is the problem statement, the test changes the test_patch, the source
changes the gold patch, FAIL_TO_PASS and PASS_TO_PASS come from the two runs. A mutation task is a commit Fleet
makes on top of the range's last commit (kept under refs/fleet/tasks/ in the repository, never on a branch)
that breaks tests; its gold patch undoes the mutation. Every task is kept only once its gold patch passes
Fleet's own verification. The work happens in a private clone: the repository's worktree is never touched.

Git runs as subprocesses here (system.git), as in the workers: mining checks out and runs many commits.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from db.lifecycle import Verdict
from db.taskspec import TaskSpec
from orchestrator.errors import FleetError
from orchestrator.mutations import Mutation, candidates
from system.files import write_over
from system.git import GIT_OUTPUT_LIMIT, GitOutputTooLarge, git
from verification.runner import TestRun
from verification.verify import VerifySpec, run_baseline, verify_diff

TASK_REFS = "refs/fleet/tasks"
MAX_FAIL_TO_PASS = 50
SINCE = re.compile(r"^(\d{1,5})([hdw])$")
UNITS = {"h": "hours", "d": "days", "w": "weeks"}
BOT = ("-c", "user.name=fleet", "-c", "user.email=fleet@localhost")


@dataclass
class MineOptions:
    """What to mine and how to run the repository's tests."""

    source: Path
    repo: str
    test_cmd: str
    since: str = "90d"
    seed: int = 0
    mutations: int = 0
    timeout: float = 600.0
    setup_cmd: str | None = None
    sandbox: bool | None = None


@dataclass
class MineResult:
    tasks: list[TaskSpec] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per candidate dropped, and why


def git_since(text: str) -> str:
    """`90d`, `12h`, `2w` in git's words; a date passes through (git parses it)."""
    match = SINCE.match(text.strip())
    return f"{match.group(1)} {UNITS[match.group(2)]} ago" if match else text.strip()


def is_test_path(path: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return bool({"tests", "test", "testing"} & set(parts[:-1])) or name.startswith("test_") or name == "conftest.py"


def regular_files(repo: Path, sha: str) -> list[str]:
    """The paths of sha's tree that are files (no link, which a checkout's reads and writes would go through, to
    anywhere on the host; no submodule)."""
    listing = git("ls-tree", "-r", "-z", sha, cwd=repo).split("\0")
    return [entry.split("\t", 1)[1] for entry in listing if entry.startswith(("100644 ", "100755 "))]


def is_source_path(path: str) -> bool:
    return path.endswith(".py") and not is_test_path(path)


class Workspace:
    """A private clone with one checkout, moved from commit to commit and cleaned between runs."""

    def __init__(self, source: Path, root: Path) -> None:
        self.path = root / "checkout"
        self.reports = root / "reports"
        self.runs = 0
        git("clone", "--quiet", "--no-checkout", str(source), str(self.path), cwd=root)

    def at(self, sha: str) -> Path:
        git("checkout", "--quiet", "--force", "--detach", sha, cwd=self.path)
        git("clean", "-ffdxq", cwd=self.path)
        return self.path

    def report_dir(self) -> Path:
        self.runs += 1
        path = self.reports / str(self.runs)
        path.mkdir(parents=True)
        return path


def _spec(options: MineOptions, hidden: Path | None = None, targets: tuple[str, ...] = ()) -> VerifySpec:
    return VerifySpec(
        test_cmd=options.test_cmd,
        timeout=options.timeout,
        setup_cmd=options.setup_cmd,
        setup_network="host",  # the repository's own history, mined by its owner: its setup as it always ran
        hidden_tests=hidden,
        targets=targets,
        sandbox=options.sandbox,
    )


def _run(ws: Workspace, sha: str, spec: VerifySpec) -> TestRun:
    return run_baseline(ws.at(sha), spec, ws.report_dir())


def split_tests(before: TestRun, after: TestRun) -> tuple[list[str], list[str]]:
    """(FAIL_TO_PASS, PASS_TO_PASS): failing (or missing) before and passing after; passing at both."""
    passing = [t for t, r in after.results.items() if r.ok]
    before_ok = {t for t, r in before.results.items() if r.ok}
    return sorted(t for t in passing if t not in before_ok), sorted(t for t in passing if t in before_ok)


def validate(ws: Workspace, options: MineOptions, task: TaskSpec, baseline: TestRun, hidden: Path | None) -> str:
    """'' when the gold patch passes Fleet's verification at the task's base, else why not."""
    spec = _spec(options, hidden, tuple(task.FAIL_TO_PASS))
    result = verify_diff(ws.at(task.base_commit), task.patch, spec, baseline, ws.report_dir())
    return "" if result.verdict is Verdict.PASSED else f"{result.verdict.value}: {'; '.join(result.reasons[:2])}"


def history(source: Path, since: str, limit_bytes: int = GIT_OUTPUT_LIMIT) -> list[tuple[str, str, str]]:
    """(commit, parent, message) of the non-merge commits in range, oldest first; FleetError when their log is
    more than limit_bytes."""
    log = ("log", "--reverse", "--no-merges", f"--since={git_since(since)}", "--format=%H %P%x00%B%x1e")
    try:
        out = git(*log, cwd=source, limit_bytes=limit_bytes)
    except GitOutputTooLarge:
        too_long = f"the history since {since} is over {limit_bytes:,} bytes of commits: mine a shorter --since"
        raise FleetError(too_long) from None
    commits = []
    for record in out.split("\x1e"):
        head, _, message = record.strip("\n").partition("\x00")
        shas = head.split()
        if len(shas) == 2:
            commits.append((shas[0], shas[1], message.strip()))
    return commits


def history_tasks(ws: Workspace, options: MineOptions, result: MineResult) -> None:
    for sha, parent, message in history(options.source, options.since):
        changed = [p for p in git("diff", "--name-only", "-z", parent, sha, cwd=ws.path).split("\0") if p]
        tests, sources = [p for p in changed if is_test_path(p)], [p for p in changed if is_source_path(p)]
        if not tests or not sources:
            continue
        test_patch = git("diff", "--binary", parent, sha, "--", *tests, cwd=ws.path)
        gold = git("diff", "--binary", parent, sha, "--", *[p for p in changed if p not in tests], cwd=ws.path)
        hidden = ws.reports / f"{sha}.diff"
        hidden.parent.mkdir(parents=True, exist_ok=True)
        hidden.write_text(test_patch, encoding="utf-8")
        before = _run(ws, parent, _spec(options, hidden))
        after = _run(ws, sha, _spec(options))
        fail_to_pass, pass_to_pass = split_tests(before, after)
        if before.error or after.error or not fail_to_pass:
            result.skipped.append(
                f"{sha[:12]}: {before.error or after.error or 'no test fails before and passes after'}"
            )
            continue
        task = TaskSpec(
            instance_id=f"{options.repo}__{sha[:12]}",
            repo=options.repo,
            base_commit=parent,
            problem_statement=message or f"Make {', '.join(fail_to_pass[:3])} pass.",
            FAIL_TO_PASS=fail_to_pass,
            PASS_TO_PASS=pass_to_pass,
            test_patch=test_patch,
            patch=gold,
            source="history",
        )
        _keep(ws, options, task, before, hidden, result)


def _keep(
    ws: Workspace, options: MineOptions, task: TaskSpec, base: TestRun, hidden: Path | None, into: MineResult
) -> None:
    why = validate(ws, options, task, base, hidden)
    if why:
        into.skipped.append(f"{task.instance_id}: the gold patch does not verify ({why})")
    else:
        into.tasks.append(task)


def mutation_tasks(ws: Workspace, options: MineOptions, result: MineResult) -> None:
    """Up to options.mutations tasks from injected bugs, trying at most ten candidates per task wanted."""
    head = git("rev-parse", "HEAD", cwd=options.source).strip()
    files = [path for path in regular_files(ws.path, head) if is_source_path(path)]
    clean = _run(ws, head, _spec(options))
    if clean.error:
        result.skipped.append(f"mutations: the tests do not run at {head[:12]}: {clean.error}")
        return
    kept = 0
    for mutation in candidates(ws.at(head), files, options.seed)[: options.mutations * 10]:
        if kept >= options.mutations:
            return
        base = _commit_mutation(ws, options, head, mutation)
        broken = _run(ws, base, _spec(options))
        fail_to_pass, pass_to_pass = split_tests(broken, clean)
        if broken.error or not fail_to_pass or len(fail_to_pass) > MAX_FAIL_TO_PASS:
            continue  # no test notices it, or it breaks the import of half the suite: not a task worth solving
        task = _mutation_task(ws, options, mutation, base, head, fail_to_pass, pass_to_pass)
        before = len(result.tasks)
        _keep(ws, options, task, broken, None, result)
        if len(result.tasks) > before:
            kept += 1
            git("fetch", "--quiet", str(ws.path), f"{base}:{TASK_REFS}/{task.instance_id}", cwd=options.source)


def _commit_mutation(ws: Workspace, options: MineOptions, head: str, mutation: Mutation) -> str:
    """The mutated tree committed on head, dated as head (the same seed gives the same commit)."""
    checkout = ws.at(head)
    target = checkout / mutation.path
    write_over(target, mutation.apply(target.read_bytes()))  # a regular file: mutation_tasks lists no link
    date = git("log", "-1", "--format=%cI", head, cwd=checkout).strip()
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    git(*BOT, "commit", "--quiet", "--no-verify", "-am", f"inject a bug: {mutation.description}", cwd=checkout, env=env)
    sha = git("rev-parse", "HEAD", cwd=checkout).strip()
    git("update-ref", f"{TASK_REFS}/pending-{sha[:12]}", sha, cwd=checkout)  # keeps it from gc in the clone
    return sha


def _mutation_task(
    ws: Workspace, options: MineOptions, m: Mutation, base: str, head: str, f2p: list[str], p2p: list[str]
) -> TaskSpec:
    shown = ", ".join(f2p[:3]) + (f" and {len(f2p) - 3} more" if len(f2p) > 3 else "")
    return TaskSpec(
        instance_id=f"{options.repo}__mut-{base[:12]}",
        repo=options.repo,
        base_commit=base,
        problem_statement=f"{m.function}() in {m.path} misbehaves since a recent change: {shown} fail.",
        FAIL_TO_PASS=f2p,
        PASS_TO_PASS=p2p,
        patch=git("diff", "--binary", base, head, cwd=ws.path),
        source="mutation",
    )


def mine(options: MineOptions, progress: Callable[[str], None] = lambda _: None) -> MineResult:
    """History tasks, then mutation tasks, each validated by its gold patch."""
    result = MineResult()
    with tempfile.TemporaryDirectory(prefix="fleet-mine-") as tmp:
        ws = Workspace(options.source, Path(tmp))
        history_tasks(ws, options, result)
        progress(f"{len(result.tasks)} tasks from the history")
        if options.mutations:
            mutation_tasks(ws, options, result)
            progress(f"{len(result.tasks)} tasks with the injected bugs")
    return result
