"""Run a `fleet` command counting what Fleet's own process asks for: SQL statements and the commands it spawns.

    python bench/counting.py OUT.json up --until-idle --concurrency 100

Used by bench/fleet_bench.py for the statements (and git calls, process spawns) per ticket. The counters cost
a few microseconds per statement, inside the CPU the benchmark measures.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not os.environ.get("PYTHONPATH"):  # a baseline checkout given by PYTHONPATH (fleet_bench --baseline) wins
    sys.path.insert(0, str(ROOT))


def git_command(args: list[str]) -> str:
    """`git SUBCOMMAND`, skipping git's own options (-C DIR, -c KEY=VALUE, --git-dir=..., ...)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-C", "-c"):
            skip = True
        elif not arg.startswith("-"):
            return f"git {arg}"
    return "git"


def install(out: Path) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements: Counter[str] = Counter()
    spawns: Counter[str] = Counter()
    lock = threading.Lock()

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        with lock:
            statements[statement.split(None, 1)[0].upper()] += 1

    event.listen(Engine, "before_cursor_execute", on_statement)
    popen_init = subprocess.Popen.__init__

    def counting_init(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        argv = [str(a) for a in ([args] if isinstance(args, str | bytes) else list(args))]
        names = [Path(a).name for a in argv[:12]]
        with lock:  # the command behind setpriv/prlimit/bwrap wrappers: git (and its subcommand) when among them
            spawns[git_command(argv[names.index("git") + 1 :]) if "git" in names else names[0] if names else "?"] += 1
        popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = counting_init  # type: ignore[method-assign]

    def dump() -> None:
        with lock:
            out.write_text(json.dumps({"statements": dict(statements), "spawns": dict(spawns)}))

    atexit.register(dump)


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    sys.argv = ["fleet", *sys.argv[2:]]
    from fleet.cli import main

    main()
