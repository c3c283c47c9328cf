"""Repository settings flow from `fleet repo add` (or `.fleet.toml`) into how diffs are verified."""

from __future__ import annotations

from pathlib import Path

from db.engine import Database
from db.migrate import upgrade
from db.specs import RepoSettings, RepoSpec
from orchestrator.repos import register_repo
from system.git import git
from tests.orchestrator.workers_stub import AGENTS, job_with
from verification.envcache import DEFAULT_KEY_FILES, EnvCache, key_files_changed
from workers.agents.scripted import write_sample_repo
from workers.pipeline import Job, spec_for


def _job(settings: dict[str, object]) -> Job:
    return job_with(RepoSettings.from_stored(settings))


def test_network_for_test_runs_is_off_unless_the_operator_allows_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    write_sample_repo(tmp_path / "offline")
    write_sample_repo(tmp_path / "online")
    (tmp_path / "online" / ".fleet.toml").write_text('test_cmd = "true"\nmax_concurrency = 3\n')
    git("add", "-A", cwd=tmp_path / "online")
    git("commit", "-qm", "settings", cwd=tmp_path / "online")
    offline = register_repo(db, RepoSpec(name="offline", path=str(tmp_path / "offline"), test_cmd="true"), AGENTS)
    online = register_repo(db, RepoSpec(name="online", path=str(tmp_path / "online"), test_network=True), AGENTS)
    assert online["settings"] == {"test_network": True, "max_concurrency": 3}
    assert spec_for(_job(offline["settings"]), 60, 4000, 60).network is False
    assert spec_for(_job(online["settings"]), 60, 4000, 60).network is True


def test_the_environment_cache_is_on_by_default_and_a_repo_can_turn_it_off_or_name_its_key_files(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    cache = EnvCache(tmp_path / "envs", max_bytes=2**30)
    for name in ("plain", "uncached", "go"):
        write_sample_repo(tmp_path / name)
    (tmp_path / "uncached" / ".fleet.toml").write_text('test_cmd = "true"\nenv_cache = false\n')
    (tmp_path / "go" / ".fleet.toml").write_text('test_cmd = "true"\nenv_key_files = ["go.sum", "tools/*.lock"]\n')
    for name in ("uncached", "go"):
        git("add", "-A", cwd=tmp_path / name)
        git("commit", "-qm", "settings", cwd=tmp_path / name)
    plain = register_repo(db, RepoSpec(name="plain", path=str(tmp_path / "plain"), test_cmd="true"), AGENTS)
    uncached = register_repo(db, RepoSpec(name="uncached", path=str(tmp_path / "uncached")), AGENTS)
    go = register_repo(db, RepoSpec(name="go", path=str(tmp_path / "go")), AGENTS)
    flag = register_repo(
        db, RepoSpec(name="flag", path=str(tmp_path / "plain"), test_cmd="true", env_cache=False), AGENTS
    )
    specs = {r["name"]: spec_for(_job(r["settings"]), 60, 4000, 60, cache) for r in (plain, uncached, go, flag)}
    assert specs["plain"].env_cache is cache and specs["plain"].env_key_files == DEFAULT_KEY_FILES
    assert specs["uncached"].env_cache is None and specs["flag"].env_cache is None
    assert specs["go"].env_key_files == ("go.sum", "tools/*.lock")
    assert key_files_changed(["tools/deps.lock", "main.go", "go.sum"], specs["go"].env_key_files) == [
        "tools/deps.lock",
        "go.sum",
    ]
