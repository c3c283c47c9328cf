"""host:port, as an egress allow-list names what a sandbox may reach: a repository's agent_hosts and setup_hosts,
and the deployment's FLEET_AGENT_HOSTS and FLEET_SETUP_HOSTS. `*.domain:443` names a domain's hosts."""

from __future__ import annotations

HOST_PORT = r"^(?:(?:\*\.)?(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$"
HOST_PORT_EXAMPLE = "host:port (api.example.com:443, 127.0.0.1:8080)"
