"""`fleet tickets` and `fleet show`: reading commands, through db/reads.py (no SQLAlchemy, pydantic or Alembic)."""

from __future__ import annotations

from textwrap import indent
from typing import Annotated, Any

import typer

from db.errors import unknown_repo
from db.lifecycle import TicketStatus
from fleet.cli.cells import clip, columns
from fleet.cli.console import JsonFlag, one_line_errors, out, print_json
from fleet.cli.help import ID, MAX_ID
from fleet.cli.plain import PlainCommand
from fleet.cli.reading import database
from orchestrator import views
from orchestrator.errors import FleetError
from system.places import Place

commands = typer.Typer()


def ticket_table(tickets: list[dict[str, Any]]) -> str:
    cells = [
        (t["id"], t["repo"], t["status"], t["agent"], clip(t["title"], 60), clip(t["reason"], 60)) for t in tickets
    ]
    return columns(("id", "repo", "status", "agent", "title", "reason"), cells)


@commands.command(cls=PlainCommand)
@one_line_errors
def tickets(
    status: Annotated[str, typer.Option(help="Only tickets with this status.")] = "",
    repo: Annotated[str, typer.Option()] = "",
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    before: Annotated[
        int, typer.Option(help="Only tickets older than this id (the next page).", metavar=ID, show_default=False)
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List tickets, newest first, a page at a time."""
    if not 1 <= limit <= MAX_ID:  # a negative LIMIT is no limit to SQLite, an error to PostgreSQL
        raise FleetError(f"--limit must be between 1 and {MAX_ID} (got {limit})")
    if status and status not in {s.value for s in TicketStatus}:
        raise FleetError(f"unknown status {status!r}; one of: {', '.join(s.value for s in TicketStatus)}")
    place = Place.from_env()
    with database(place) as reader:
        rows = [views.ticket_view(t) for t in reader.ticket_page(status or None, repo or None, limit, before or None)]
        if repo and not rows and repo not in (known := reader.repo_names()):
            raise unknown_repo(repo, known)
    if as_json:
        return print_json(rows)
    if not rows:
        matching = " matching " + " and ".join(f"--{k} {v}" for k, v in (("status", status), ("repo", repo)) if v)
        return out.print(f"no tickets{matching if status or repo else ''} in {place.where()}")
    out.print(ticket_table(rows))
    if len(rows) == limit:
        out.print(f"older tickets: fleet tickets --before {rows[-1]['id']}")


@commands.command(cls=PlainCommand)
@one_line_errors
def show(ticket: int, as_json: JsonFlag = False) -> None:
    """A ticket with its runs and attempts: status, verdict, diff stat and feedback."""
    with database(Place.from_env()) as reader:
        view = views.ticket_view(reader.tree(ticket), with_runs=True)
    if as_json:
        return print_json(view)
    status = f"{view['status']}: {view['verdict']}" if view["verdict"] else view["status"]
    out.print(f"ticket {view['id']} [{status}] {view['title']}")
    if view["reason"]:
        out.print(f"  {view['reason']}")
    if view["pr_url"]:
        out.print(f"  pull request: {view['pr_url']}")
    for run in view["runs"]:
        out.print(f"  run {run['number']} ({run['agent']}): {run['status']}")
        for a in run["attempts"]:
            show_attempt(a, last=a is run["attempts"][-1])


def show_attempt(a: dict[str, Any], last: bool) -> None:
    """One attempt of `fleet show`: the feedback it started from, and on a run's last unpassed attempt its own."""
    verdict = a["verdict"] or a["status"]
    line = f"    attempt {a['number']} (id {a['id']}): {verdict}  {a['diff_stat']}  {a['error'] or ''}"
    out.print(line)
    if a["tokens_in"] or a["tokens_out"] or a["unpriced_calls"]:
        out.print(f"      usage: {a['usage']}")
    if a["feedback_in"]:
        out.print(indent(f"started from this feedback:\n{a['feedback_in'].strip()}", " " * 6))
    if last and a["feedback_out"] and verdict != "passed":
        ended = f"feedback (no further attempt was made):\n{a['feedback_out'].strip()}"
        out.print(indent(ended, " " * 6))
