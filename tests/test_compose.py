"""docker-compose.yml, read by docker-compose itself: no credential in the file, each from the environment or a
secret file; a healthcheck per service; Flower behind basic auth; a first start that gets its admin token."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ONE_SHOT = {"migrate", "bootstrap"}


def _compose(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is required under CI to validate docker-compose.yml")
        pytest.skip("docker-compose is not installed")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "REDIS_", "FLOWER_", "FLEET_"))}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "--project-directory", str(tmp_path), "config"],
        capture_output=True,
        text=True,
        env=clean | env,
        cwd=tmp_path,  # no .env file of the developer's is read
    )


@pytest.fixture
def operator_env(tmp_path: Path) -> dict[str, str]:
    for name in ("admin_token", "web.pem", "web.key"):
        (tmp_path / name).write_text("x\n")
    return {
        "POSTGRES_PASSWORD": "pgsecret0123",
        "REDIS_PASSWORD": "redissecret0123",
        "FLOWER_BASIC_AUTH": "ops:flowersecret0123",
        "FLEET_ADMIN_TOKEN_FILE": str(tmp_path / "admin_token"),
        "FLEET_TLS_CERT": str(tmp_path / "web.pem"),
        "FLEET_TLS_KEY": str(tmp_path / "web.key"),
        "FLEET_WEB_HOSTS": "fleet.example.com",
    }


def test_the_file_holds_no_credential_and_refuses_to_start_without_one(
    tmp_path: Path, operator_env: dict[str, str]
) -> None:
    text = COMPOSE.read_text()
    credentials = re.findall(r"^\s+[A-Z_]*(?:PASSWORD|AUTH)[A-Z_]*:\s*(.*)$", text, re.MULTILINE)
    assert len(credentials) == 4 and all(value.startswith("${") for value in credentials), credentials
    assert "fleet:fleet@" not in text and "requirepass fleet" not in text
    for missing in operator_env:
        proc = _compose(tmp_path, {k: v for k, v in operator_env.items() if k != missing})
        assert proc.returncode != 0 and missing in proc.stderr, (missing, proc.stderr)


def test_every_service_has_a_healthcheck_and_the_web_waits_for_its_first_token(
    tmp_path: Path, operator_env: dict[str, str]
) -> None:
    proc = _compose(tmp_path, operator_env)
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = yaml.safe_load(proc.stdout)
    services = config["services"]
    assert set(services) == {"redis", "postgres", "migrate", "bootstrap", "worker", "web", "flower"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["web"]["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    assert services["bootstrap"]["command"] == ["token", "bootstrap", "--from-file", "/run/secrets/admin_token"]
    assert all(services[name].get("restart") == "no" for name in ONE_SHOT)
    web = services["web"]["command"]
    assert "0.0.0.0" in web and "--tls-cert" in web and "--tls-key" in web  # plain HTTP elsewhere is refused
    web_environment = services["web"]["environment"]  # every interface answers only to the names listed
    assert web_environment["FLEET_WEB_HOSTS"] == "fleet.example.com"
    assert web_environment["FLEET_DATABASE_URL"] == services["worker"]["environment"]["FLEET_DATABASE_URL"]
    urls = services["worker"]["environment"]
    assert "pgsecret0123@postgres" in urls["FLEET_DATABASE_URL"]
    assert urls["FLEET_BROKER_URL"] == "redis://:redissecret0123@redis:6379/0"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "ops:flowersecret0123"
    assert "--broker=redis://:redissecret0123@redis:6379/0" in services["flower"]["command"]
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == "redissecret0123"
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert "scram-sha-256" in services["postgres"]["environment"]["POSTGRES_INITDB_ARGS"]
    assert not any("volumes" in services[name] for name in ("worker", "web")), "team hosts share no folder"
