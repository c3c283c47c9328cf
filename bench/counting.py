"""Run a `fleet` command counting what Fleet's own process asks for: SQL statements and the commands it spawns.

    python bench/counting.py OUT.json up --until-idle --concurrency 100

Used by bench/fleet_bench.py for the statements (and git calls, process spawns) per ticket. Each is appended to a
list as it comes and counted at exit: well under a microsecond each, inside the CPU the benchmark measures.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
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


def _command(argv: list[str]) -> str:
    """The command behind setpriv/prlimit/bwrap wrappers: git (and its subcommand) when among them."""
    names = [os.path.basename(arg) for arg in argv[:12]]
    return git_command(argv[names.index("git") + 1 :]) if "git" in names else names[0] if names else "?"


def install(out: Path) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements: list[str] = []  # appended as they come (list.append holds the interpreter lock: no lock of ours),
    spawned: list[tuple[Any, ...]] = []  # and classified once, at exit: the counting costs the run next to nothing

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", on_statement)
    popen_init = subprocess.Popen.__init__

    def counting_init(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        spawned.append((args,) if isinstance(args, str | bytes) else tuple(args))
        popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = counting_init  # type: ignore[method-assign]

    def dump() -> None:
        kinds = Counter(statement.split(None, 1)[0].upper() for statement in statements)
        commands = Counter(_command([str(arg) for arg in argv]) for argv in spawned)
        out.write_text(json.dumps({"statements": dict(kinds), "spawns": dict(commands)}))

    atexit.register(dump)


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    sys.argv = ["fleet", *sys.argv[2:]]
    from fleet.cli import main

    main()
