"""A repository's `.fleet.toml` is written by whoever commits to it (an agent's merged diff among them): it may not
widen the sandbox of the operator's workers on its own, nor send Fleet's credentials and the work elsewhere. The
operator grants the same with `fleet repo add`'s options, and a `.fleet.toml` that narrows the sandbox is taken."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from db.engine import Database
from db.migrate import upgrade
from db.specs import RepoSettings, RepoSpec
from db.spectypes import limits_from_file
from orchestrator.errors import FleetError
from orchestrator.repos import register_repo
from orchestrator.widening import DEFAULT_LIMITS, Limits
from system.git import git
from tests.conftest import Fleet
from tests.orchestrator.workers_stub import AGENTS
from workers.agents import AgentOptions, load_agent
from workers.agents.scripted import write_sample_repo
from workers.pipeline.agent_plan import agent_limits

# Each setting that widens the sandbox, as a `.fleet.toml` line, the option that grants it, and the options' value.
WIDENING: list[tuple[str, str, dict[str, Any]]] = [
    ('read_paths = ["/etc"]', "--read-path /etc", {"read_paths": ["/etc"]}),
    (
        'copy_files = ["/etc/hostname:hostname"]',
        "--copy-file /etc/hostname:hostname",
        {"copy_file": "/etc/hostname:hostname"},
    ),
    ('hidden_tests = "/etc"', "--hidden-tests /etc", {"hidden_tests": "/etc"}),
    ("test_network = true", "--test-network", {"test_network": True}),
    ('setup_network = "host"', "--setup-network host", {"setup_network": "host"}),
    ('setup_hosts = ["pypi.org:443"]', "--setup-host pypi.org:443", {"setup_hosts": ["pypi.org:443"]}),
    ("agent_sandbox = false", "--no-agent-sandbox", {"agent_sandbox": False}),
    ('agent_network = "on"', "--agent-network on", {"agent_network": "on"}),
    ('agent_hosts = ["example.com:443"]', "--agent-host example.com:443", {"agent_hosts": ["example.com:443"]}),
    ("agent_memory_mb = 1048576", "--agent-memory-mb 1048576", {"agent_memory_mb": 1048576}),
    ("agent_max_processes = 4194304", "--agent-max-processes 4194304", {"agent_max_processes": 4194304}),
    ("agent_address_space_mb = 1048576", "--agent-address-space-mb 1048576", {"agent_address_space_mb": 1048576}),
    # Where Fleet's credentials go: a push to the remote carries FLEET_GIT_TOKEN, the forge's API FLEET_GITHUB_TOKEN.
    ('remote = "https://evil.example/x.git"', "--remote https://evil.example/x.git",
     {"remote": "https://evil.example/x.git"}),
    ('forge_url = "https://evil.example/api"', "--forge-url https://evil.example/api",
     {"forge_url": "https://evil.example/api"}),
    ('forge_repo = "eve/shop"', "--forge-repo eve/shop", {"forge_repo": "eve/shop"}),
    ('feedback_users = ["eve"]', "--feedback-user eve", {"feedback_users": ["eve"]}),
    # Whose words become tickets: every open issue with the label, which an issue template gives any author's.
    ('import_label = "bug"', "--import-label bug", {"import_label": "bug"}),
    ('notify_url = "https://evil.example/hook"', "--notify-url https://evil.example/hook",
     {"notify_url": "https://evil.example/hook"}),
    ('model_prices = ["gpt-5=0/0"]', "--model-price gpt-5=0/0", {"model_prices": ["gpt-5=0/0"]}),
]  # fmt: skip


def _register(tmp_path: Path, fleet_toml: str, **options: Any) -> dict[str, Any]:
    return _register_under(tmp_path, fleet_toml, DEFAULT_LIMITS, **options)


def _register_under(tmp_path: Path, fleet_toml: str, in_force: Limits, **options: Any) -> dict[str, Any]:
    repo = tmp_path / "repo"
    write_sample_repo(repo)
    test_cmd = "" if fleet_toml.startswith("test_cmd") else 'test_cmd = "true"\n'
    (repo / ".fleet.toml").write_text(f"{test_cmd}{fleet_toml}\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "settings", cwd=repo)
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    return register_repo(db, RepoSpec.model_validate({"name": "r", "path": str(repo), **options}), AGENTS, in_force)


@pytest.mark.parametrize(("line", "option", "given"), WIDENING, ids=[line.split(" ")[0] for line, _, _ in WIDENING])
def test_a_fleet_toml_cannot_widen_the_sandbox_and_the_operators_option_can(
    tmp_path: Path, line: str, option: str, given: dict[str, Any]
) -> None:
    with pytest.raises(FleetError) as refused:
        _register(tmp_path / "file", line)
    setting, value = line.split(" = ")
    assert str(refused.value) == (
        f".fleet.toml in {tmp_path / 'file' / 'repo'} asks for {setting} = {value}; "
        f"an operator grants it with `fleet repo add ... {option}`"
    )
    assert _register(tmp_path / "operator", line, **given)["settings"]  # the option wins over the file: granted


@pytest.mark.parametrize("setting", ["test_cmd", "setup_cmd"])
def test_a_fleet_toml_command_naming_a_folder_or_file_of_the_host_is_refused(tmp_path: Path, setting: str) -> None:
    """A test or setup command's sandbox is shown the folders and files it names by absolute path (`--find-links
    /srv/wheels`): a `.fleet.toml` command naming /run/postgresql showed the host's PostgreSQL socket to the code
    under test, one naming ~/.config/pip/pip.conf an index's token."""
    command = "python -m pytest --basetemp=/run/postgresql -c /root/.config/pip/pip.conf"
    with pytest.raises(FleetError) as refused:
        _register(tmp_path / "file", f'{setting} = "{command}"')
    assert str(refused.value) == (
        f'.fleet.toml in {tmp_path / "file" / "repo"} asks for {setting} = "{command}"; an operator grants it with '
        f"`fleet repo add ... --{setting.replace('_', '-')} '{command}'`"
    )
    granted = _register(tmp_path / "operator", f'{setting} = "{command}"', **{setting: command})
    assert granted[setting] == command
    toolchain = "/opt/venv/bin/python -m pytest -q > /dev/null"  # a toolchain's program, the sandbox's own device
    assert _register(tmp_path / "toolchain", f'{setting} = "{toolchain}"')[setting] == toolchain


def test_a_fleet_toml_that_narrows_the_sandbox_is_taken(tmp_path: Path) -> None:
    narrowing = 'setup_network = "none"\nagent_network = "none"\nagent_sandbox = true\ntest_network = false'
    assert _register(tmp_path, narrowing)["settings"] == {"setup_network": "none", "agent_network": "none"}


LOWER_LIMITS = "agent_memory_mb = 1024\nagent_max_processes = 64\nagent_address_space_mb = 2048"


def test_a_fleet_toml_that_lowers_the_agents_limits_is_taken(tmp_path: Path) -> None:
    """Lower than the limits in force (the defaults here) narrows the agent's sandbox: taken, not refused."""
    assert _register(tmp_path, LOWER_LIMITS)["settings"] == {
        "agent_memory_mb": 1024, "agent_max_processes": 64, "agent_address_space_mb": 2048,
        "limits_from_file": ["agent_memory_mb", "agent_max_processes", "agent_address_space_mb"],
    }  # fmt: skip


def test_a_limit_below_the_default_but_above_the_operators_is_refused(tmp_path: Path) -> None:
    """The limit in force is the operator's where it set one; a worker with no limit of its own (0) takes any."""
    in_force = {**DEFAULT_LIMITS, "agent_max_processes": 32}
    with pytest.raises(FleetError) as refused:
        _register_under(tmp_path / "lower", LOWER_LIMITS, in_force)
    assert str(refused.value) == (
        f".fleet.toml in {tmp_path / 'lower' / 'repo'} asks for agent_max_processes = 64; "
        "an operator grants it with `fleet repo add ... --agent-max-processes 64`"
    )
    unlimited = {**DEFAULT_LIMITS, "agent_address_space_mb": 0}
    taken = _register_under(tmp_path / "none", "agent_address_space_mb = 1048576", unlimited)
    assert taken["settings"] == {"agent_address_space_mb": 1048576, "limits_from_file": ["agent_address_space_mb"]}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, (512, 32, 1024), id="the file's: never above the worker's own"),
        pytest.param(
            {"agent_memory_mb": 1024, "agent_max_processes": 64, "agent_address_space_mb": 2048},
            (1024, 64, 2048),
            id="the operator's: as given",
        ),
    ],
)
def test_a_worker_takes_a_files_limit_only_below_its_own(
    tmp_path: Path, options: dict[str, int], expected: tuple[int, int, int]
) -> None:
    """The limits in force where the repository was registered (a web server's, an operator's laptop's) may be
    higher than a worker's own FLEET_AGENT_* settings: the file's limit must not raise the worker's."""
    stored = _register(tmp_path, LOWER_LIMITS, **options)["settings"]
    worker = SimpleNamespace(agent_memory_mb=512, agent_max_processes=32, agent_address_space_mb=1024)
    job = SimpleNamespace(repo_settings=RepoSettings.from_stored(stored), limits_from_file=limits_from_file(stored))
    limits = agent_limits(SimpleNamespace(settings=worker), job, load_agent("shell", AgentOptions()))  # type: ignore[arg-type]
    assert (limits.memory_mb, limits.processes, limits.address_space_mb) == expected


def test_fleet_repo_add_weighs_the_files_limits_against_the_operators(embedded: Fleet) -> None:
    embedded.env["FLEET_AGENT_MEMORY_MB"] = "512"
    for name, memory in (("higher", 1024), ("lower", 256)):
        repo = embedded.tmp / name
        write_sample_repo(repo)
        (repo / ".fleet.toml").write_text(f'test_cmd = "true"\nagent_memory_mb = {memory}\n')
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "settings", cwd=repo)
    refused = embedded.run("repo", "add", "higher", str(embedded.tmp / "higher"), check=False)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        f"error: .fleet.toml in {embedded.tmp / 'higher'} asks for agent_memory_mb = 1024; an operator grants it "
        "with `fleet repo add ... --agent-memory-mb 1024`"
    ]
    assert embedded.json("repo", "add", "lower", str(embedded.tmp / "lower"), "--json")["settings"] == {
        "agent_memory_mb": 256, "limits_from_file": ["agent_memory_mb"]
    }  # fmt: skip


def test_fleet_repo_add_says_in_one_line_what_the_file_asked_for(embedded: Fleet) -> None:
    repo = embedded.tmp / "asks"
    write_sample_repo(repo)
    (repo / ".fleet.toml").write_text('test_cmd = "true"\nsetup_network = "host"\n')
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "settings", cwd=repo)
    refused = embedded.run("repo", "add", "asks", str(repo), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f'error: .fleet.toml in {repo} asks for setup_network = "host"; an operator grants it with '
        "`fleet repo add ... --setup-network host`"
    ]
    embedded.run("repo", "add", "asks", str(repo), "--setup-network", "host")
