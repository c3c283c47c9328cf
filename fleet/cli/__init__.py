"""The `fleet` command line: the composition root, one module per command group."""

from __future__ import annotations

import typer

from fleet.cli import datasets, demo, env, evals, gc, imports, repo, review, status, tickets, web, workers
from fleet.cli.help import readable

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Queue tickets for coding agents; review only verified diffs.",
)
app.add_typer(repo.app, name="repo")
app.add_typer(review.app, name="review")
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


def main() -> None:
    app()
