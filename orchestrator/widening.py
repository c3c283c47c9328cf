"""The settings that widen the sandbox of the operator's workers, or send Fleet's credentials and the repository's
work elsewhere: a repository's own `.fleet.toml` may not ask for them (whoever commits to it wrote it, an agent's
merged diff among them); the operator grants each by its option."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from db.specs import REPEATABLE_SETTINGS
from orchestrator.errors import FleetError
from system.sandbox import host_paths_named
from system.settings import Settings


def _any(value: Any) -> bool:
    return bool(value)


def _names_host_paths(command: Any) -> bool:
    return isinstance(command, str) and bool(host_paths_named(command))


# Each setting, and the values of it that widen: what a sandbox shows of the host (read_paths, copy_files,
# hidden_tests: folders and files of the worker machines; a test or setup command naming a folder or file beyond the
# system's and its toolchain's program, which its sandbox is then shown: system/sandbox.py toolchain_roots), where
# tests, setups and agents may connect, whether an agent has a sandbox at all.
WIDENS: dict[str, Callable[[Any], bool]] = {
    "read_paths": _any,
    "copy_files": _any,
    "hidden_tests": _any,
    "test_cmd": _names_host_paths,
    "setup_cmd": _names_host_paths,
    "test_network": lambda on: on is True,
    "setup_network": lambda network: network == "host",
    "setup_hosts": _any,
    "agent_sandbox": lambda on: on is False,
    "agent_network": lambda network: network == "on",
    "agent_hosts": _any,
    # Where Fleet sends its credentials and the repository's work: a push to `remote` carries FLEET_GIT_TOKEN, the
    # forge's API FLEET_GITHUB_TOKEN; whose comments, and whose issues (any author's, once labelled, as an issue
    # template labels them), reach agents; where notices go; what a call costs the budget.
    "remote": _any,
    "forge_url": _any,
    "forge_repo": _any,
    "feedback_users": _any,
    "import_label": _any,
    "notify_url": _any,
    "model_prices": _any,
}


# The limits of an agent's processes, which replace the worker's own (a setting's 0: the worker's; the worker's
# 0: none). Only a higher one than the limit in force widens: a lower one narrows, and is taken.
AGENT_LIMITS = ("agent_memory_mb", "agent_max_processes", "agent_address_space_mb")
Limits = Mapping[str, int]
DEFAULT_LIMITS: Limits = {name: Settings.model_fields[name].default for name in AGENT_LIMITS}


def limits_in_force(settings: Settings) -> Limits:
    """The agent's limits the operator's settings (FLEET_AGENT_MEMORY_MB and the like, or their defaults) set."""
    return {name: getattr(settings, name) for name in AGENT_LIMITS}


def widened(from_file: Mapping[str, Any], in_force: Limits = DEFAULT_LIMITS) -> list[str]:
    """The settings of from_file that widen the sandbox, in WIDENS's order, then the limits above those in force."""
    asked = [setting for setting, widens in WIDENS.items() if setting in from_file and widens(from_file[setting])]
    return asked + [name for name in AGENT_LIMITS if _above(from_file.get(name, 0), in_force[name])]


def _above(limit: int, in_force: int) -> bool:
    return bool(limit) and bool(in_force) and limit > in_force


def refuse_widening(source: str, from_file: Mapping[str, Any], in_force: Limits = DEFAULT_LIMITS) -> None:
    """FleetError, one line, for the first setting of the repository's `.fleet.toml` that widens the sandbox: it
    names the value asked for and the option of `fleet repo add` that grants it."""
    for setting in widened(from_file, in_force):
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
    return f"{option} {shlex.quote(value) if isinstance(value, str) else value}"
