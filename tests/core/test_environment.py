"""Repositories that need an environment: setup commands, copied files, and a port range per slot."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from system.git import git
from tests.core.conftest import Fleet, scripted
from tests.core.setup_server import SetupServer, setup_server
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo

DEP_TEST = """import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / ".deps"))

import fleetdep  # noqa: E402  (only the setup command provides it)


def test_dependency_is_installed():
    assert fleetdep.ANSWER == 42
"""


def declared_wheelhouse(fleet: Fleet) -> tuple[str, ...]:
    """The setup reads the wheelhouse outside the checkout: the repository declares it to the sandbox."""
    return ("--read-path", str(fleet.tmp / "wheelhouse"))


def repo_needing_setup(fleet: Fleet) -> tuple[Path, str]:
    """The sample repo plus a test that imports a package only its setup command installs."""
    package = fleet.tmp / "wheelhouse" / "fleetdep"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("ANSWER = 42\n")
    repo = fleet.tmp / "needs-setup"
    write_sample_repo(repo)
    (repo / "tests" / "test_dep.py").write_text(DEP_TEST)
    (repo / ".gitignore").write_text(".deps/\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a test that needs a dependency", cwd=repo)
    install = f"import shutil; shutil.copytree({str(package)!r}, '.deps/fleetdep')"
    return repo, f"{shlex.quote(sys.executable)} -c {shlex.quote(install)}"


def test_setup_installs_what_the_tests_need_and_a_failing_setup_is_an_error(embedded: Fleet) -> None:
    fleet = embedded
    repo, setup = repo_needing_setup(fleet)
    fleet.run(
        "repo",
        "add",
        "dep",
        str(repo),
        "--test-cmd",
        SAMPLE_TEST_CMD,
        "--setup-cmd",
        setup,
        *declared_wheelhouse(fleet),
    )
    fleet.run(
        "repo",
        "add",
        "broken",
        str(repo),
        "--test-cmd",
        SAMPLE_TEST_CMD,
        "--setup-cmd",
        "echo resolving; echo 'no matching distribution for fleetdep' >&2; exit 3",
    )
    poison = "mkdir -p .deps/fleetdep && echo 'ANSWER = 42' > .deps/fleetdep/__init__.py"
    [good] = fleet.submit(
        "--repo", "dep", "--title", "add", "--body", "tests/test_calc.py::test_add", "--agent-cmd", scripted("fix-add")
    )
    [broken] = fleet.submit(
        "--repo",
        "broken",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        scripted("fix-add"),
    )
    [poisoner] = fleet.submit(
        "--repo",
        "dep",
        "--title",
        "mul",
        "--body",
        "tests/test_calc.py::test_mul",
        "--agent-cmd",
        f"sh -c {shlex.quote(poison)}",
        "--attempts",
        "1",
    )
    fleet.up()
    shown = fleet.json("show", str(good["id"]))
    assert shown["status"] == "needs_review"
    attempt = shown["runs"][0]["attempts"][0]
    assert attempt["verification"]["pass_to_pass"] == 2  # test_neg and the dependency test

    errored = fleet.json("show", str(broken["id"]))
    assert errored["status"] == "error"
    # The setup fails at the base first: no diff could be verified, so the agent is never started.
    assert errored["reason"].startswith("the tests could not run at the base commit: setup in the baseline checkout")
    assert "failed (exit 3)" in errored["reason"] and "no matching distribution" in errored["reason"]

    poisoned = fleet.json("show", str(poisoner["id"]))  # its own environment was its worktree's, not ours
    assert poisoned["status"] == "failed"


MANIFEST_SETUP = """import pathlib, sys, urllib.request
answer = pathlib.Path('requirements.txt').read_text().split('==')[1].strip()
pathlib.Path('.deps/fleetdep').mkdir(parents=True)
pathlib.Path('.deps/fleetdep/__init__.py').write_text(f'ANSWER = {answer}\\n')
urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/setup', timeout=30).read()
"""


@pytest.fixture
def runs() -> Iterator[SetupServer]:
    """Counts the setups that ran: each asks this server once, through the egress proxy (a sandboxed setup writes
    nothing outside its checkout, and reaches only the hosts its repository lists)."""
    with setup_server() as server:
        yield server


def repo_with_manifest(fleet: Fleet, answer: int, runs: SetupServer) -> tuple[Path, str, tuple[str, ...]]:
    """A repo whose setup installs fleetdep with the ANSWER its requirements.txt pins and reports to runs; the
    setup command, and the options of `repo add` that give the repo its tests and that setup."""
    repo = fleet.tmp / "manifest"
    write_sample_repo(repo)
    (repo / "tests" / "test_dep.py").write_text(DEP_TEST)
    (repo / "requirements.txt").write_text(f"fleetdep=={answer}\n")
    (repo / "setup_env.py").write_text(MANIFEST_SETUP)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a pinned dependency", cwd=repo)
    setup = f"{shlex.quote(sys.executable)} setup_env.py {runs.port}"
    return repo, setup, ("--test-cmd", SAMPLE_TEST_CMD, "--setup-cmd", setup, "--setup-host", runs.address)


def test_later_attempts_reuse_the_environment_until_a_diff_changes_its_manifest(
    embedded: Fleet, runs: SetupServer
) -> None:
    fleet = embedded
    repo, setup, options = repo_with_manifest(fleet, 41, runs)  # test_dep fails until the pin says 42
    fleet.run("repo", "add", "dep", str(repo), *options)
    tickets = [
        fleet.submit("--repo", "dep", "--title", "add", "--body", target, "--agent-cmd", scripted(script))[0]
        for target, script in [("tests/test_calc.py::test_add", "fix-add"), ("tests/test_calc.py::test_div", "fix-div")]
    ]
    fleet.up(concurrency=1)
    assert [fleet.json("show", str(t["id"]))["status"] for t in tickets] == ["needs_review", "needs_review"]
    assert runs.count() == 2  # once for agents, once for verification; then restored
    [review] = fleet.json("review", "show", str(tickets[1]["id"]))["candidates"]
    assert "environment restored from the cache" in review["transcript"]
    assert ".deps" not in review["diff"]
    cached = fleet.json("cache", "list")
    assert sorted(e["scope"] for e in cached) == ["agent", "verify"]
    assert all(e["setup_cmd"] == setup and e["paths"] == [".deps"] for e in cached)

    bump = "sed -i 's/==41/==42/' requirements.txt"
    [bumped] = fleet.submit(
        "--repo",
        "dep",
        "--title",
        "pin fleetdep 42",
        "--body",
        "tests/test_dep.py::test_dependency_is_installed",
        "--agent-cmd",
        f"sh -c {shlex.quote(bump)}",
    )
    fleet.up(concurrency=1)
    verification = fleet.json("show", str(bumped["id"]))["runs"][0]["attempts"][0]["verification"]
    assert verification["verdict"] == "passed", verification  # so it ran with fleetdep 42, freshly built
    assert runs.count() == 3
    assert fleet.run("cache", "clear").stdout.startswith("deleted 2 cached environments")
    assert fleet.json("cache", "list") == []


def test_an_agent_that_writes_into_its_environment_cannot_change_what_verification_sees(
    embedded: Fleet, runs: SetupServer
) -> None:
    fleet = embedded
    repo, _setup, options = repo_with_manifest(fleet, 41, runs)  # test_dep fails at the base
    fleet.run("repo", "add", "dep", str(repo), *options)
    poison = "echo 'ANSWER = 42' > .deps/fleetdep/__init__.py && echo '# tidy' >> calc.py"
    [poisoner] = fleet.submit(
        "--repo",
        "dep",
        "--title",
        "make the dependency test pass",
        "--body",
        "tests/test_dep.py::test_dependency_is_installed",
        "--attempts",
        "1",
        "--agent-cmd",
        f"sh -c {shlex.quote(poison)}",
    )
    fleet.up(concurrency=1)
    attempt = fleet.json("show", str(poisoner["id"]))["runs"][0]["attempts"][0]
    assert attempt["diff_stat"] == "1 file, +1 -0"  # calc.py only: the environment is never part of a diff
    assert attempt["verification"]["verdict"] == "failed"
    assert "test_dependency_is_installed" in attempt["feedback_out"]


def test_two_attempts_at_once_get_disjoint_port_ranges(embedded: Fleet) -> None:
    fleet = embedded
    fleet.env["FLEET_AGENT_SANDBOX"] = "false"  # the test watches the agent through a file outside its worktree
    fleet.sample_repo()
    record = fleet.tmp / "ports"
    record.mkdir()
    agent = f"echo $FLEET_PORT_BASE $FLEET_PORT_COUNT > {record}/$FLEET_TICKET_ID; sleep 1; " + scripted("fix-add")
    for n in range(3):
        fleet.submit(
            "--repo",
            "calc",
            "--title",
            f"add {n}",
            "--body",
            "tests/test_calc.py::test_add",
            "--agent-cmd",
            f"sh -c {shlex.quote(agent)}",
        )
    fleet.up(concurrency=3)
    blocks = [tuple(map(int, f.read_text().split())) for f in sorted(record.iterdir())]
    assert len(blocks) == 3
    ranges = [set(range(base, base + count)) for base, count in blocks]
    assert all(count > 0 for _, count in blocks)
    assert not (ranges[0] & ranges[1] or ranges[0] & ranges[2] or ranges[1] & ranges[2])


def test_a_copied_env_file_never_reaches_the_diff_or_the_transcript(embedded: Fleet) -> None:
    fleet = embedded
    secret = "s3cr3t-token-value-9731"
    env_file = fleet.tmp / "shop.env"
    env_file.write_text(f"API_TOKEN={secret}\n")
    repo = fleet.tmp / "shop"
    write_sample_repo(repo)
    fleet.run("repo", "add", "shop", str(repo), "--test-cmd", SAMPLE_TEST_CMD, "--copy-file", f"{env_file}:.env")
    agent = "cat .env; echo EXTRA=1 >> .env; " + scripted("fix-add")
    [ticket] = fleet.submit(
        "--repo",
        "shop",
        "--title",
        "add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        f"sh -c {shlex.quote(agent)}",
    )
    fleet.up()
    [review] = fleet.json("review", "show", str(ticket["id"]))["candidates"]
    assert ".env" not in review["diff"] and secret not in review["diff"]
    assert secret not in review["transcript"] and "[redacted]" in review["transcript"]
    assert secret not in fleet.run("logs", str(review["id"])).stdout
    assert secret not in fleet.run("show", str(ticket["id"]), "--json").stdout


NODE_TEST_CMD = (
    'node --test --test-reporter=junit --test-reporter-destination="$FLEET_JUNIT_XML" '
    "--test-reporter=spec --test-reporter-destination=stdout"
)


def test_a_node_repository_is_verified_test_by_test(embedded: Fleet) -> None:
    import shutil

    import pytest

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    fleet = embedded
    repo = fleet.tmp / "jscalc"
    (repo / "test").mkdir(parents=True)
    (repo / "calc.js").write_text("exports.add = (a, b) => a - b;\nexports.neg = (a) => -a;\n")
    (repo / "test" / "calc.test.js").write_text(
        "const test = require('node:test');\nconst assert = require('node:assert');\n"
        "const { add, neg } = require('../calc.js');\n"
        "test('add', () => { assert.strictEqual(add(2, 3), 5); });\n"
        "test('neg', () => { assert.strictEqual(neg(2), -2); });\n"
    )
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "calc", cwd=repo)
    fleet.run("repo", "add", "js", str(repo), "--test-cmd", NODE_TEST_CMD)
    fix = "sed -i 's/a - b/a + b/' calc.js"
    [ticket] = fleet.submit("--repo", "js", "--title", "add subtracts", "--agent-cmd", f"sh -c {shlex.quote(fix)}")
    [wrong] = fleet.submit(
        "--repo",
        "js",
        "--title",
        "add subtracts",
        "--attempts",
        "1",
        "--agent-cmd",
        "sh -c \"sed -i 's/-a;/a;/' calc.js\"",
    )
    fleet.up()
    verification = fleet.json("show", str(ticket["id"]))["runs"][0]["attempts"][0]["verification"]
    assert (verification["verdict"], verification["fail_to_pass"], verification["pass_to_pass"]) == (
        "passed",
        ["test::add"],
        1,
    )
    broken = fleet.json("show", str(wrong["id"]))["runs"][0]["attempts"][0]["verification"]
    assert broken["verdict"] == "failed" and broken["broken"] == ["test::neg"]
