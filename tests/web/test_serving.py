"""Logging in the way deployments serve Fleet: loopback HTTP, a direct TLS listener, a trusted reverse proxy."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.web.serving import Listener
from tests.web.conftest import Server, app_with_token, free_port, make_fleet, self_signed


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = app_with_token(tmp_path)
    yield app
    app.state.fleet.db.dispose()


def cookie_flags(answer: httpx.Response, name: str) -> set[str]:
    [line] = [v for v in answer.headers.get_list("set-cookie") if v.startswith(name + "=")]
    return {part.strip().split("=")[0].lower() for part in line.split(";")[1:]}


def log_in(client: httpx.Client, token: str, **headers: str) -> httpx.Response:
    """GET the form, POST it back with its nonce, then open the dashboard with the session."""
    form = client.get("/login", headers=headers)
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert nonce, form.text
    client.post("/login", data={"token": token, "csrf": nonce.group(1)}, headers=headers)
    return client.get("/", headers=headers)


def test_over_tls_the_cookie_is_secure_and_login_works(app: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with Server(app, Listener("127.0.0.1", free_port(), cert, key)) as server:
        assert server.url.startswith("https://")
        with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(cert))) as client:
            assert "secure" in cookie_flags(client.get("/login"), "fleet_login_csrf")
            home = log_in(client, app.state.token)
    assert home.status_code == 200 and "<h1>Fleet</h1>" in home.text


def test_behind_a_trusted_proxy_the_forwarded_proto_makes_the_cookie_secure(app: Any) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    proxied = Listener("127.0.0.1", free_port(), trusted_proxies=("127.0.0.1",))
    with Server(app, proxied) as server, httpx.Client(base_url=server.url) as client:
        assert "secure" in cookie_flags(client.get("/login", headers=https), "fleet_login_csrf")
        # Plain HTTP forwarded from a remote browser: Secure, and the page says why login cannot work.
        plain = client.get("/login", headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.7"})
    assert "secure" in cookie_flags(plain, "fleet_login_csrf") and "This connection is plain HTTP" in plain.text


def test_forwarded_headers_from_an_untrusted_address_are_ignored(app: Any) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    untrusted = Listener("127.0.0.1", free_port(), trusted_proxies=("10.9.9.9",))
    with Server(app, untrusted) as server, httpx.Client(base_url=server.url) as client:
        assert "secure" not in cookie_flags(client.get("/login", headers=https), "fleet_login_csrf")


def test_loopback_over_plain_http_logs_in_with_non_secure_cookies(app: Any) -> None:
    with Server(app) as server, httpx.Client(base_url=server.url) as client:
        form = client.get("/login")
        assert "secure" not in cookie_flags(form, "fleet_login_csrf")
        home = log_in(client, app.state.token)
    assert home.status_code == 200 and "<h1>Fleet</h1>" in home.text


def test_plain_http_beyond_loopback_is_refused_with_the_two_ways_to_serve(tmp_path: Path) -> None:
    from orchestrator.errors import FleetError

    with pytest.raises(FleetError) as refused:
        Listener("0.0.0.0", 8600).check()
    message = str(refused.value)
    assert "\n" not in message and "--tls-cert/--tls-key" in message and "--trusted-proxy" in message
    named = ("fleet.example.com",)
    Listener("0.0.0.0", 8600, trusted_proxies=("10.0.0.2",), hosts=named).check()
    Listener("::1", 8600).check()
    cert, key = self_signed(tmp_path)
    Listener("0.0.0.0", 8600, cert, key, hosts=named).check()
    with pytest.raises(FleetError, match="go together"):
        Listener("0.0.0.0", 8600, cert).check()


@pytest.mark.parametrize(
    ("listener", "message"),
    [
        (Listener("127.0.0.1", 99999), "--port must be between 1 and 65535 (got 99999)"),
        (Listener("127.0.0.2", 8600, trusted_proxies=("banana",)), "--trusted-proxy takes an IP address or network"),
    ],
)
def test_a_port_or_proxy_that_cannot_work_is_one_line(listener: Listener, message: str) -> None:
    from orchestrator.errors import FleetError

    with pytest.raises(FleetError, match=re.escape(message)):
        listener.check()
    Listener("127.0.0.2", 8600, trusted_proxies=("10.0.0.0/8", "::1")).check()


def test_a_port_in_use_is_one_line_and_no_claim_to_serve(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fleet", "web", "--port", str(port)],
            env=fleet.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another")
    assert len(done.stderr.splitlines()) == 1


def test_a_swapped_certificate_and_key_is_one_line_and_no_claim_to_serve(tmp_path: Path) -> None:
    fleet, (cert, key) = make_fleet(tmp_path), self_signed(tmp_path)
    argv = ["web", "--port", str(free_port()), "--tls-cert", str(key), "--tls-key", str(cert)]
    done = subprocess.run(
        [sys.executable, "-m", "fleet", *argv], env=fleet.env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "error: --tls-cert/--tls-key: cannot load the certificate and key (is each a PEM file, and not swapped?)\n"
    )


def test_a_key_of_another_certificate_an_encrypted_key_or_garbage_is_one_line(tmp_path: Path) -> None:
    from orchestrator.errors import FleetError

    (tmp_path / "other").mkdir()
    (cert, key), (_, other_key) = self_signed(tmp_path), self_signed(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.pem"
    openssl_rsa = ["openssl", "rsa", "-aes256", "-passout", "pass:secret", "-in", str(key), "-out", str(encrypted)]
    subprocess.run(openssl_rsa, check=True, capture_output=True)
    refusals = [
        ((cert, other_key), "the key is not the certificate's"),
        ((garbage, key), "not swapped?"),
        ((cert, encrypted), "the key is encrypted"),
    ]
    for tls, cause in refusals:
        with pytest.raises(FleetError, match=re.escape(cause)):
            Listener("127.0.0.1", 8600, *tls).check()


def test_fleet_web_serves_its_own_tls(tmp_path: Path) -> None:
    """The command line's options reach uvicorn: `fleet web --tls-cert C --tls-key K` answers over HTTPS."""
    fleet, port = make_fleet(tmp_path), free_port()
    cert, key = self_signed(tmp_path)
    argv = ["web", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet", *argv],
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, trust = time.monotonic() + 30, ssl.create_default_context(cafile=str(cert))
        while True:
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/login", verify=trust, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "fleet web did not answer over TLS"
                time.sleep(0.2)
        assert "secure" in cookie_flags(answer, "fleet_login_csrf")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    assert f"Fleet web on https://127.0.0.1:{port}/" in output
