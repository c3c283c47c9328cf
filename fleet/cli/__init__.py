"""The `fleet` command line: the composition root, one module per command group."""

from __future__ import annotations

import typer

from fleet.cli import demo, env, gc, merge, repo, review, status, tickets, web, workers
from fleet.cli.help import readable

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Queue tickets for coding agents; review only verified diffs.",
)
app.add_typer(repo.app, name="repo")
app.add_typer(review.app, name="review")
app.add_typer(merge.app, name="merge")
for group in (tickets, workers, status, demo):
    app.add_typer(group.commands)
app.add_typer(env.app, name="cache")
app.add_typer(gc.commands)
web.register(app)
readable(app)


def main() -> None:
    app()
