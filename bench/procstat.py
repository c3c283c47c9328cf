"""CPU time and memory of processes, read from /proc: the benchmarks' own measures of what Fleet costs."""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("postgres", "redis-server")  # the team mode's servers, by process name


def _stat_fields(pid: int | str) -> tuple[str, list[str]] | None:
    """A process's name and the fields of /proc/PID/stat after it, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 1 :]
    return name, rest.split()


def cpu_seconds(pid: int) -> float | None:
    """The process's own user+system time (its children excluded), or None once it is gone."""
    found = _stat_fields(pid)
    if found is None:
        return None
    fields = found[1]
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def servers_cpu_seconds() -> dict[str, float]:
    """CPU time of each server in SERVERS so far: its processes', and their ended children's (PostgreSQL starts a
    process per connection, and its postmaster counts the time of those that ended)."""
    total = dict.fromkeys(SERVERS, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (found := _stat_fields(entry.name)) is None:
            continue
        name, fields = found
        server = next((server for server in SERVERS if name.startswith(server)), None)
        if server is not None:
            total[server] += sum(int(field) for field in fields[11:15]) / CLK_TCK
    return total


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has spent (user, nice, system, irq, softirq: /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields)
    return (user + nice + system + irq + softirq) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
