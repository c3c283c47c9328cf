"""`fleet review list|show|approve|reject`: verified diffs waiting for a person."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from db import queries
from fleet.cli.cells import columns
from fleet.cli.console import JsonFlag, actor, one_line_errors, out, print_json
from fleet.cli.context import Context
from orchestrator import approval, merges, views
from orchestrator import review as reviews
from orchestrator.errors import FleetError
from orchestrator.views import plural
from system.invisible import controls_shown

app = typer.Typer(no_args_is_help=True, help="Verified diffs waiting for a person.")


@app.command("list")
@one_line_errors
def review_list(as_json: JsonFlag = False) -> None:
    """Tickets with a verified diff, waiting for review. Nothing unverified is ever listed."""
    db = Context().db
    found = reviews.review_queue(db)
    with db.session() as s:
        overlaps = merges.review_overlaps(s, found)
    rows = [row | {"candidates": len(row["candidates"]), "overlaps": overlaps.get(row["id"], [])} for row in found]
    if as_json:
        return print_json(rows)
    if not rows:
        return out.print("nothing is waiting for review: `fleet tickets` shows every ticket and its status")
    cells = []
    for r in rows:
        shared = ", ".join(map(str, r["overlaps"]))
        cells.append((r["id"], r["repo"], r["title"][:60], r["candidates"], r["diff_stat"], shared, r["pr_url"]))
    out.print(columns(("ticket", "repo", "title", "candidates", "best diff", "overlaps", "pull request"), cells))


@app.command("show")
@one_line_errors
def review_show(
    ticket: int,
    candidate: Annotated[int, typer.Option(help="Which candidate's diff to show (1 is the best).")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """The verified candidates side by side, best first, and one candidate's diff and tests."""
    with Context().db.session() as s:
        tree = queries.load_ticket_tree(s, ticket)
        best = reviews.candidates(tree, queries.rejected_attempt_ids(s, ticket))
        if not best:
            raise FleetError(f"ticket {ticket} has no verified diff (status {tree.status})")
        shown = [reviews.candidate_view(c, rank) for rank, c in enumerate(best, start=1)]
        head = views.ticket_view(tree)
    if as_json:
        return print_json(head | {"candidates": shown})
    if not 1 <= candidate <= len(shown):
        raise FleetError(f"--candidate must be between 1 and {len(shown)}")
    out.print(f"ticket {head['id']}: {head['title']}  [{head['status']}]")
    cells = [
        (a["rank"], a["agent"], a["run"], a["number"], a["runs_agreeing"], f"{a['cost_usd']:.4f}", a["diff_stat"],
         len(a["verification"]["flags"]))
        for a in shown
    ]  # fmt: skip
    out.print(columns(("#", "agent", "run", "attempt", "runs agreeing", "cost $", "diff", "flags"), cells))
    a = shown[candidate - 1]
    v = a["verification"]
    where = f"attempt {a['number']} of run {a['run']} (id {a['id']})"
    out.rule(f"candidate {candidate}: {where}, {a['diff_stat']}")
    if a["agreement"]:
        out.print(f"{a['agreement']} (attempt ids {', '.join(map(str, a['same_diff_attempts']))})")
    if a["before_feedback"]:
        out.print("made before the reviewer's latest feedback")
    out.print(f"fixed (failing at the base, passing with the diff): {fixed_list(v['fixed'])}")
    out.print(f"still passing: {plural(v['pass_to_pass'], 'test')}")
    if v["known_failing"]:
        out.print(f"known failing (before and after, not part of this ticket): {', '.join(v['known_failing'])}")
    if v["broken"]:
        out.print(f"regressed: {', '.join(v['broken'])}")
    warnings = [w for w in v["warnings"] if not w.startswith(("known failing", "also fixed"))]
    for key, items in (
        ("flags", v["flags"]),
        ("flaky", v["flaky"]),
        ("reverted", v["reverted"]),
        ("warnings", warnings),
    ):
        if items:
            out.print(f"{key}: {', '.join(items)}")
    out.print(controls_shown(a["diff"]))
    if len(shown) > 1:
        out.print(f"other candidates: fleet review show {ticket} --candidate N (N up to {len(shown)})")


def fixed_list(fixed: list[dict[str, Any]]) -> str:
    """The fixed tests, the ticket's targets marked: `a (target), b`, or `-` when none."""
    return ", ".join(f"{f['test']} (target)" if f["target"] else f["test"] for f in fixed) or "-"


Candidate = Annotated[
    int | None, typer.Option(help="Which candidate, as `fleet review show` numbers them; the best when not given.")
]


@app.command("approve")
@one_line_errors
def review_approve(ticket: int, candidate: Candidate = None, as_json: JsonFlag = False) -> None:
    """Land a verified diff (the best, or --candidate N) as branch fleet/ticket-N in the repository."""
    ctx = Context()
    decision = approval.approve(ctx.db, ctx.dispatcher, ctx.settings, ticket, actor(), candidate)
    if as_json:
        return print_json(decision.view())
    if decision.queued_to:
        where = f"queued to land on {decision.queued_to} once verified on top of it (fleet merge status)"
        return out.print(f"ticket {ticket} approved: {where}")
    pr = f"; pull request {decision.pr_url}" if decision.pr_url else ""
    fetch = f" in Fleet's mirror {decision.mirror} (`{decision.fetch}`)"
    out.print(f"ticket {ticket} approved: branch {decision.branch}{fetch if decision.mirror else ''}{pr}")


@app.command("reject")
@one_line_errors
def review_reject(
    ticket: int,
    feedback: Annotated[str, typer.Option(help="Your words go to the agent in a new attempt.")] = "",
    candidate: Candidate = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject a diff (the best, or --candidate N); with --feedback the agent tries again with your words."""
    ctx = Context()
    decision = reviews.reject(ctx.db, ctx.dispatcher, ctx.settings, ticket, actor(), feedback, candidate)
    if as_json:
        return print_json(decision.view())
    new = decision.attempt
    again = f"; no new attempt: `fleet retry {ticket}` starts the ticket again (or reject with --feedback next time)"
    out.print(f"ticket {ticket} rejected" + (f"; attempt {new} queued with your feedback" if new else again))
