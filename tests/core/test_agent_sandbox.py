"""The agent sandbox end to end: real bwrap, real git, real cgroups, through `fleet up`."""

from __future__ import annotations

import shlex
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from db import queries
from system.git import git
from system.sandbox import bwrap_missing
from tests.core.conftest import Fleet, processes_with, scripted
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo
from workers.cgroups import cgroup_problem

pytestmark = pytest.mark.skipif(bwrap_missing() is not None, reason=bwrap_missing() or "")

ADD = "tests/test_calc.py::test_add"
LATER_SUBJECT = "LATER-COMMIT-SECRET"
OTHER_SUBJECT = "OTHER-TICKET-SECRET"
# Runs inside the sandbox: tries each escape and prints BLOCKED or ESCAPED, then makes the honest fix and commits it.
PROBE = """#!{python}
import socket, subprocess, sys
from pathlib import Path

mirror, source, later, port, *outside = sys.argv[1:]


def attempt(what, action):
    try:
        action()
    except Exception as exc:
        print(f"BLOCKED {what}: {type(exc).__name__}", flush=True)
    else:
        print(f"ESCAPED {what}", flush=True)


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


GIT_DIR = git("rev-parse", "--absolute-git-dir").strip()
MOUNTED = [line.split() for line in open("/proc/self/mountinfo")]
print("GIT DIR", GIT_DIR, next(fields[fields.index("-") + 1] for fields in MOUNTED if fields[4] == GIT_DIR), flush=True)
for path in outside:  # a write may land in the sandbox's private /tmp: the test looks for it on the host
    try:
        Path(path).write_text("escaped")
    except OSError:
        pass
attempt("write the mirror's config", lambda: open(f"{mirror}/config", "a").write("[core]\\n\\thooksPath = /tmp\\n"))
attempt("write a hook into the mirror", lambda: Path(f"{mirror}/hooks/post-checkout").write_text("#!/bin/sh\\n"))
attempt("replace the worktree's .git", lambda: Path(".git").write_text("gitdir: " + mirror))
PACK = next(Path(GIT_DIR, "objects", "pack").glob("*.pack"))
attempt("write the base's shared pack", lambda: open(PACK, "ab").write(b"x"))
attempt("read a later commit", lambda: git("cat-file", "-p", later))
attempt("fetch the other ticket's branch", lambda: git("fetch", source, "other-ticket"))
attempt("reach the host's loopback", lambda: socket.create_connection(("127.0.0.1", int(port)), timeout=2).close())
print("SEEN " + " | ".join(git("log", "--all", "--format=%s").splitlines()), flush=True)
print("OBJECTS", len(git("cat-file", "--batch-all-objects", "--batch-check").splitlines()), flush=True)
calc = Path("calc.py")
calc.write_text(calc.read_text().replace("return a - b", "return a + b"))
print("STATUS", git("status", "--porcelain").strip(), flush=True)
git("commit", "-qam", "fix add")
print("COMMITTED", git("log", "--format=%s", "-1"), flush=True)
"""


@pytest.fixture
def loopback_port() -> Iterator[int]:
    """A TCP server on the host's loopback that nothing in a sandbox without network should reach."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def repo_with_history(fleet: Fleet) -> tuple[Path, str, str]:
    """The sample repo, a later commit on main and another ticket's branch; returns (repo, base sha, later sha)."""
    repo = fleet.sample_repo()
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    git("checkout", "-qb", "other-ticket", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", OTHER_SUBJECT, cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", LATER_SUBJECT, cwd=repo)
    return repo, base, git("rev-parse", "HEAD", cwd=repo).strip()


def transcript(fleet: Fleet, ticket_id: int) -> str:
    attempt = fleet.json("show", str(ticket_id))["runs"][0]["attempts"][0]
    return fleet.run("logs", str(attempt["id"])).stdout


def test_escapes_are_blocked_the_honest_committed_fix_is_verified_and_a_hang_is_killed(
    embedded: Fleet, loopback_port: int
) -> None:
    fleet = embedded
    repo, base, later = repo_with_history(fleet)
    fleet.run("repo", "add", "calc-open", str(repo), "--test-cmd", "true", "--agent-network", "on")
    mirror = fleet.home / "mirrors" / "repo-1.git"
    nonce = uuid.uuid4().hex[:8]
    outside = [Path(f"/tmp/fleet-escape-{nonce}"), Path.home() / f"fleet-escape-{nonce}", fleet.home / "escape"]
    outside += [repo / "escape", fleet.tmp / f"escape-{nonce}"]
    probe = fleet.tmp / "probe.py"  # the agent's program is shown to it read-only; nothing else of fleet.tmp is
    probe.write_text(PROBE.replace("{python}", sys.executable))
    probe.chmod(0o755)
    argv = [str(probe), str(mirror), str(repo), later, str(loopback_port)]
    command = shlex.join([*argv, *map(str, outside)])
    common = ("--title", "add", "--body", ADD, "--base", base, "--attempts", "1", "--agent-cmd", command)
    [closed] = fleet.submit("--repo", "calc", *common)
    [opened] = fleet.submit("--repo", "calc-open", *common)
    marker = f"fleet-sandboxed-hang-{nonce}"
    hang = ("--title", "hang", "--attempts", "1", "--timeout", "2", "--agent-cmd", scripted("hang", marker))
    [hung] = fleet.submit("--repo", "calc", *hang)
    fleet.up()

    shown = fleet.json("show", str(closed["id"]))
    assert shown["status"] == "needs_review", shown
    text = transcript(fleet, closed["id"])
    assert "ESCAPED" not in text, text
    assert text.count("BLOCKED") == 7
    assert "GIT DIR /fleet-git tmpfs\n" in text  # the agent's git dir is the sandbox's own memory
    assert LATER_SUBJECT not in text and OTHER_SUBJECT not in text
    assert "SEEN calc with three bugs\n" in text  # history ends at the base commit
    assert "STATUS M calc.py" in text and "COMMITTED fix add" in text
    attempt = fleet.json("show", str(closed["id"]))["runs"][0]["attempts"][0]
    assert attempt["diff_stat"] == "1 file, +1 -1"  # the agent's commit became the diff
    assert not any(path.exists() for path in outside)
    assert "hooksPath" not in (mirror / "config").read_text()
    assert not (mirror / "hooks" / "post-checkout").exists()

    assert fleet.json("show", str(hung["id"]))["reason"] == "agent timed out after 2s"
    assert processes_with(marker) == []  # the sandbox's whole process tree ended with its time limit

    opened_text = transcript(fleet, opened["id"])  # network on: the model endpoints through the proxy, no more
    assert "BLOCKED reach the host's loopback" in opened_text
    assert "ESCAPED" not in opened_text, opened_text


def test_a_repo_can_turn_the_sandbox_off_and_the_warning_is_recorded(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.sample_repo()
    fleet.run("repo", "add", "open", str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--no-agent-sandbox")
    outside = fleet.tmp / "written-from-outside"
    agent = f'touch {shlex.quote(str(outside))} && ls -A "${{FLEET_PROMPT_FILE%/agent/*}}" && {scripted("fix-add")}'
    [ticket] = fleet.submit(
        "--repo", "open", "--title", "add", "--body", ADD, "--agent-cmd", f"sh -c {shlex.quote(agent)}"
    )
    fleet.up()
    assert fleet.json("show", str(ticket["id"]))["status"] == "needs_review"
    assert outside.exists()
    with fleet.db().session() as s:
        warnings = [e.message for e in queries.ticket_events(s, ticket["id"]) if e.kind == "warning"]
    assert warnings == [
        "attempt 1: the agent ran without a sandbox (turned off by the repository's agent_sandbox setting)"
    ]
    told = transcript(fleet, ticket["id"])
    assert "[fleet] the agent ran without a sandbox" in told
    assert ".unconfined" in told.split()  # its folder was marked before it ran: no later attempt gets the folder


def test_without_bwrap_on_the_path_the_sandbox_is_reported_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bwrap_missing() == "the agent ran without a sandbox (bubblewrap is not installed)"


@pytest.mark.skipif(cgroup_problem() is not None, reason=f"no cgroups: {cgroup_problem()}")
def test_a_fork_bomb_and_a_memory_hog_end_their_attempts_and_leave_nothing_behind(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env.update(FLEET_AGENT_MAX_PROCESSES="40", FLEET_AGENT_MEMORY_MB="200")
    fleet.sample_repo()
    marker = f"59.{uuid.uuid4().int % 100000}"
    bomb = f"for i in $(seq 200); do sleep {marker} & done; wait"
    hog = f"{shlex.quote(sys.executable)} -c 'x = bytearray(1 << 30)'"
    tickets = {}
    for name, command in (("bomb", bomb), ("hog", hog), ("honest", scripted("fix-add"))):
        agent = command if name == "honest" else f"sh -c {shlex.quote(command)}"
        [tickets[name]] = fleet.submit(
            "--repo", "calc", "--title", name, "--body", ADD, "--attempts", "1", "--agent-cmd", agent
        )
    fleet.up(concurrency=3)
    shown = {name: fleet.json("show", str(t["id"])) for name, t in tickets.items()}
    assert shown["bomb"]["status"] == "error" and "reached its limit of 40 processes" in shown["bomb"]["reason"]
    assert shown["hog"]["status"] == "error" and "ran out of memory (limit 200 MiB)" in shown["hog"]["reason"]
    assert shown["honest"]["status"] == "needs_review"
    assert processes_with(f"sleep {marker}") == []


def test_repo_agent_options_reach_the_agent_under_the_tickets_own(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.tmp / "configured"
    write_sample_repo(repo)
    toml = 'agent_model = "repo-model"\nagent_args = ["--from-repo"]\nagent_env = ["SANDBOX_TEST_VAR"]\n'
    (repo / ".fleet.toml").write_text(f"test_cmd = {SAMPLE_TEST_CMD!r}\n" + toml)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "settings", cwd=repo)
    fleet.run("repo", "add", "configured", str(repo))
    fleet.env["SANDBOX_TEST_VAR"] = "passed-through"
    names = '"$FLEET_MODEL" "$SANDBOX_TEST_VAR" "$*" "$HOME" "$TMPDIR"'
    report = f'printf "model=%s\\nvar=%s\\nargs=%s\\nhome=%s\\ntmp=%s\\n" {names}'
    command = f"sh -c {shlex.quote(report)} agent"
    [ticket] = fleet.submit("--repo", "configured", "--title", "t", "--agent-cmd", command, "--agent-arg", "--mine")
    fleet.up()
    lines = transcript(fleet, ticket["id"]).splitlines()
    fields = dict(
        line.split("=", 1) for line in lines if line.split("=", 1)[0] in ("model", "var", "args", "home", "tmp")
    )
    assert (fields["model"], fields["var"], fields["args"]) == ("repo-model", "passed-through", "--from-repo --mine")
    assert Path(fields["home"]).parent == Path(fields["tmp"]).parent.parent  # in the attempt's own folder
    assert Path(fields["tmp"]).is_relative_to(fleet.home.resolve() / "attempts")


@pytest.mark.parametrize(
    ("args", "toml", "message"),
    [
        (["--agent-network", "maybe"], "", "error: agent_network: must be one of '', 'none' or 'on' (got 'maybe')"),
        ([], 'agent_network = "wifi"\n', "agent_network: must be one of '', 'none' or 'on' (got 'wifi')"),
        ([], "agent_args = [1]\n", "agent_args.0: must be text (got 1)"),
        ([], "agent_sandbox = 'no'\n", "agent_sandbox: must be true or false (got 'no')"),
    ],
)
def test_bad_agent_settings_are_one_line_errors(embedded: Fleet, args: list[str], toml: str, message: str) -> None:
    fleet = embedded
    repo = fleet.tmp / "bad"
    write_sample_repo(repo)
    if toml:
        (repo / ".fleet.toml").write_text(toml)
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "settings", cwd=repo)
    proc = fleet.run("repo", "add", "bad", str(repo), "--test-cmd", "true", *args, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_an_agent_script_kept_in_the_hidden_repository_folder_still_runs(embedded: Fleet) -> None:
    fleet = embedded
    repo = fleet.sample_repo()
    script = repo / "fix.sh"  # untracked, in the registered repository, which the sandbox hides
    script.write_text(f"#!/bin/sh\necho seen: $(ls -A {shlex.quote(str(repo))})\n")
    script.write_text(script.read_text() + f"exec {scripted('fix-add')}\n")
    script.chmod(0o755)
    [ticket] = fleet.submit("--repo", "calc", "--title", "add", "--body", ADD, "--agent-cmd", str(script))
    fleet.up()
    assert fleet.json("show", str(ticket["id"]))["status"] == "needs_review"
    assert "seen: fix.sh\n" in transcript(fleet, ticket["id"])  # only the script itself, not .git or calc.py


def test_the_workers_home_is_absent_but_a_toolchain_on_its_path_is_shown_without_credentials(
    embedded: Fleet,
) -> None:
    fleet = embedded
    fleet.sample_repo()
    worker_home = fleet.tmp / "worker-home"
    (worker_home / ".ssh").mkdir(parents=True)
    (worker_home / ".ssh" / "id_ed25519").write_text("ssh-canary-4417\n")
    (worker_home / ".netrc").write_text("machine example.invalid password netrc-canary-4417\n")
    (worker_home / "notes.txt").write_text("plain-file-4417\n")
    tool = worker_home / ".cargo" / "bin" / "fleet-hello"  # a toolchain under the home, as rustup or pyenv install
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho hello-from-the-toolchain\n")
    tool.chmod(0o755)
    (worker_home / ".cargo" / "credentials.toml").write_text('token = "cargo-canary-4417"\n')
    fleet.env["HOME"] = str(worker_home)
    fleet.env["PATH"] = f"{tool.parent}:{fleet.env['PATH']}"
    files = [*(worker_home / name for name in (".ssh/id_ed25519", ".netrc", "notes.txt", ".cargo/credentials.toml"))]
    probe = "fleet-hello; " + "; ".join(f"cat {shlex.quote(str(f))} 2>&1" for f in files) + "; echo probed"
    agent = f"sh -c {shlex.quote(probe)}"
    [ticket] = fleet.submit("--repo", "calc", "--title", "probe", "--attempts", "1", "--agent-cmd", agent)
    fleet.up()
    text = transcript(fleet, ticket["id"])
    assert "probed" in text and "hello-from-the-toolchain" in text
    assert "4417" not in text, text
