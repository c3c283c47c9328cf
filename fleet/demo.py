"""`fleet demo`: a sample repository with real bugs, scripted agents, real workers, real verification."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from db import queries
from db.specs import RepoSpec, TicketSpec
from fleet.cli.cells import Terminal, clip, columns
from fleet.cli.context import Context
from fleet.cli.progress import reporting, worker_log
from orchestrator import review, views
from orchestrator.demo_model import DEMO_SUBMITTER
from orchestrator.repos import register_repo
from orchestrator.tickets import submit
from workers.agents.llm.scripted_server import ScriptedModelServer
from workers.agents.scripted import SAMPLE_TEST_CMD, scripted_command, write_sample_repo

SCRIPTED_MODEL = "scripted"


@dataclass(frozen=True)
class DemoTicket:
    title: str
    body: str
    agent: str
    script: str
    behaviour: str


DEMO_TICKETS = (
    DemoTicket(
        "add() subtracts",
        "tests/test_calc.py::test_add fails: add(2, 3) returns -1.",
        "shell",
        "fix-add",
        "a scripted program, right at once",
    ),
    DemoTicket(
        "mul() is off by one [script:needs-feedback]",
        "tests/test_calc.py::test_mul fails.",
        "llm",
        "needs-feedback",
        "a scripted model over HTTP, right only after reading Fleet's feedback",
    ),
    DemoTicket(
        "add() subtracts, fix it fast [script:game-tests]",
        "tests/test_calc.py::test_add fails.",
        "llm",
        "game-tests",
        "a scripted model that edits the test instead of the code, and is caught",
    ),
    DemoTicket(
        "div() truncates",
        "tests/test_calc.py::test_div fails: div(7, 2) must be 3.5.",
        "shell",
        "never",
        "a scripted program that never manages",
    ),
)


def _spec(repo: str, ticket: DemoTicket, model_url: str) -> TicketSpec:
    if ticket.agent == "llm":  # the scripted model server, named in the ticket's agent settings
        return TicketSpec(
            repo=repo,
            title=ticket.title,
            body=ticket.body,
            agents=["llm"],
            attempts=2,
            model=SCRIPTED_MODEL,
            agent_args=[f"base_url={model_url}"],
        )
    command = shlex.join(scripted_command(ticket.script))
    return TicketSpec(repo=repo, title=ticket.title, body=ticket.body, agent_cmd=command, attempts=2)


def _fresh_repo(ctx: Context) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = ctx.settings.home.resolve() / "demo" / stamp
    write_sample_repo(path)
    name = f"demo-{stamp}"
    register_repo(ctx.db, RepoSpec(name=name, path=str(path), test_cmd=SAMPLE_TEST_CMD), ctx.agents)
    return name


def run_demo(ctx: Context, concurrency: int, out: Terminal) -> None:
    from workers.serve import serve

    out.print(
        "Fleet demo — no AI model is involved: the 'shell' agents are scripted programs and the "
        "'llm' agents talk over real HTTP to a scripted model server on 127.0.0.1, so every run is the same. "
        "To use a real model: FLEET_LLM_BASE_URL, FLEET_LLM_MODEL and FLEET_LLM_API_KEY, then --agent llm."
    )
    repo = _fresh_repo(ctx)
    demos = ctx.settings.home.resolve() / "demo"
    out.print(f"Fleet's state: {ctx.settings.where()}; the demo's repository {repo} in {demos}")
    server = ScriptedModelServer()
    model_url = server.start()
    try:
        specs = [_spec(repo, t, model_url) for t in DEMO_TICKETS]
        tickets = submit(ctx.db, ctx.dispatcher, ctx.settings, specs, ctx.settings.home, DEMO_SUBMITTER)
        for ticket, demo in zip(tickets, DEMO_TICKETS, strict=True):
            out.print(f"  ticket {ticket.id} ({demo.agent}): {demo.title!r} — {demo.behaviour}")
        logfile = worker_log(ctx.settings)
        out.print(f"Running {concurrency} embedded worker slots until the queue is empty (worker log {logfile})...")
        with reporting(ctx.db, summarise=False):
            serve(ctx.settings, ctx.db, concurrency, until_idle=True, logfile=str(logfile))
    finally:
        server.stop()
    _report(ctx, [t.id for t in tickets], out)


def _report(ctx: Context, ticket_ids: list[int], out: Terminal) -> None:
    with ctx.db.session() as s:
        trees = [queries.load_ticket_tree(s, tid) for tid in ticket_ids]
        rows = []
        for t in trees:
            verdicts = [a.verification.verdict if a.verification else a.status for r in t.runs for a in r.attempts]
            rows.append((t.id, t.title, t.status, " → ".join(verdicts), clip(t.status_reason, 80)))
        out.print(columns(("ticket", "title", "status", "attempts (verdicts)", "why"), rows))
        waiting = [(t, found[0]) for t in trees if (found := review.candidates(t))]
        shown = views.plural(len(waiting), "verified diff")
        out.print(f"What a reviewer sees ({shown}; failing tickets are never listed):")
        for t, candidate in waiting:
            best = views.attempt_view(candidate.attempt) | views.attempt_texts(candidate.attempt)
            v = best["verification"]
            out.rule(f"ticket {t.id}: {t.title} — attempt {best['number']}, {best['diff_stat']}")
            passing = views.plural(v["pass_to_pass"], "test")
            out.print(f"fixed: {', '.join(v['fail_to_pass'])}; still passing: {passing}")
            out.print(best["diff"])
    out.print(
        "Next: `fleet review list`, `fleet review show ID`, `fleet review approve ID`; "
        "`fleet show ID` for every attempt and the feedback between them."
    )
