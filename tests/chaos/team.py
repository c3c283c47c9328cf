"""A Fleet team on namespace hosts: PostgreSQL with a password, Redis with a password over TLS, a git server, two
workers with a FLEET_HOME each, the web app, and two hosts that run only commands (a laptop and an observer).

Nothing is shared between hosts but the network and the installed software: each host's /tmp is its own, the
repository lives only on the git host and is registered by its git:// URL, and the passwords and the CA
certificate are written onto each host that needs them, as an operator would.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.netns import SUBNET, Host, Network, network, stop

PG_BIN = (
    sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1].parent
    if Path("/usr/lib/postgresql").is_dir()
    else Path()
)
ADDRESSES = {"db": 2, "broker": 3, "git": 4, "web": 5, "worker-a": 11, "worker-b": 12, "laptop": 20, "observer": 21}
CA = "/tmp/fleet-ca.pem"
HOME = "/tmp/fleet-home"
WEB_PORT = 8600
REPO_URL = f"git://{SUBNET}.{ADDRESSES['git']}/calc.git"
FAST = {
    "FLEET_HEARTBEAT_SECONDS": "1",
    "FLEET_RECONCILE_SECONDS": "1",
    "FLEET_KILL_GRACE_SECONDS": "1",
    "FLEET_REDISPATCH_SECONDS": "5",
    "FLEET_USER": "tester",
}


@dataclass
class Team:
    """The hosts, the URLs with their passwords, and the first admin token; `fleet(host, ...)` runs the CLI there."""

    net: Network
    tmp: Path
    database_url: str
    broker_url: str
    admin_token: str
    lease_seconds: float
    workers: dict[str, Any] = field(default_factory=dict)

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "PG", "REDIS"))}
        env.update(FAST, FLEET_HOME=HOME, FLEET_DATABASE_URL=self.database_url, FLEET_BROKER_URL=self.broker_url)
        env.update(FLEET_LEASE_SECONDS=str(self.lease_seconds), **extra)
        return env

    def fleet(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = self.host(host).run(sys.executable, "-m", "fleet", *args, env=self.env(), timeout=240)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{host}: fleet {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def json(self, host: str, *args: str) -> Any:
        return json.loads(self.fleet(host, *args, "--json").stdout)

    def start_worker(self, name: str, *args: str, **env: str) -> None:
        log = self.tmp / f"{name}.log"
        argv = (sys.executable, "-m", "fleet", "worker", "--concurrency", "2", *args)
        self.workers[name] = self.host(name).start(*argv, env=self.env(**env), log=log)

    def stop_worker(self, name: str) -> None:
        stop(self.workers.pop(name), grace=30)

    def api(self, host: str, path: str) -> Any:
        """GET path from the web host over HTTPS (the CA on host), with the bootstrap admin token."""
        script = (
            "import json, ssl, sys, urllib.request\n"
            f"ctx = ssl.create_default_context(cafile={CA!r})\n"
            "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'Bearer ' + sys.stdin.read()})\n"
            "print(urllib.request.urlopen(req, context=ctx, timeout=30).read().decode())\n"
        )
        url = f"https://{self.host('web').address}:{WEB_PORT}{path}"
        out = self.host(host).check(sys.executable, "-c", script, url, input=self.admin_token)
        return json.loads(out)

    def wait(self, what: str, ready: Any, timeout: float = 180) -> Any:
        """Poll ready() until it returns something true; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = ready()
            if value:
                return value
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log")))
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.5)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def certificates(folder: Path, servers: dict[str, str]) -> dict[str, tuple[str, str]]:
    """A throwaway CA and a certificate per server for its IP address: {"ca": (cert, ""), name: (cert, key)}."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=fleet test CA",
        cwd=folder,
    )
    made = {"ca": ((folder / "ca.pem").read_text(), "")}
    for name, address in servers.items():
        (folder / f"{name}.ext").write_text(f"subjectAltName=IP:{address}\n")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder,
        )  # fmt: skip
        made[name] = ((folder / f"{name}.pem").read_text(), (folder / f"{name}.key").read_text())
    return made


def start_postgres(db: Host, password: str) -> str:
    """A private cluster on db's address with scram passwords (no trust); returns the fleet role's URL."""
    db.check("install", "-d", "-o", "postgres", "-m", "700", "/tmp/pg")
    db.write("/tmp/pg/pw", password, owner="postgres")
    initdb = (str(PG_BIN / "initdb"), "-D", "/tmp/pg/data", "-U", "postgres", "--pwfile=/tmp/pg/pw", "--no-sync")
    db.check("runuser", "-u", "postgres", "--", *initdb, "--auth-host=scram-sha-256", "--auth-local=scram-sha-256")
    db.check("sh", "-c", f"echo 'host all all {SUBNET}.0/24 scram-sha-256' >> /tmp/pg/data/pg_hba.conf")
    server = (str(PG_BIN / "postgres"), "-D", "/tmp/pg/data", "-c", f"listen_addresses={db.address}")
    db.start("runuser", "-u", "postgres", "--", *server, "-c", "unix_socket_directories=/tmp/pg", "-c", "fsync=off")
    db.wait_for_port(db.address, 5432)
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    sql = [f"CREATE ROLE fleet LOGIN PASSWORD '{password}'", "CREATE DATABASE fleet OWNER fleet"]
    for _ in range(50):  # the port opens a moment before the server accepts logins
        proc = db.run("psql", "-h", db.address, "-U", "postgres", "-d", "postgres", "-c", sql[0], "-c", sql[1], env=env)
        if proc.returncode == 0:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"cannot create the fleet database: {proc.stderr}")
    return f"postgresql+psycopg2://fleet:{password}@{db.address}:5432/fleet"


def start_redis(broker: Host, password: str, cert: tuple[str, str], ca: str) -> str:
    """redis-server on broker's address, TLS only, with requirepass; returns the rediss:// URL workers use."""
    broker.check("mkdir", "-p", "/tmp/redis")
    broker.write("/tmp/redis/cert.pem", cert[0])
    broker.write("/tmp/redis/key.pem", cert[1])
    broker.write("/tmp/redis/ca.pem", ca)
    config = "\n".join(
        [
            f"bind {broker.address}",
            "port 0",
            "tls-port 6379",
            "tls-cert-file /tmp/redis/cert.pem",
            "tls-key-file /tmp/redis/key.pem",
            "tls-ca-cert-file /tmp/redis/ca.pem",
            "tls-auth-clients no",
            f"requirepass {password}",
            'save ""',
            "appendonly no",
            "dir /tmp/redis",
        ]
    )
    broker.write("/tmp/redis/redis.conf", config + "\n")
    broker.start("redis-server", "/tmp/redis/redis.conf")
    broker.wait_for_port(broker.address, 6379)
    return f"rediss://:{password}@{broker.address}:6379/0?ssl_cert_reqs=required&ssl_ca_certs={CA}"


def start_git(git: Host) -> None:
    """The sample repository, only on the git host, served read-write by git daemon."""
    make = (
        "from pathlib import Path; from workers.agents.scripted import write_sample_repo as w; w(Path('/tmp/src/calc'))"
    )
    git.check(sys.executable, "-c", make)
    git.check("git", "clone", "--bare", "--quiet", "/tmp/src/calc", "/tmp/srv/calc.git")
    daemon = ("git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--base-path=/tmp/srv")
    git.start(*daemon, f"--listen={git.address}", "--port=9418", "/tmp/srv")
    git.wait_for_port(git.address, 9418)


@contextmanager
def team(tmp: Path, lease_seconds: float = 20.0) -> Iterator[Team]:
    """Every host of the team, its servers up and the first admin token made on the web host; torn down after."""
    with network() as net:
        for name, number in ADDRESSES.items():
            net.add(name, number)
        hosts = net.hosts
        certs = certificates(tmp / "pki", {"broker": hosts["broker"].address, "web": hosts["web"].address})
        database_url = start_postgres(hosts["db"], secrets.token_hex(16))
        broker_url = start_redis(hosts["broker"], secrets.token_hex(16), certs["broker"], certs["ca"][0])
        start_git(hosts["git"])
        for name in ("worker-a", "worker-b", "web", "laptop", "observer"):
            hosts[name].write(CA, certs["ca"][0], mode="644")
        admin_secret = secrets.token_hex(24)
        made = Team(net, tmp, database_url, broker_url, "", lease_seconds)
        web = hosts["web"]
        web.write("/tmp/admin_token", admin_secret)
        web.write("/tmp/web.pem", certs["web"][0])
        web.write("/tmp/web.key", certs["web"][1])
        made.fleet("web", "migrate")
        booted = made.fleet("web", "token", "bootstrap", "--from-file", "/tmp/admin_token").stdout
        made.admin_token = f"fleet_{booted.split('admin token ')[1].split()[0]}_{admin_secret}"
        serve = (
            "web",
            "--host",
            web.address,
            "--port",
            str(WEB_PORT),
            "--tls-cert",
            "/tmp/web.pem",
            "--tls-key",
            "/tmp/web.key",
        )
        web.start(sys.executable, "-m", "fleet", *serve, env=made.env(), log=tmp / "web.log")
        web.wait_for_port(web.address, WEB_PORT)
        yield made
