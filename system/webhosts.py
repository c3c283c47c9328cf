"""The names the web app answers to (the Host header): anything else is refused, so a page whose DNS name rebinds
to this machine cannot read the dashboard as its own origin."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY = "*"
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class BadHostName(ValueError):
    """A listed name is not a host name, an IP address, `*.domain` or `*`."""


def host_pattern(text: str) -> str:
    """text as a Host header carries it (lower case, an IPv6 address in brackets), or `*.domain`, or `*`."""
    name = text.strip().lower()
    if name == ANY:
        return ANY
    if name.startswith("*."):
        return "*." + _dns_name(name[2:], text)
    if ":" in name or name.startswith("["):
        return f"[{_ipv6(name.removeprefix('[').removesuffix(']'), text)}]"
    return _dns_name(name, text)


def every_interface(host: str) -> bool:
    """0.0.0.0 or ::, where the address listened on names no one host."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def served_names(listened_on: str | None, listed: Sequence[str]) -> tuple[str, ...]:
    """The Host names served: this machine's own, the address listened on (unless every interface's, or unknown) and
    the listed ones (FLEET_WEB_HOSTS, as host_pattern gives them); or `*`, any."""
    if ANY in listed:
        return (ANY,)
    bound = () if listened_on is None or every_interface(listened_on) else (host_pattern(listened_on),)
    return tuple(dict.fromkeys((*LOCAL_NAMES, *bound, *listed)))


def host_patterns(names: Sequence[str]) -> list[str]:
    """Each non-empty name as host_pattern gives it (a trailing comma in a list is no name)."""
    return [host_pattern(name) for name in names if name.strip()]


def _dns_name(name: str, text: str) -> str:
    if len(name) > 253 or not _NAME.fullmatch(name):
        raise _bad(text)
    return name


def _ipv6(address: str, text: str) -> str:
    try:
        return ipaddress.IPv6Address(address).compressed
    except ValueError:
        raise _bad(text) from None


def _bad(text: str) -> BadHostName:
    return BadHostName(
        f"{text.strip()!r} is not a host name, an IP address, '*.domain' or '*'"
        " (no scheme, port or path: every port of a listed name is served)"
    )
