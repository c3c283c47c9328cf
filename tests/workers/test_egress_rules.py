"""The egress allow-list and the address rules, without sockets: what a sandboxed agent may reach."""

from __future__ import annotations

import ipaddress

import pytest

from workers.egress_rules import AllowList, Destination, address_problem


def test_allow_list_matching() -> None:
    allow = AllowList(["API.Anthropic.com:443", "*.googleapis.com:443", "127.0.0.1:8123", "[0:0::1]:8123"])
    permitted = [
        Destination("api.anthropic.com", 443),
        Destination("generativelanguage.googleapis.com", 443),
        Destination("a.b.googleapis.com", 443),
        Destination("127.0.0.1", 8123),
        Destination("::1", 8123),
    ]
    refused = [
        Destination("api.anthropic.com", 80),
        Destination("googleapis.com", 443),
        Destination("evilgoogleapis.com", 443),
        Destination("anthropic.com", 443),
        Destination("127.0.0.1", 6379),
        Destination("localhost", 8123),
    ]
    assert all(allow.permits(d) for d in permitted)
    assert not any(allow.permits(d) for d in refused)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("160.79.104.10", None),
        ("2607:6bc0::10", None),
    ],
)
def test_address_problems(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem
