"""The `fleet` command line."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from db import queries
from db.engine import Database
from db.lifecycle import IllegalTransition, TicketStatus
from db.migrate import upgrade
from orchestrator import review as reviews
from orchestrator import views
from orchestrator.errors import FleetError
from orchestrator.repos import RepoSpec, register_repo
from orchestrator.settings import Settings
from orchestrator.terminal import TerminalConsole, for_terminal, plain
from orchestrator.tickets import TicketSpec, load_specs
from orchestrator.tickets import submit as submit_tickets

if TYPE_CHECKING:
    from workers.envcache import EnvCache

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Queue tickets for coding agents; review only verified diffs.",
)
repo_app = typer.Typer(no_args_is_help=True, help="Register and list repositories.")
review_app = typer.Typer(no_args_is_help=True, help="Verified diffs waiting for a person.")
app.add_typer(repo_app, name="repo")
app.add_typer(review_app, name="review")
# Ticket text, prompts and transcripts are data: no emoji codes, no markup, no wrapping of error lines, and no
# control characters (orchestrator/terminal.py).
out = TerminalConsole(highlight=False, soft_wrap=True, emoji=False)
err = TerminalConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)
F = TypeVar("F", bound=Callable[..., Any])
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def actor() -> str:
    return os.environ.get("FLEET_USER") or getpass.getuser()


def one_line(message: str) -> str:
    """A message on one line: a title or a parser's report may span several."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def one_line_errors(fn: F) -> F:
    """Bad input ends with one line on stderr and exit code 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (FleetError, queries.NotFound, queries.AlreadyExists, IllegalTransition) as exc:
            err.print(f"error: {one_line(str(exc))}", markup=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


class Context:
    """Settings, database and dispatcher, built once per command at the entry point."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.settings.db_url)
        upgrade(self.db)
        self._dispatcher: Any = None

    @property
    def dispatcher(self) -> Any:
        if self._dispatcher is None:
            from workers.celery_app import create_app
            from workers.queue import Dispatcher

            self._dispatcher = Dispatcher(create_app(self.settings))
        return self._dispatcher


def as_lines(text: str) -> str:
    """Text as stored, ending in a newline, without the control characters that would drive the terminal."""
    text = for_terminal(text)
    return text if text.endswith("\n") else text + "\n"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# --- repos -----------------------------------------------------------------------------------------


@repo_app.command("add")
@one_line_errors
def repo_add(
    name: str,
    path: str,
    test_cmd: Annotated[str, typer.Option(help="The command that runs the repository's tests.")] = "",
    setup_cmd: Annotated[str, typer.Option(help="Run before the agent and before the tests.")] = "",
    protect: Annotated[list[str] | None, typer.Option(help="A path glob agents may not change (repeatable).")] = None,
    hidden_tests: Annotated[str, typer.Option(help="A folder of tests the agent never sees.")] = "",
    agent: Annotated[str, typer.Option(help="The default agent for this repo's tickets.")] = "",
    allow_test_edits: Annotated[bool, typer.Option(help="Tickets may add tests.")] = False,
    copy_file: Annotated[
        list[str] | None, typer.Option(help="SRC:DEST, a file copied into every checkout, never diffed.")
    ] = None,
    max_concurrency: Annotated[int, typer.Option(help="At most this many attempts of this repo at once.")] = 0,
    daily_budget_usd: Annotated[float, typer.Option(help="No new attempt once today's spend reaches this.")] = 0.0,
    test_network: Annotated[bool, typer.Option(help="Sandboxed test runs may use the network.")] = False,
    env_cache: Annotated[bool, typer.Option(help="Reuse what --setup-cmd built while its key files match.")] = True,
    env_key_file: Annotated[
        list[str] | None, typer.Option(help="A glob of the files that define the environment (repeatable).")
    ] = None,
    ports: Annotated[int, typer.Option(help="Ports each attempt needs (default: FLEET_PORT_BLOCK_SIZE).")] = 0,
    agent_sandbox: Annotated[
        bool | None, typer.Option("--agent-sandbox/--no-agent-sandbox", help="Run agents in bubblewrap.")
    ] = None,
    agent_network: Annotated[str, typer.Option(help="none or on: may sandboxed agents use the network.")] = "",
    agent_model: Annotated[str, typer.Option(help="The model this repo's agents use unless a ticket names one.")] = "",
    agent_arg: Annotated[list[str] | None, typer.Option(help="An argument every agent gets (repeatable).")] = None,
    agent_env: Annotated[
        list[str] | None, typer.Option(help="A variable name passed through to every agent (repeatable).")
    ] = None,
    agent_host: Annotated[
        list[str] | None, typer.Option(help="host:port sandboxed agents may reach besides their model API.")
    ] = None,
    test_env: Annotated[
        list[str] | None, typer.Option(help="A variable name passed through to the tests (repeatable).")
    ] = None,
    read_path: Annotated[
        list[str] | None, typer.Option(help="A path every sandbox of this repo shows read-only (repeatable).")
    ] = None,
) -> None:
    """Register a git repository and how to test it."""
    ctx = Context()
    spec = RepoSpec(
        name=name,
        path=path,
        test_cmd=test_cmd,
        setup_cmd=setup_cmd,
        protect=protect or [],
        hidden_tests=hidden_tests,
        agent=agent,
        allow_test_edits=allow_test_edits,
        copy_files=copy_file or [],
        max_concurrency=max_concurrency,
        daily_budget_usd=daily_budget_usd,
        test_network=test_network,
        env_cache=env_cache,
        env_key_files=env_key_file or [],
        ports=ports,
        agent_sandbox=agent_sandbox,
        agent_network=agent_network,
        agent_model=agent_model,
        agent_args=agent_arg or [],
        agent_env=agent_env or [],
        agent_hosts=agent_host or [],
        test_env=test_env or [],
        read_paths=read_path or [],
    )
    repo = register_repo(ctx.db, spec, ctx.settings.agent_classes)
    out.print(f"repo {repo['name']} registered: {repo['source']} (tests: {repo['test_cmd']})", markup=False)


@repo_app.command("list")
@one_line_errors
def repo_list(as_json: JsonFlag = False) -> None:
    """List registered repositories."""
    with Context().db.session() as s:
        repos = [views.repo_view(r) for r in queries.list_repos(s)]
    if as_json:
        return print_json(repos)
    table = Table("name", "source", "test command", "agent")
    for r in repos:
        table.add_row(*plain(r["name"], r["source"], r["test_cmd"], r["default_agent"]))
    out.print(table)


# --- tickets ---------------------------------------------------------------------------------------


@app.command()
@one_line_errors
def submit(
    repo: Annotated[str, typer.Option(help="The registered repo name.")] = "",
    title: Annotated[str, typer.Option()] = "",
    body: Annotated[str, typer.Option()] = "",
    base: Annotated[str, typer.Option(help="The base ref or commit.")] = "HEAD",
    agent: Annotated[list[str] | None, typer.Option(help="Agent name (repeatable: one run per agent).")] = None,
    agent_cmd: Annotated[str, typer.Option(help="The command the shell agent runs (no shell).")] = "",
    attempts: Annotated[int, typer.Option(help="Attempts per run, feedback between them.")] = 3,
    fanout: Annotated[int, typer.Option(help="Independent runs per agent.")] = 1,
    target: Annotated[list[str] | None, typer.Option(help="A test id that must pass (repeatable).")] = None,
    priority: Annotated[int, typer.Option()] = 0,
    timeout: Annotated[float, typer.Option(help="Agent time limit in seconds per attempt.")] = 0.0,
    until: Annotated[str, typer.Option(help="With several runs: 'first' stops the others at the first pass.")] = "all",
    model: Annotated[str, typer.Option(help="The model the agent should use.")] = "",
    budget_usd: Annotated[float, typer.Option(help="No new attempt once the ticket has cost this much.")] = 0.0,
    area: Annotated[
        list[str] | None, typer.Option(help="A glob of the paths this ticket is about; others are flagged.")
    ] = None,
    agent_arg: Annotated[list[str] | None, typer.Option(help="An extra argument for the agent (repeatable).")] = None,
    agent_env: Annotated[
        list[str] | None, typer.Option(help="An environment variable the agent may see (repeatable).")
    ] = None,
    file: Annotated[Path | None, typer.Option(help="A YAML or JSON list of tickets.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Queue one ticket, or every ticket in --file."""
    ctx = Context()
    fields: dict[str, Any] = dict(
        repo=repo,
        body=body,
        base=base,
        agents=list(agent or []),
        agent_cmd=agent_cmd,
        attempts=attempts,
        fanout=fanout,
        targets=list(target or []),
        priority=priority,
        timeout=timeout or None,
        until=until,
        model=model,
        budget_usd=budget_usd,
        area=list(area or []),
        agent_args=list(agent_arg or []),
        agent_env=list(agent_env or []),
    )
    if file is not None:
        defaults = {k: v for k, v in fields.items() if v not in ("", [], None)} | {"title": title}
        specs = load_specs(file, defaults, ctx.settings.agent_classes)
    else:
        if not repo:
            raise FleetError("--repo is required")
        specs = [TicketSpec(title=title, **fields)]
    tickets = submit_tickets(ctx.db, ctx.dispatcher, ctx.settings, specs, Path.cwd(), actor())
    if as_json:
        with ctx.db.session() as s:
            return print_json([views.ticket_view(queries.get_ticket(s, t.id)) for t in tickets])
    for t in tickets:
        out.print(f"ticket {t.id} queued: {t.title}", markup=False)


def ticket_table(tickets: list[dict[str, Any]]) -> Table:
    table = Table("id", "repo", "status", "agent", "title", "reason")
    for t in tickets:
        table.add_row(*plain(t["id"], t["repo"], t["status"], t["agent"], t["title"][:60], t["reason"][:60]))
    return table


@app.command()
@one_line_errors
def tickets(
    status: Annotated[str, typer.Option(help="Only tickets with this status.")] = "",
    repo: Annotated[str, typer.Option()] = "",
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 500,
    as_json: JsonFlag = False,
) -> None:
    """List tickets, newest first."""
    if status and status not in {s.value for s in TicketStatus}:
        raise FleetError(f"unknown status {status!r}; one of: {', '.join(s.value for s in TicketStatus)}")
    with Context().db.session() as s:
        rows = [views.ticket_view(t) for t in queries.list_tickets(s, status or None, repo or None, limit)]
    print_json(rows) if as_json else out.print(ticket_table(rows))


@app.command()
@one_line_errors
def show(ticket: int, as_json: JsonFlag = False) -> None:
    """A ticket with its runs and attempts: status, verdict, diff stat and feedback."""
    with Context().db.session() as s:
        view = views.ticket_view(queries.load_ticket_tree(s, ticket), with_runs=True)
    if as_json:
        return print_json(view)
    out.print(f"ticket {view['id']} [{view['status']}] {view['title']}", markup=False)
    if view["reason"]:
        out.print(f"  {view['reason']}", markup=False)
    for run in view["runs"]:
        out.print(f"  run {run['index']} ({run['agent']}): {run['status']}", markup=False)
        for a in run["attempts"]:
            verdict = a["verdict"] or a["status"]
            out.print(
                f"    attempt {a['number']} (id {a['id']}): {verdict}  {a['diff_stat']}  {a['error'] or ''}",
                markup=False,
            )


@app.command()
@one_line_errors
def logs(attempt: int) -> None:
    """An attempt's prompt, transcript and verification output."""
    with Context().db.session() as s:
        a = queries.get_attempt(s, attempt)
        parts = [("prompt", a.prompt), ("transcript", a.transcript)]
        if a.verification is not None:
            parts += [("verification", "\n".join(a.verification.reasons) + "\n\n" + a.verification.output)]
    for name, text in parts:
        out.rule(name)
        # Not through rich: it expands tabs and drops some characters, and this text must read as stored.
        sys.stdout.write(as_lines(text))


@app.command()
@one_line_errors
def cancel(
    ticket: Annotated[int | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every active ticket of --repo.")] = False,
    repo: Annotated[str, typer.Option(help="With --all: the repository.")] = "",
) -> None:
    """Stop a ticket (or --all --repo R): waiting attempts at once, running agents within seconds."""
    if all_ == (ticket is not None) or (all_ and not repo):
        raise FleetError("give a ticket id, or --all --repo NAME")
    if ticket is not None:
        reviews.cancel(Context().db, ticket, actor())
        out.print(f"ticket {ticket} cancelled")
        return
    ids = reviews.cancel_repo(Context().db, repo, actor())
    out.print(f"{len(ids)} ticket(s) of {repo} cancelled" + (f": {', '.join(map(str, ids))}" if ids else ""))


@app.command()
@one_line_errors
def retry(ticket: int) -> None:
    """Start a failed, errored or cancelled ticket again, with a fresh attempt budget."""
    ctx = Context()
    reviews.retry(ctx.db, ctx.dispatcher, ctx.settings, ticket, actor())
    out.print(f"ticket {ticket} queued again")


# --- workers ---------------------------------------------------------------------------------------


@app.command()
@one_line_errors
def up(
    concurrency: Annotated[int, typer.Option(help="Agent and verification slots.")] = 4,
    until_idle: Annotated[bool, typer.Option(help="Exit when no work is left.")] = False,
) -> None:
    """Run workers in the foreground (embedded mode: no server needed)."""
    from workers.serve import serve

    ctx = Context()
    raise typer.Exit(serve(ctx.settings, ctx.db, concurrency, until_idle=until_idle))


@app.command()
@one_line_errors
def worker(
    concurrency: Annotated[int, typer.Option(help="Slots in this worker process.")] = 8,
    queue: Annotated[list[str] | None, typer.Option(help="Queues to consume: agents, verify (default both).")] = None,
) -> None:
    """Run a team-mode worker against FLEET_BROKER_URL and FLEET_DATABASE_URL."""
    from workers.constants import AGENT_QUEUE, QUEUES, VERIFY_QUEUE
    from workers.serve import serve

    names = {"agents": AGENT_QUEUE, "verify": VERIFY_QUEUE}
    queue = queue or []
    unknown = [q for q in queue if q not in names]
    if unknown:
        raise FleetError(f"unknown queue {unknown[0]!r}; one of: agents, verify")
    ctx = Context()
    raise typer.Exit(serve(ctx.settings, ctx.db, concurrency, [names[q] for q in queue] or list(QUEUES)))


@app.command()
@one_line_errors
def status(
    as_json: JsonFlag = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
) -> None:
    """Tickets by status, attempts in flight, workers and queue depth."""
    from orchestrator.fleetstatus import fleet_status, render_status

    ctx = Context()
    if watch:
        from orchestrator.web.cli import watch_loop

        return watch_loop(ctx)
    data = fleet_status(ctx.db, ctx.dispatcher)
    print_json(data) if as_json else out.print(render_status(data))


# --- review ----------------------------------------------------------------------------------------


@review_app.command("list")
@one_line_errors
def review_list(as_json: JsonFlag = False) -> None:
    """Tickets with a verified diff, waiting for review. Nothing unverified is ever listed."""
    with Context().db.session() as s:
        rows = []
        for ticket in queries.review_candidates(s):
            tree = queries.load_ticket_tree(s, ticket.id)
            best = reviews.candidates(tree)
            rows.append(
                views.ticket_view(tree)
                | {
                    "candidates": len(best),
                    "best_attempt": best[0].id if best else None,
                    "diff_stat": best[0].diff_stat if best else "",
                }
            )
    if as_json:
        return print_json(rows)
    table = Table("ticket", "repo", "title", "candidates", "best diff")
    for r in rows:
        table.add_row(*plain(r["id"], r["repo"], r["title"][:60], r["candidates"], r["diff_stat"]))
    out.print(table)


@review_app.command("show")
@one_line_errors
def review_show(
    ticket: int,
    candidate: Annotated[int, typer.Option(help="Which candidate's diff to show (1 is the best).")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """The verified candidates side by side, best first, and one candidate's diff and tests."""
    with Context().db.session() as s:
        tree = queries.load_ticket_tree(s, ticket)
        best = reviews.candidates(tree)
        if not best:
            raise FleetError(f"ticket {ticket} has no verified diff (status {tree.status})")
        shown = [views.attempt_view(a, with_text=True) | {"agent": a.run.agent} for a in best]
        head = views.ticket_view(tree)
    if as_json:
        return print_json(head | {"candidates": shown})
    if not 1 <= candidate <= len(shown):
        raise FleetError(f"--candidate must be between 1 and {len(shown)}")
    out.print(f"ticket {head['id']}: {head['title']}  [{head['status']}]", markup=False)
    table = Table("#", "agent", "run", "attempt", "cost $", "diff", "flags")
    for rank, a in enumerate(shown, start=1):
        flags = len(a["verification"]["flags"])
        table.add_row(*plain(rank, a["agent"], a["run"], a["number"], f"{a['cost_usd']:.4f}", a["diff_stat"], flags))
    out.print(table)
    a = shown[candidate - 1]
    v = a["verification"]
    out.rule(f"candidate {candidate}: attempt {a['number']} of run {a['run']} (id {a['id']}), {a['diff_stat']}")
    out.print(f"fail to pass: {', '.join(v['fail_to_pass']) or '-'}", markup=False)
    out.print(f"pass to pass: {v['pass_to_pass']} still passing", markup=False)
    for key in ("flags", "flaky", "reverted", "warnings"):
        if v[key]:
            out.print(f"{key}: {', '.join(v[key])}", markup=False)
    out.print(a["diff"], markup=False)
    if len(shown) > 1:
        out.print(f"other candidates: fleet review show {ticket} --candidate N (N up to {len(shown)})", markup=False)


@review_app.command("approve")
@one_line_errors
def review_approve(ticket: int) -> None:
    """Land the best verified diff as branch fleet/ticket-N in the repository."""
    ctx = Context()
    branch = reviews.approve(ctx.db, ctx.settings, ticket, actor())
    out.print(f"ticket {ticket} approved: branch {branch}", markup=False)


@review_app.command("reject")
@one_line_errors
def review_reject(
    ticket: int,
    feedback: Annotated[str, typer.Option(help="Your words go to the agent in a new attempt.")] = "",
) -> None:
    """Reject the diff; with --feedback the agent tries again with your words."""
    ctx = Context()
    new = reviews.reject(ctx.db, ctx.dispatcher, ctx.settings, ticket, actor(), feedback)
    out.print(f"ticket {ticket} rejected" + (f"; attempt {new} queued with your feedback" if new else ""))


@app.command()
@one_line_errors
def demo(
    concurrency: Annotated[int, typer.Option(help="Slots for the demo's workers.")] = 4,
) -> None:
    """Make a sample repository with real bugs, queue tickets for scripted agents, and run them."""
    from orchestrator.demo import run_demo

    ctx = Context()
    run_demo(ctx, concurrency, out)


@app.command()
@one_line_errors
def stats(
    hours: Annotated[float, typer.Option(help="The window: runs created in the last N hours.")] = 24 * 7,
    as_json: JsonFlag = False,
) -> None:
    """Per agent and model: tickets tried, verified rate, attempts and cost per verified diff, time to verified."""
    from orchestrator.stats import agent_stats

    rows = agent_stats(Context().db, hours)
    if as_json:
        return print_json(rows)
    table = Table("agent", "model", "tickets", "verified", "rate", "attempts/verified", "cost/verified", "median s")
    for r in rows:
        cells = [
            r["agent"],
            r["model"],
            r["tickets"],
            r["verified"],
            r["verified_rate"],
            r["attempts_per_verified"],
            r["cost_per_verified_usd"],
            r["median_seconds_to_verified"],
        ]
        table.add_row(*plain(*("-" if c is None else c for c in cells)))
    out.print(table)


@app.command()
@one_line_errors
def migrate() -> None:
    """Bring the database schema to the newest revision (every command also does this on first use)."""
    ctx = Context()
    out.print(f"database schema is current: {ctx.settings.db_url.split('@')[-1]}", markup=False)


cache_app = typer.Typer(no_args_is_help=True, help="The environments setup commands built, kept for reuse.")
app.add_typer(cache_app, name="cache")


def _env_cache() -> EnvCache:
    from workers.envcache import EnvCache

    settings = Settings()
    return EnvCache(settings.env_cache_dir, settings.env_cache_bytes)


@cache_app.command("list")
@one_line_errors
def cache_list(as_json: JsonFlag = False) -> None:
    """List cached environments, most recently used first."""
    entries = [e.view() for e in reversed(_env_cache().entries())]
    if as_json:
        return print_json(entries)
    table = Table("key", "scope", "setup command", "paths", "MB", "last used")
    for e in entries:
        paths = ", ".join(e["paths"][:3]) + (" ..." if len(e["paths"]) > 3 else "")
        cells = (e["key"][:12], e["scope"], e["setup_cmd"], paths, f"{e['bytes'] / 2**20:.1f}", e["last_used"])
        table.add_row(*plain(*cells))
    out.print(table)


@cache_app.command("clear")
@one_line_errors
def cache_clear() -> None:
    """Delete every cached environment (for example after upgrading a toolchain); the next setups rebuild them."""
    entries, freed = _env_cache().clear()
    out.print(f"deleted {entries} cached environment{'s' if entries != 1 else ''} ({freed / 2**20:.1f} MB)")


@app.command("gc")
@one_line_errors
def gc_(
    older_than: Annotated[
        float | None,
        typer.Option(
            metavar="DAYS",
            help="Also empty the transcripts, diffs and test output of attempts finished DAYS ago or more "
            "(tickets still open or awaiting review keep theirs; rows and verdicts stay).",
        ),
    ] = None,
) -> None:
    """Remove what finished attempts left: their folders and the mirrors' unreachable objects; print what went."""
    from workers.housekeeping import collect

    if older_than is not None and older_than < 0:
        raise FleetError("--older-than must be a number of days, 0 or more")
    ctx = Context()
    for line in collect(ctx.db, ctx.settings, older_than):
        out.print(line, markup=False)


from orchestrator.web.cli import register as register_web  # noqa: E402  (it uses the helpers above)

register_web(app)


def main() -> None:
    app()
