"""How the web app listens: loopback over plain HTTP, a direct TLS listener, or behind trusted reverse proxies; and
the names it answers to."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import FleetError
from system.webhosts import BadHostName, every_interface, host_pattern, served_names


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _address_or_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


class _EncryptedKey(Exception):
    """The key asked for a passphrase, which `fleet web` has no way to give."""


def _no_passphrase() -> bytes:
    raise _EncryptedKey


def _check_tls_pair(cert: Path, key: Path) -> None:
    """Load them as uvicorn will, before anything claims to serve: a bad pair is one line, not a traceback."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=_no_passphrase)
    except _EncryptedKey:
        cause = "the key is encrypted: give it unencrypted"
    except ssl.SSLError as exc:
        mismatched = exc.reason == "KEY_VALUES_MISMATCH"
        cause = "the key is not the certificate's" if mismatched else "is each a PEM file, and not swapped?"
    else:
        return
    raise FleetError(f"--tls-cert/--tls-key: cannot load the certificate and key ({cause})")


@dataclass(frozen=True)
class Listener:
    """An address, and how HTTPS reaches it: its own certificate, or proxies whose forwarded headers we believe."""

    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # FLEET_WEB_HOSTS, as host_pattern gives them

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/"

    @property
    def answers_to(self) -> tuple[str, ...]:
        """The Host names served (system.webhosts.served_names): the app checks them, this says them."""
        return served_names(self.host, self.hosts)

    def check(self) -> None:
        """Refuse what cannot work: session cookies are Secure, so browsers drop them over plain HTTP elsewhere."""
        if not 0 < self.port < 65536:
            raise FleetError(f"--port must be between 1 and 65535 (got {self.port})")
        bad = [proxy for proxy in self.trusted_proxies if not _address_or_network(proxy)]
        if bad:
            raise FleetError(f"--trusted-proxy takes an IP address or network (got {bad[0]!r})")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise FleetError("--tls-cert and --tls-key go together: give both, or neither")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise FleetError(f"no such file: {path}")
        if self.tls_cert is not None and self.tls_key is not None:
            _check_tls_pair(self.tls_cert, self.tls_key)
        if not (self.tls or self.trusted_proxies or is_loopback(self.host)):
            raise FleetError(
                f"refusing plain HTTP on {self.host}: browsers would drop the Secure login cookie; "
                "serve TLS with --tls-cert/--tls-key, or put an HTTPS reverse proxy in front and "
                "name it with --trusted-proxy ADDR"
            )
        self._check_names()

    def _check_names(self) -> None:
        """The address listened on is a name a Host header can carry; every interface's is none: it needs the list."""
        if not every_interface(self.host):
            try:
                host_pattern(self.host)
            except BadHostName:
                raise FleetError(f"--host takes a host name or an IP address (got {self.host!r})") from None
        elif not self.hosts:
            raise FleetError(
                f"listening on every interface ({self.host}) needs FLEET_WEB_HOSTS: the names browsers reach this"
                " server by, comma-separated (`*` for any, behind a proxy that checks the Host header); requests"
                " for other names are refused against DNS rebinding"
            )

    def bind(self) -> socket.socket:
        """The listening socket, made before anything says it serves: a port in use is one line naming it."""
        try:
            family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0]
            listening = socket.socket(family, kind, proto)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart at once
            listening.bind(address)
            listening.listen(2048)
        except OSError as exc:
            raise FleetError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                " (another program, or another `fleet web`, may hold it: choose another with --port)"
            ) from None
        return listening

    def config(self, app: Any, graceful_seconds: int = 3) -> Any:
        """uvicorn's Config; forwarded headers are read only from the trusted proxies (uvicorn trusts 127.0.0.1
        by default, which would let any local process claim HTTPS)."""
        import uvicorn

        return uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            ssl_certfile=str(self.tls_cert) if self.tls_cert else None,
            ssl_keyfile=str(self.tls_key) if self.tls_key else None,
            proxy_headers=bool(self.trusted_proxies),
            forwarded_allow_ips=list(self.trusted_proxies) or None,
            log_level="warning",
            timeout_graceful_shutdown=graceful_seconds,
        )
