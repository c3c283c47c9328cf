"""`fleet submit`, `logs`, `cancel` and `retry` (and, from fleet/cli/listing.py, `tickets` and `show`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from db import queries
from db.lifecycle import IllegalTransition
from db.specs import TicketSpec, help_text
from fleet.cli import listing
from fleet.cli.console import JsonFlag, YesFlag, actor, as_lines, confirm, one_line_errors, out, print_json
from fleet.cli.context import Context, spec_from
from fleet.cli.follow import follow
from orchestrator import review as reviews
from orchestrator import steps, views
from orchestrator.errors import FleetError
from orchestrator.tickets import bulk_cancel_ids, load_specs
from orchestrator.tickets import submit as submit_tickets

commands = typer.Typer()


@commands.command()
@one_line_errors
def submit(
    repo: Annotated[str, typer.Option(help=help_text(TicketSpec, "repo"))] = "",
    title: Annotated[str, typer.Option(help=help_text(TicketSpec, "title"))] = "",
    body: Annotated[str, typer.Option(help=help_text(TicketSpec, "body"))] = "",
    base: Annotated[str, typer.Option(help=help_text(TicketSpec, "base"))] = "HEAD",
    agent: Annotated[list[str] | None, typer.Option(help=help_text(TicketSpec, "agents"))] = None,
    agent_cmd: Annotated[str, typer.Option(help=help_text(TicketSpec, "agent_cmd"))] = "",
    attempts: Annotated[int, typer.Option(help=help_text(TicketSpec, "attempts"))] = 3,
    fanout: Annotated[int, typer.Option(help=help_text(TicketSpec, "fanout"))] = 1,
    target: Annotated[list[str] | None, typer.Option(help=help_text(TicketSpec, "targets"))] = None,
    priority: Annotated[int, typer.Option(help=help_text(TicketSpec, "priority"))] = 0,
    timeout: Annotated[
        float,
        typer.Option(
            help=help_text(TicketSpec, "timeout"), show_default="the workers' FLEET_AGENT_TIMEOUT_SECONDS, 3600"
        ),
    ] = 0.0,
    until: Annotated[str, typer.Option(help=help_text(TicketSpec, "until"))] = "all",
    model: Annotated[str, typer.Option(help=help_text(TicketSpec, "model"))] = "",
    budget_usd: Annotated[float, typer.Option(help=help_text(TicketSpec, "budget_usd"), show_default="no limit")] = 0.0,
    area: Annotated[list[str] | None, typer.Option(help=help_text(TicketSpec, "area"))] = None,
    agent_arg: Annotated[list[str] | None, typer.Option(help=help_text(TicketSpec, "agent_args"))] = None,
    agent_env: Annotated[list[str] | None, typer.Option(help=help_text(TicketSpec, "agent_env"))] = None,
    file: Annotated[Path | None, typer.Option(help="A YAML or JSON list of tickets.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Queue one ticket, or every ticket in --file."""
    options = dict(locals())  # every parameter but file and as_json is a spec field
    del options["file"], options["as_json"]
    fields = {TicketSpec.SINGULAR.get(key, key): value for key, value in options.items()}
    fields["timeout"] = timeout or None
    ctx = Context()
    if file is not None:
        defaults = {k: v for k, v in fields.items() if v not in ("", [], None)} | {"title": title}
        specs = load_specs(file, defaults, ctx.agents)
    else:
        if not repo:
            raise FleetError("--repo is required")
        specs = [spec_from(TicketSpec, fields)]
    tickets = submit_tickets(ctx.db, ctx.dispatcher, ctx.settings, specs, Path.cwd(), actor(), check_commands=True)
    if as_json:
        with ctx.db.session() as s:
            return print_json([views.ticket_view(queries.get_ticket(s, t.id)) for t in tickets])
    for t in tickets:
        out.print(f"ticket {t.id} queued: {t.title}")


# `tickets` and `show` are defined in their own module, which loads no SQLAlchemy (`fleet tickets` runs only it);
# listed here between submit and logs, the full app keeps their place in `fleet --help`.
commands.registered_commands += listing.commands.registered_commands


@commands.command()
@one_line_errors
def logs(
    attempt: int,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print the agent's output as it comes, until the agent ends.")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="The transcript as stored: agent CLIs' JSON events unrendered.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """An attempt's prompt, transcript, model calls and verification output; while its agent runs, its output so far.

    Agent CLIs' JSON events are shown as one line per step (a tool call, a command, a message); --raw shows them
    as stored."""
    db = Context().db
    with db.session() as s:
        a = queries.get_attempt(s, attempt)
        parts = [("prompt", a.prompt), ("transcript", a.transcript)]
        if calls := queries.model_calls(s, attempt):
            parts += [("model calls", views.conversation(calls))]
        if a.verification is not None:
            parts += [("verification", "\n".join(a.verification.reasons) + "\n\n" + a.verification.output)]
    if as_json:
        return print_json({"attempt": attempt} | dict(parts))
    render = (lambda text: text) if raw else steps.readable
    for name, text in parts:
        out.rule(name)
        # Not through rich: it expands tabs and drops some characters, and this text must read as stored.
        sys.stdout.write(as_lines(render(text) if name == "transcript" else text))
    if follow_:
        status = follow(db, attempt, parts[1][1], render=render)
        out.print(f"\n[the agent ended: attempt {attempt} is {status}]")


@commands.command()
@one_line_errors
def cancel(
    ticket: Annotated[int | None, typer.Argument(show_default=False)] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every queued, running or rejected ticket of --repo (not needs_review).")
    ] = False,
    repo: Annotated[str, typer.Option(help="With --all: the repository.", show_default=False)] = "",
    include_review: Annotated[
        bool, typer.Option(help="With --all: also tickets waiting for review (their verified diffs are dropped).")
    ] = False,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Stop a ticket, or with --all --repo R every queued, running or rejected ticket of R.

    Waiting attempts stop at once, running agents and test runs within seconds. --all leaves tickets waiting for
    review alone unless --include-review is given, and asks first (--yes skips the question)."""
    if all_ == (ticket is not None) or (all_ and not repo):
        raise FleetError("give a ticket id, or --all --repo NAME")
    ctx = Context()
    if ticket is not None:
        reviews.cancel(ctx.db, ticket, actor())
        return print_json({"cancelled": [ticket]}) if as_json else out.print(f"ticket {ticket} cancelled")
    ids, kept = bulk_cancel_ids(ctx.db, repo, include_review)
    if ids:
        confirm(f"Cancel {views.plural(len(ids), 'ticket')} of {repo}{_kept_note(kept)}?", yes)
    outcomes = {t: _cancel_one(ctx, t, spare_review=not include_review) for t in ids}
    cancelled = [t for t, outcome in outcomes.items() if outcome == "cancelled"]
    kept += sum(outcome == "review" for outcome in outcomes.values())  # reached the review queue meanwhile
    if as_json:
        return print_json({"cancelled": cancelled, "left_for_review": kept})
    listed = f": {', '.join(map(str, cancelled))}" if cancelled else ""
    out.print(f"{views.plural(len(cancelled), 'ticket')} of {repo} cancelled{listed}{_kept_note(kept)}")


def _kept_note(kept: int) -> str:
    return f" ({kept} waiting for review left alone; --include-review cancels them too)" if kept else ""


def _cancel_one(ctx: Context, ticket_id: int, spare_review: bool) -> str:
    """One ticket of a bulk cancel: cancelled, spared for review, or ended since it was listed (not an error)."""
    try:
        return "cancelled" if reviews.cancel(ctx.db, ticket_id, actor(), spare_review) else "review"
    except IllegalTransition:
        return "ended"


@commands.command()
@one_line_errors
def retry(ticket: int, as_json: JsonFlag = False) -> None:
    """Start a failed, errored, cancelled or rejected ticket again, with a fresh attempt budget."""
    ctx = Context()
    attempts = reviews.retry(ctx.db, ctx.dispatcher, ctx.settings, ticket, actor())
    if as_json:
        return print_json({"ticket": ticket, "attempts": attempts})
    out.print(f"ticket {ticket} queued again")
