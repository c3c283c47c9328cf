"""`fleet merge enqueue|status|eject`: the merge queue that re-verifies approved diffs before the target moves."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.cli.cells import columns
from fleet.cli.console import JsonFlag, actor, one_line_errors, out, print_json
from fleet.cli.context import Context
from orchestrator import merges

app = typer.Typer(no_args_is_help=True, help="The merge queue: approved diffs land only once verified on top.")


@app.command("enqueue")
@one_line_errors
def merge_enqueue(
    ticket: int,
    candidate: Annotated[int | None, typer.Option(help="A candidate of a ticket in review (1: the best).")] = None,
    target: Annotated[str | None, typer.Option(help="The branch to land on (default: the base branch).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Queue an approved ticket's diff (or approve the chosen candidate of one waiting for review)."""
    ctx = Context()
    with ctx.db.session() as s:
        entry = merges.enqueue(s, ticket, actor(), candidate, target)
        view = merges.entry_view(entry)
    ctx.dispatcher.kick(ctx.db, ctx.settings)
    if as_json:
        return print_json(view)
    out.print(f"ticket {ticket} queued to land on {view['target']} (entry {view['entry']})")


@app.command("status")
@one_line_errors
def merge_status(as_json: JsonFlag = False) -> None:
    """What is being re-verified, on top of what, in landing order; overlapping tickets are flagged."""
    with Context().db.session() as s:
        view = merges.queue_view(s)
    if as_json:
        return print_json(view)
    if not view["queue"]:
        out.print("the merge queue is empty")
    else:
        cells = [
            (e["ticket"], e["target"], e["status"], _on_top(e), _tickets(e["overlaps"]), e["builds"], e["title"][:50])
            for e in view["queue"]
        ]
        out.print(columns(("ticket", "target", "status", "on top of", "overlaps", "builds", "title"), cells))
    for e in view["recent"]:
        what = f"merged as {e['merged'][:12]}" if e["status"] == "merged" else f"ejected: {e['reason']}"
        out.print(f"ticket {e['ticket']} {what}")


@app.command("eject")
@one_line_errors
def merge_eject(ticket: int, as_json: JsonFlag = False) -> None:
    """Take a ticket out of the merge queue; the entries behind it are re-verified without it."""
    ctx = Context()
    with ctx.db.session() as s:
        view = merges.entry_view(merges.eject(s, ticket, actor()))
    ctx.dispatcher.kick(ctx.db, ctx.settings)
    if as_json:
        return print_json(view)
    out.print(f"ticket {ticket} left the merge queue")


def _on_top(e: dict[str, object]) -> str:
    top = e["on_top_of"]
    assert isinstance(top, dict)
    if not top["commit"]:
        return "-"
    return " + ".join([str(top["commit"])[:10], *(f"entry {i}" for i in top["entries"])])


def _tickets(ids: object) -> str:
    return ", ".join(str(i) for i in ids) if isinstance(ids, list) else ""
