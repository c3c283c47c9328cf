"""Repository settings flow from `fleet repo add` (or `.fleet.toml`) into how diffs are verified."""

from __future__ import annotations

from pathlib import Path

from db.engine import Database
from db.migrate import upgrade
from orchestrator.repos import RepoSpec, register_repo
from workers.agents.scripted import write_sample_repo
from workers.git import git
from workers.pipeline import Job, spec_for


def _job(settings: dict[str, object]) -> Job:
    return Job(
        attempt_id=1,
        number=1,
        run_index=0,
        ticket_id=1,
        repo_id=1,
        source="/nowhere",
        base_sha="0" * 40,
        agent="shell",
        agent_options={},
        prompt="",
        diff="",
        test_cmd="true",
        setup_cmd=None,
        repo_settings=dict(settings),
    )


def test_network_for_test_runs_is_off_unless_the_repo_allows_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    write_sample_repo(tmp_path / "offline")
    write_sample_repo(tmp_path / "online")
    (tmp_path / "online" / ".fleet.toml").write_text('test_cmd = "true"\ntest_network = true\nmax_concurrency = 3\n')
    git("add", "-A", cwd=tmp_path / "online")
    git("commit", "-qm", "settings", cwd=tmp_path / "online")
    offline = register_repo(db, RepoSpec(name="offline", path=str(tmp_path / "offline"), test_cmd="true"))
    online = register_repo(db, RepoSpec(name="online", path=str(tmp_path / "online")))
    assert online["settings"] == {"test_network": True, "max_concurrency": 3}
    assert spec_for(_job(offline["settings"]), 60, 4000, 60).network is False
    assert spec_for(_job(online["settings"]), 60, 4000, 60).network is True
