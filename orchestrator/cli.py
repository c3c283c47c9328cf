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
from pydantic import BaseModel
from rich.table import Table

from db import queries
from db.engine import Database
from db.migrate import upgrade
from db.status import TicketStatus
from orchestrator import review as reviews
from orchestrator import views
from orchestrator.errors import FleetError
from orchestrator.repos import register_repo
from orchestrator.settings import Settings
from orchestrator.specs import RepoSettings, RepoSpec, SpecError, TicketSpec, help_text, parse
from orchestrator.terminal import TerminalConsole, for_terminal, plain
from orchestrator.tickets import load_specs
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
        except (FleetError, queries.NotFound, queries.AlreadyExists) as exc:
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


# --- specs: option help and bounds come from orchestrator/specs.py -----------------------------------

# Repeatable options are named in the singular (--copy-file A --copy-file B) and fill the plural field.
REPEATED = ("copy_files", "env_key_files", "agent_args", "agent_hosts", "read_paths")
REPO_OPTION_FIELDS = {field.removesuffix("s"): field for field in REPEATED}
TICKET_OPTION_FIELDS = {"agent": "agents", "target": "targets", "agent_arg": "agent_args"}
M = TypeVar("M", bound=BaseModel)


def spec_from(model: type[M], options: dict[str, Any]) -> M:
    """The options that were given (not None) as a spec; a value out of bounds is one FleetError line."""
    try:
        return parse(model, {key: value for key, value in options.items() if value is not None})
    except SpecError as exc:
        raise FleetError(str(exc)) from None


# --- repos -----------------------------------------------------------------------------------------


@repo_app.command("add")
@one_line_errors
def repo_add(
    name: Annotated[str, typer.Argument(help=help_text(RepoSpec, "name"))],
    path: Annotated[str, typer.Argument(help=help_text(RepoSpec, "path"))],
    test_cmd: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "test_cmd"))] = None,
    setup_cmd: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "setup_cmd"))] = None,
    protect: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "protect"))] = None,
    hidden_tests: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "hidden_tests"))] = None,
    agent: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "agent"))] = None,
    allow_test_edits: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "allow_test_edits"))] = None,
    test_timeout: Annotated[float | None, typer.Option(help=help_text(RepoSettings, "test_timeout"))] = None,
    copy_file: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "copy_files"))] = None,
    max_concurrency: Annotated[int | None, typer.Option(help=help_text(RepoSettings, "max_concurrency"))] = None,
    daily_budget_usd: Annotated[float | None, typer.Option(help=help_text(RepoSettings, "daily_budget_usd"))] = None,
    test_network: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "test_network"))] = None,
    env_cache: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "env_cache"))] = None,
    env_key_file: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "env_key_files"))] = None,
    ports: Annotated[int | None, typer.Option(help=help_text(RepoSettings, "ports"))] = None,
    agent_sandbox: Annotated[bool | None, typer.Option(help=help_text(RepoSettings, "agent_sandbox"))] = None,
    agent_network: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "agent_network"))] = None,
    agent_model: Annotated[str | None, typer.Option(help=help_text(RepoSettings, "agent_model"))] = None,
    agent_arg: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "agent_args"))] = None,
    agent_env: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "agent_env"))] = None,
    agent_host: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "agent_hosts"))] = None,
    test_env: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "test_env"))] = None,
    read_path: Annotated[list[str] | None, typer.Option(help=help_text(RepoSettings, "read_paths"))] = None,
) -> None:
    """Register a git repository and how to test it. Options not given come from its .fleet.toml."""
    options = dict(locals())  # every parameter is a spec field: listing them again is how they drifted
    spec = spec_from(RepoSpec, {REPO_OPTION_FIELDS.get(key, key): value for key, value in options.items()})
    ctx = Context()
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
    timeout: Annotated[float, typer.Option(help=help_text(TicketSpec, "timeout"))] = 0.0,
    until: Annotated[str, typer.Option(help=help_text(TicketSpec, "until"))] = "all",
    model: Annotated[str, typer.Option(help=help_text(TicketSpec, "model"))] = "",
    budget_usd: Annotated[float, typer.Option(help=help_text(TicketSpec, "budget_usd"))] = 0.0,
    area: Annotated[list[str] | None, typer.Option(help=help_text(TicketSpec, "area"))] = None,
    agent_arg: Annotated[list[str] | None, typer.Option(help=help_text(TicketSpec, "agent_args"))] = None,
    agent_env: Annotated[list[str] | None, typer.Option(help=help_text(TicketSpec, "agent_env"))] = None,
    file: Annotated[Path | None, typer.Option(help="A YAML or JSON list of tickets.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Queue one ticket, or every ticket in --file."""
    options = dict(locals())  # every parameter but file and as_json is a spec field
    del options["file"], options["as_json"]
    fields = {TICKET_OPTION_FIELDS.get(key, key): value for key, value in options.items()}
    fields["timeout"] = timeout or None
    ctx = Context()
    if file is not None:
        defaults = {k: v for k, v in fields.items() if v not in ("", [], None)} | {"title": title}
        specs = load_specs(file, defaults, ctx.settings.agent_classes)
    else:
        if not repo:
            raise FleetError("--repo is required")
        specs = [spec_from(TicketSpec, fields)]
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
