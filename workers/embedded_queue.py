"""The embedded broker's queue depths, read from its folder without loading Celery (for `fleet status`)."""

from __future__ import annotations

import os
from pathlib import Path

from workers.constants import QUEUES


def depths(broker_dir: Path) -> dict[str, int | None]:
    """Messages waiting per queue: kombu's filesystem transport keeps one `<stamp>_<id>.<queue>.msg` file each."""
    folder = broker_dir / "queue"
    try:
        names = os.listdir(folder)
    except OSError:
        return dict.fromkeys(QUEUES, 0)
    return {queue: sum(name.endswith(f".{queue}.msg") for name in names) for queue in QUEUES}
