"""The settings that widen the sandbox of the operator's workers, or send Fleet's credentials and the repository's
work elsewhere: a repository's own `.fleet.toml` may not ask for them (whoever commits to it wrote it, an agent's
merged diff among them); the operator grants each by its option."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from db.specs import REPEATABLE_SETTINGS
from orchestrator.errors import FleetError


def _any(value: Any) -> bool:
    return bool(value)


# Each setting, and the values of it that widen: what a sandbox shows of the host (read_paths, copy_files,
# hidden_tests: folders and files of the worker machines), where tests, setups and agents may connect, whether an
# agent has a sandbox at all, and the limits of an agent's processes, which replace the worker's own.
WIDENS: dict[str, Callable[[Any], bool]] = {
    "read_paths": _any,
    "copy_files": _any,
    "hidden_tests": _any,
    "test_network": lambda on: on is True,
    "setup_network": lambda network: network == "host",
    "setup_hosts": _any,
    "agent_sandbox": lambda on: on is False,
    "agent_network": lambda network: network == "on",
    "agent_hosts": _any,
    "agent_memory_mb": _any,
    "agent_max_processes": _any,
    "agent_address_space_mb": _any,
    # Where Fleet sends its credentials and the repository's work: a push to `remote` carries FLEET_GIT_TOKEN, the
    # forge's API FLEET_GITHUB_TOKEN; whose comments reach agents; where notices go; what a call costs the budget.
    "remote": _any,
    "forge_url": _any,
    "forge_repo": _any,
    "feedback_users": _any,
    "notify_url": _any,
    "model_prices": _any,
}


def widened(from_file: Mapping[str, Any]) -> list[str]:
    """The settings of from_file that widen the sandbox, in WIDENS's order."""
    return [setting for setting, widens in WIDENS.items() if setting in from_file and widens(from_file[setting])]


def refuse_widening(source: str, from_file: Mapping[str, Any]) -> None:
    """FleetError, one line, for the first setting of the repository's `.fleet.toml` that widens the sandbox: it
    names the value asked for and the option of `fleet repo add` that grants it."""
    for setting in widened(from_file):
        value = from_file[setting]
        raise FleetError(
            f".fleet.toml in {source} asks for {setting} = {_shown(value)}; an operator grants it with "
            f"`fleet repo add ... {grant_option(setting, value)}`"
        )


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:197] + "..."


def grant_option(setting: str, value: Any) -> str:
    """The command line that gives setting its value: `--setup-network host`, `--no-agent-sandbox`, `--read-path P`."""
    if setting in REPEATABLE_SETTINGS:
        option = "--" + setting.removesuffix("s").replace("_", "-")
        return " ".join(f"{option} {item}" for item in value[:3]) + (" ..." if len(value) > 3 else "")
    option = "--" + setting.replace("_", "-")
    if isinstance(value, bool):
        return option if value else "--no-" + option[2:]
    return f"{option} {value}"
