"""What the egress proxy lets through: destinations, the allow-list, and the one request it reads from an agent."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

SETTING = "agent_hosts"  # named in every refusal: what the repository's owner changes to allow a destination
SETUP_SETTING = "setup_hosts"  # the same for a setup command's gate
METADATA_ADDRESS = ipaddress.ip_address("169.254.169.254")
# Hop-by-hop headers of the agent's request to the proxy; the upstream gets `Connection: close` instead.
DROPPED_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"})
_NAME = re.compile(r"[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressError(Exception):
    """An egress gate could not be opened (a bad allow-list entry, a socket folder others can read)."""


class Verdict(str, Enum):
    """What the proxy did with one connection."""

    ALLOWED = "allowed"
    DENIED = "denied"  # the destination is not allowed: never contacted
    FAILED = "failed"  # allowed, but it could not be resolved or reached
    REJECTED = "rejected"  # not a request the proxy accepts: malformed, too large, too slow, too many


@dataclass(frozen=True)
class EgressEvent:
    """One decision of a gate, for the attempt's transcript."""

    verdict: Verdict
    destination: str
    detail: str = ""
    bytes_up: int = 0
    bytes_down: int = 0

    def line(self) -> str:
        """The transcript line, such as `[fleet] egress denied: 127.0.0.1:6379 (not on the allow-list)`."""
        detail = f"{self.bytes_up} bytes up, {self.bytes_down} down" if self.verdict is Verdict.ALLOWED else self.detail
        return f"[fleet] egress {self.verdict.value}: {self.destination or 'request'} ({detail})"


@dataclass(frozen=True)
class EgressLimits:
    """The bounds every gate holds its connections to."""

    header_bytes: int = 16 * 1024
    header_seconds: float = 30.0
    connect_seconds: float = 10.0
    idle_seconds: float = 15 * 60.0
    max_connections: int = 64
    max_events: int = 1000  # kept per gate; on_event still sees every one


@dataclass(frozen=True)
class Destination:
    """A host (a lower-case name, or an IP address in canonical form) and a port."""

    host: str
    port: int

    @property
    def ip(self) -> IPAddress | None:
        """The host as an IP address, or None when it is a name."""
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(self.host)
        return None

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def normal_host(text: str) -> str:
    """A host as written in a request or an entry, made canonical; ValueError when it is not a host."""
    bracketed = text.startswith("[") and text.endswith("]")
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(text[1:-1] if bracketed else text)
        if bracketed == (address.version == 6):
            return str(address)
    name = text.lower().removesuffix(".")
    if bracketed or len(name) > 253 or not _NAME.fullmatch(name):
        raise ValueError(f"not a host name or IP address: {text!r}")
    return name


def parse_destination(authority: str, default_port: int | None = None) -> Destination:
    """`host:port` or `[v6]:port` (the port may be left out when there is a default); ValueError otherwise."""
    if authority.endswith("]") or authority.count(":") != 1 and not authority.startswith("["):
        host, port = authority, ""  # no port, or an IPv6 address without brackets (refused below)
    else:
        host, _, port = authority.rpartition(":")
    if not port and default_port is not None:
        return Destination(normal_host(host), default_port)
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"no port (1-65535) in {authority!r}")
    return Destination(normal_host(host), int(port))


class AllowList:
    """The destinations a gate lets through: exact `host:port` entries and `*.domain:port` wildcards."""

    def __init__(self, entries: Sequence[str], setting: str = SETTING) -> None:
        self.setting = setting  # where the entries come from, named in every refusal
        self.exact: set[Destination] = set()
        self.suffixes: set[tuple[str, int]] = set()
        for entry in entries:
            self._add(entry.strip())

    def _add(self, entry: str) -> None:
        """Parse one entry; EgressError when it is neither `host:port` nor `*.domain:port`."""
        try:
            if entry.startswith("*."):
                wildcard = parse_destination(entry[2:])
                if wildcard.ip is not None:
                    raise ValueError("a wildcard needs a domain name")
                self.suffixes.add(("." + wildcard.host, wildcard.port))
            else:
                self.exact.add(parse_destination(entry))
        except ValueError as error:
            raise EgressError(f"bad egress allow-list entry {entry!r}: {error}") from None

    def permits(self, destination: Destination) -> bool:
        """Whether the destination is listed, exactly or (a name) under a wildcard for its port."""
        if destination in self.exact:
            return True
        if destination.ip is not None:
            return False
        return any(destination.host.endswith(suffix) and destination.port == port for suffix, port in self.suffixes)


def address_problem(address: IPAddress) -> str | None:
    """Why a name's resolved address may not be reached (`loopback`, `private`...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_problem(address.ipv4_mapped)
    checks = (
        ("cloud metadata", address == METADATA_ADDRESS),
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((label for label, hit in checks if hit), None)


@dataclass(frozen=True)
class ProxyRequest:
    """A parsed proxy request: where to, and the bytes to send there first (none for CONNECT)."""

    destination: Destination
    head: bytes = b""


class Refused(Exception):
    """A request answered with an HTTP error instead of a tunnel."""

    def __init__(self, status: int, verdict: Verdict, destination: str, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.status, self.event, self.hint = status, EgressEvent(verdict, destination, detail), hint

    def body(self) -> str:
        """The one-line response body: what was refused and why, and what to change."""
        event = self.event
        text = f"fleet egress {event.verdict.value} {event.destination or 'request'}: {event.detail}"
        return f"{text}; {self.hint}" if self.hint else text


def _bad(detail: str) -> Refused:
    """A 400 for a request the proxy cannot parse."""
    return Refused(400, Verdict.REJECTED, "", detail)


def parse_request(head: bytes) -> ProxyRequest:
    """The request in a header block: CONNECT host:port, or an absolute-form http:// request; else a 400."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise _bad("request headers are not ASCII") from None
    request_line, *headers = text.removesuffix("\r\n\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise _bad(f"not an HTTP/1.x request line: {request_line[:200]!r}")
    _check_headers(headers)
    method, target, version = parts
    if method == "CONNECT":
        return ProxyRequest(_target(target, None))
    return _absolute_form(method, target, version, headers)


def _check_headers(headers: Sequence[str]) -> None:
    """A 400 unless every header line is `Name: value` (no folded lines)."""
    for line in headers:
        name, colon, _ = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _bad(f"malformed header line: {line[:200]!r}")


def _target(authority: str, default_port: int | None) -> Destination:
    """The destination of a request target, or a 400."""
    try:
        return parse_destination(authority, default_port)
    except ValueError as error:
        raise _bad(str(error)) from None


def _absolute_form(method: str, target: str, version: str, headers: Sequence[str]) -> ProxyRequest:
    """A plain http request for upstream: origin-form request line, hop-by-hop headers dropped, Connection: close."""
    try:
        url = urlsplit(target)
    except ValueError:
        raise _bad(f"not a URL: {target[:200]!r}") from None
    if url.scheme != "http" or not url.netloc or "@" in url.netloc:
        raise _bad(f"a proxy request needs an absolute http:// URL (https goes through CONNECT): {target[:200]!r}")
    destination = _target(url.netloc, 80)
    kept = [line for line in headers if line.partition(":")[0].strip().lower() not in DROPPED_HEADERS]
    if not any(line.partition(":")[0].lower() == "host" for line in kept):
        kept.append(f"Host: {url.netloc}")
    origin = (url.path or "/") + (f"?{url.query}" if url.query else "")
    lines = [f"{method} {origin} {version}", *kept, "Connection: close", "", ""]
    return ProxyRequest(destination, "\r\n".join(lines).encode("ascii"))
