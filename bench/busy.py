"""Agents busy over time in a fleet benchmark run: the dip figures and the plot (bench/fleet_bench.py)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def busy_profile(log: Path, slots: int) -> dict[str, Any]:
    """Agents busy through the middle 80% of the run, sampled every 0.1 s: a dip shows as a low minimum."""
    events = sorted(
        (float(ts), 1 if kind == "start" else -1) for kind, ts in (ln.split() for ln in log.read_text().splitlines())
    )
    if not events:
        return {}
    first, last = events[0][0], events[-1][0]
    samples, busy, index = [], 0, 0
    at = first + 0.1 * (last - first)
    while at < last - 0.1 * (last - first):
        while index < len(events) and events[index][0] <= at:
            busy += events[index][1]
            index += 1
        samples.append(busy)
        at += 0.1
    if not samples:
        return {}
    return {"busy_min_middle": min(samples), "busy_mean_middle": round(statistics.mean(samples), 1), "of_slots": slots}


def plot(log: Path, out: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    events = sorted(
        (float(ts), 1 if kind == "start" else -1)
        for kind, ts in (line.split() for line in log.read_text().splitlines())
    )
    t0, busy, xs, ys = events[0][0], 0, [], []
    for ts, delta in events:
        busy += delta
        xs.append(ts - t0)
        ys.append(busy)
    plt.figure(figsize=(8, 3))
    plt.step(xs, ys, where="post")
    plt.xlabel("seconds")
    plt.ylabel("agents busy")
    plt.tight_layout()
    plt.savefig(out)
    return True
