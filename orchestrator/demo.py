"""`fleet demo`: a sample repository with real bugs, scripted agents, real workers, real verification."""

from __future__ import annotations

import shlex
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from db import queries
from orchestrator import review, views
from orchestrator.repos import RepoSpec, register_repo
from orchestrator.tickets import TicketSpec, submit
from workers.agents.scripted import SAMPLE_TEST_CMD, scripted_command, write_sample_repo

DEMO_TICKETS = (
    ("add() subtracts", "tests/test_calc.py::test_add fails: add(2, 3) returns -1.", "fix-add", "right at once"),
    (
        "mul() is off by one",
        "tests/test_calc.py::test_mul fails.",
        "needs-feedback",
        "right only after reading the feedback on its first attempt",
    ),
    ("div() truncates", "tests/test_calc.py::test_div fails: div(7, 2) must be 3.5.", "never", "never manages"),
)


def _fresh_repo(ctx: Any) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = ctx.settings.home.resolve() / "demo" / stamp
    write_sample_repo(path)
    name = f"demo-{stamp}"
    register_repo(ctx.db, RepoSpec(name=name, path=str(path), test_cmd=SAMPLE_TEST_CMD))
    return name


def run_demo(ctx: Any, concurrency: int, out: Console) -> None:
    from workers.serve import serve

    out.print(
        "[bold]Fleet demo[/bold] — the agents here are scripted programs, not AI models: "
        "each edits the sample repository the same way every time, so you can watch Fleet's loop."
    )
    repo = _fresh_repo(ctx)
    specs = [
        TicketSpec(repo=repo, title=title, body=body, agent_cmd=shlex.join(scripted_command(script)), attempts=2)
        for title, body, script, _ in DEMO_TICKETS
    ]
    tickets = submit(ctx.db, ctx.dispatcher, ctx.settings, specs, ctx.settings.home, "demo")
    for ticket, (_, _, script, behaviour) in zip(tickets, DEMO_TICKETS, strict=True):
        out.print(f"  ticket {ticket.id}: {ticket.title!r} — scripted agent '{script}' ({behaviour})", markup=False)
    out.print(f"Running {concurrency} embedded worker slots until the queue is empty...")
    serve(ctx.settings, ctx.db, concurrency, until_idle=True)
    _report(ctx, [t.id for t in tickets], out)


def _report(ctx: Any, ticket_ids: list[int], out: Console) -> None:
    table = Table("ticket", "title", "status", "attempts (verdicts)")
    with ctx.db.session() as s:
        trees = [queries.load_ticket_tree(s, tid) for tid in ticket_ids]
        for t in trees:
            verdicts = [a.verification.verdict if a.verification else a.status for r in t.runs for a in r.attempts]
            table.add_row(str(t.id), t.title, t.status, " → ".join(verdicts))
        out.print(table)
        waiting = [t for t in trees if review.candidates(t)]
        out.print(f"What a reviewer sees ({len(waiting)} verified diffs; failing tickets are never listed):")
        for t in waiting:
            best = views.attempt_view(review.candidates(t)[0], with_text=True)
            v = best["verification"]
            out.rule(f"ticket {t.id}: {t.title} — attempt {best['number']}, {best['diff_stat']}")
            out.print(
                f"fail to pass: {', '.join(v['fail_to_pass'])}; {v['pass_to_pass']} tests still pass", markup=False
            )
            out.print(best["diff"], markup=False)
    out.print(
        "Next: `fleet review list`, `fleet review show ID`, `fleet review approve ID`; "
        "`fleet show ID` for every attempt and the feedback between them."
    )
