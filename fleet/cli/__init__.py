"""The `fleet` command line: the composition root, one module per command group.

`fleet` loads only the module of the command it runs (`fleet --help` loads none): COMMANDS names each top-level
command's module and its one-line help, and `tests/core/test_cli_imports.py` keeps the table in step with the
commands the modules define. `app`, the whole Typer app, is built on first use (the tests drive it).
"""

from __future__ import annotations

import signal
import sys
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["COMMANDS", "build_app", "main"]
HELP = "Queue tickets for coding agents; review only verified diffs."


@cache
def build_app() -> Any:
    """Every command in one Typer app (what the lazy group loads one module of at a time)."""
    import typer

    from fleet.cli import datasets, demo, env, evals, gc, imports, merge, repo, review, status, tickets, web, workers
    from fleet.cli.help import readable

    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, help=HELP)
    app.add_typer(repo.app, name="repo")
    app.add_typer(review.app, name="review")
    app.add_typer(merge.app, name="merge")
    app.add_typer(imports.app, name="import")
    for group in (tickets, workers, status, demo):
        app.add_typer(group.commands)
    app.add_typer(env.app, name="cache")
    app.add_typer(gc.commands)
    app.add_typer(evals.app, name="eval")
    app.add_typer(datasets.tasks_app, name="tasks")
    app.add_typer(datasets.commands)
    web.register(app)
    readable(app)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return build_app()
    if name == "COMMANDS":
        from fleet.cli.lazy import COMMANDS

        return COMMANDS
    raise AttributeError(name)


def main() -> None:
    """`fleet`: the command line is loaded here, where a Ctrl-C while it loads ends it quietly with exit code 130,
    as Click ends one during a command (at import time it printed Python's traceback)."""
    try:
        from fleet.cli.help import WIDE
        from fleet.cli.lazy import LazyGroup

        group = LazyGroup(name="fleet", help=HELP, no_args_is_help=True, rich_markup_mode=None, context_settings=WIDE)
        group(prog_name="fleet")
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
