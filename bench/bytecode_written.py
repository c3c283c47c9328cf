"""Both codes of a side by side pair start from bytecode (bench/fleet_bench.py --baseline)."""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGES = ("fleet", "db", "system", "verification", "workers", "orchestrator")


def compiled(checkout: Path) -> None:
    """Write the checkout's bytecode: under PYTHONDONTWRITEBYTECODE, or in a checkout no Python has run from, every
    worker would compile its modules at its start (about 0.2 s), and the two codes of a pair would not start alike."""
    for name in PACKAGES:
        if (checkout / name).is_dir():
            compileall.compile_dir(checkout / name, quiet=1)
