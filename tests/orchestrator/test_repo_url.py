"""A repository registered by URL: read through a mirror of the URL, never by a path the workers would share."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Fleet
from tests.core.conftest import scripted
from workers.agents.scripted import SAMPLE_TEST_CMD, write_sample_repo


def _url_repo(fleet: Fleet) -> str:
    origin = fleet.tmp / "origin"
    write_sample_repo(origin)
    (origin / ".fleet.toml").write_text('protect = ["setup.cfg"]\n')
    subprocess.run(["git", "-C", str(origin), "add", ".fleet.toml"], check=True)
    subprocess.run(["git", "-C", str(origin), "commit", "-qm", "settings"], check=True)
    return f"file://{origin}"


def test_a_repository_registered_by_url_runs_tickets_and_reads_its_fleet_toml(embedded: Fleet) -> None:
    url = _url_repo(embedded)
    added = embedded.json("repo", "add", "calc", url, "--test-cmd", SAMPLE_TEST_CMD)
    assert added["source"] == url
    assert "setup.cfg" in added["settings"]["protect"]  # .fleet.toml read from the URL's HEAD
    [ticket] = embedded.submit(
        "--repo",
        "calc",
        "--title",
        "fix add",
        "--body",
        "tests/test_calc.py::test_add",
        "--agent-cmd",
        scripted("fix-add"),
    )
    embedded.up(concurrency=1)
    [shown] = embedded.json("tickets")
    assert (shown["id"], shown["status"]) == (ticket["id"], "needs_review"), embedded.run(
        "show", str(ticket["id"])
    ).stdout


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ext::sh -c touch% /tmp/pwned", "does not exist"),
        ("ssh://-oProxyCommand=touch/x", "may not start with '-'"),
        ("ftp://example.org/repo.git", "not a repository URL"),
        ("http:///repo.git", "names no host"),
    ],
)
def test_a_url_fleet_would_not_fetch_is_refused_with_one_line(embedded: Fleet, url: str, says: str) -> None:
    proc = embedded.run("repo", "add", "bad", url, "--test-cmd", "true", check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("error:") and says in proc.stderr, proc.stderr
    assert not Path("/tmp/pwned").exists()


def test_a_base_ref_missing_from_the_url_is_one_line(embedded: Fleet) -> None:
    embedded.run("repo", "add", "calc", _url_repo(embedded), "--test-cmd", SAMPLE_TEST_CMD)
    proc = embedded.run("submit", "--repo", "calc", "--title", "t", "--base", "nope", check=False)
    assert proc.returncode != 0 and "base ref 'nope' does not exist in repo 'calc'" in proc.stderr, proc.stderr
