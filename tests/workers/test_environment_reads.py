"""The worker's environment is read once per change: git's environment and the secrets to redact follow every
change of a variable, and are not made again while nothing changed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from system.environ import derived, environment
from system.git import git
from workers.secrets import REDACTED, redact, secret_values

made: list[int] = []


def _count(env: Mapping[str, str]) -> int:
    made.append(1)
    return len(env)


def test_a_read_is_made_again_only_after_a_variable_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    made.clear()
    first = environment()
    assert environment() is first and derived(_count) == derived(_count) and len(made) == 1
    monkeypatch.setenv("FLEET_TEST_READ_ONCE", "1")
    assert environment() is not first and environment()["FLEET_TEST_READ_ONCE"] == "1"
    assert derived(_count) == len(first) + 1 and len(made) == 2
    monkeypatch.delenv("FLEET_TEST_READ_ONCE")
    assert "FLEET_TEST_READ_ONCE" not in environment() and derived(_count) == len(first)
    with pytest.raises(TypeError):
        environment()["FLEET_TEST_READ_ONCE"] = "2"  # type: ignore[index]  # read-only: no caller changes it


def test_a_secret_set_after_the_first_read_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    before = secret_values()
    monkeypatch.setenv("FLEET_TEST_API_KEY", "sk-set-later-0123456789")
    assert "sk-set-later-0123456789" in secret_values() and len(secret_values()) == len(before) + 1
    assert redact("the key is sk-set-later-0123456789", secret_values()) == f"the key is {REDACTED}"
    secret_values().clear()  # a caller's own copy
    assert "sk-set-later-0123456789" in secret_values()


def test_git_gets_a_variable_set_after_its_first_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    assert git("config", "--get", "user.name", cwd=tmp_path).strip() == "Fleet"
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'user.name'='Someone'")  # GIT_* never reach git
    monkeypatch.setenv("FLEET_GIT_TOKEN", "a-token-set-later")
    shown = git("config", "--get-all", "credential.helper", cwd=tmp_path)
    assert "FLEET_GIT_TOKEN" in shown  # the token's helper, read from the environment set after the first call
    assert git("config", "--get", "user.name", cwd=tmp_path).strip() == "Fleet"
